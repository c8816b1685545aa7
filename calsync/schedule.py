"""The redbeat schedule: the seed's CalendarSynchronization job.

The dispatcher ticks often (CALSYNC_DISPATCH_TICK_SECONDS, default 10 s) and each operator carries its own
next-poll time derived from the `poll_interval_minutes` setting, so a changed interval takes
effect on the next tick without restarting beat or workers.
"""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab

from calsync.config import env
from calsync.tasks import names

DISPATCH_TICK_SECONDS = env().dispatch_tick_seconds

beat_schedule = {
    "CalendarSynchronization": {
        "task": names.DISPATCH,
        "schedule": timedelta(seconds=DISPATCH_TICK_SECONDS),
        "options": {"queue": "dispatch", "expires": DISPATCH_TICK_SECONDS * 3},
    },
    # Recurring series: add the occurrences that entered the horizon (calsync.horizon).
    "RollRecurrenceHorizon": {
        "task": names.ROLL_HORIZON,
        "schedule": crontab(minute=17, hour=3),
        "options": {"queue": "dispatch", "expires": 6 * 3600},
    },
    # Safety net for failure/recovery emails whose enqueue was lost while the broker was down.
    "NotifySweep": {
        "task": names.NOTIFY_SEND_PENDING,
        "schedule": timedelta(minutes=5),
        "options": {"queue": "notify", "expires": 240},
    },
}
