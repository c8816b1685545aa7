"""Task names, written once: the task decorators, celeryconfig's task_routes, the beat schedule
and the dispatcher's fast publication (calsync/tasks/publish.py) all mean the same strings.

tests/unit/test_routing.py checks that each name here is a registered task, so a renamed task
cannot leave a route or a fast-path message pointing at nothing.
"""

from __future__ import annotations

DISPATCH = "calsync.dispatch"
SYNC_BATCH = "calsync.sync_batch"
POLL_CHUNK = "calsync.poll_chunk"
ROLL_HORIZON = "calsync.roll_horizon"
ROLL_HORIZON_CHUNK = "calsync.roll_horizon_chunk"
NOTIFY_SEND_PENDING = "calsync.notify.send_pending"
#: Every notify task shares this prefix, so one route sends them all to the notify queue.
NOTIFY_PREFIX = "calsync.notify."

ALL = (DISPATCH, SYNC_BATCH, POLL_CHUNK, ROLL_HORIZON, ROLL_HORIZON_CHUNK, NOTIFY_SEND_PENDING)
