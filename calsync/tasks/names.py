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
# Push notifications (calsync/tasks/push.py)
PUSH_KICK = "calsync.push_kick"
PUSH_SUBSCRIBE = "calsync.push_subscribe"
PUSH_SWEEP = "calsync.push_sweep"
# Graph change notifications (calsync/tasks/graph_push.py)
GRAPH_SUBSCRIBE = "calsync.graph_push_subscribe"
GRAPH_RENEW = "calsync.graph_push_renew"
GRAPH_DELETE = "calsync.graph_push_delete"

ALL = (
    DISPATCH, SYNC_BATCH, POLL_CHUNK, ROLL_HORIZON, ROLL_HORIZON_CHUNK, NOTIFY_SEND_PENDING,
    PUSH_KICK, PUSH_SUBSCRIBE, PUSH_SWEEP, GRAPH_SUBSCRIBE, GRAPH_RENEW, GRAPH_DELETE,
)  # fmt: skip
