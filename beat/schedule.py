"""The redbeat schedule: the seed's CalendarSynchronization job.

The dispatcher ticks often (DISPATCH_TICK_SECONDS) and each operator carries its own
next-poll time derived from the `poll_interval_minutes` setting, so a changed interval takes
effect on the next tick without restarting beat or workers.
"""

from __future__ import annotations

from datetime import timedelta

DISPATCH_TICK_SECONDS = 10.0

beat_schedule = {
    "CalendarSynchronization": {
        "task": "calsync.dispatch",
        "schedule": timedelta(seconds=DISPATCH_TICK_SECONDS),
        "options": {"queue": "dispatch", "expires": DISPATCH_TICK_SECONDS * 3},
    },
}
