"""Celery configuration for calsync; every value says why it is what it is.

Read by calsync.celery (`app.config_from_object("calsync.celeryconfig")`; Celery's own
CELERY_CONFIG_MODULE / `celery --config` names another). Connection URLs come from the
environment (calsync.config), never from this file. Task names come from calsync.tasks.names,
the same ones the dispatcher's fast publication routes with (calsync.tasks.publish).
"""

from __future__ import annotations

from kombu import Queue

from calsync import redis_url
from calsync.config import env
from calsync.schedule import beat_schedule as beat_schedule
from calsync.tasks import names

_env = env()

broker_url = _env.broker
result_backend = _env.result_backend

# JSON only: task arguments are ids and tokens, readable in Flower, and no pickle means a
# message from the broker cannot execute code.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# At-least-once: a task is acknowledged after it ran, and comes back when the worker process
# running it is killed. Every task is idempotent (state in Postgres, fenced by lease tokens).
task_acks_late = True
task_reject_on_worker_lost = True
# One message reserved per process: a slow mailbox never holds other operators' batches
# hostage in a busy worker's prefetch buffer.
worker_prefetch_multiplier = 1

# Results are not used for control flow; keep them only briefly for Flower and `--wait`.
task_ignore_result = True
result_expires = 3600

# A batch is one SyncFolderItems page plus one GetItem and one transaction: seconds. The soft
# limit lets the task release its lease cleanly; the hard limit kills a stuck process.
task_soft_time_limit = 120
task_time_limit = 180

# Redis redelivers a message not acknowledged within the visibility timeout. It must exceed
# the longest task (180 s) and the longest countdown a retry uses (MAX_RETRY_COUNTDOWN in
# calsync.tasks.base, 900 s), or Redis would hand the same message out again and again.
# Default 3600 s (CALSYNC_VISIBILITY_TIMEOUT).
broker_transport_options: dict[str, object] = {"visibility_timeout": _env.visibility_timeout}
result_backend_transport_options: dict[str, object] = {"retry_policy": {"timeout": 5.0}}
# Redis Sentinel (sentinel://h1:26379;sentinel://h2:26379/DB): kombu and Celery's result
# backend ask the sentinels for the master of CALSYNC_REDIS_SENTINEL_MASTER on every
# (re)connect, so a failover is one reconnect away.
if redis_url.parse(_env.broker).is_sentinel:
    broker_transport_options["master_name"] = _env.redis_sentinel_master
if redis_url.parse(_env.result_backend).is_sentinel:
    result_backend_transport_options["master_name"] = _env.redis_sentinel_master

# Separate queues so that a flood of sync batches never delays the dispatcher tick or a
# failure email; workers subscribe to the ones they serve (`-Q dispatch,sync,notify`).
task_default_queue = "sync"
task_queues = (Queue("dispatch"), Queue("sync"), Queue("notify"))
# The one routing table: apply_async and the dispatcher's fast publication both ask Celery's
# router (app.amqp.router) for a task's queue, so a change here moves both.
task_routes = {
    names.DISPATCH: {"queue": "dispatch"},
    names.SYNC_BATCH: {"queue": "sync"},
    names.POLL_CHUNK: {"queue": "sync"},
    names.ROLL_HORIZON: {"queue": "dispatch"},
    names.ROLL_HORIZON_CHUNK: {"queue": "dispatch"},
    names.NOTIFY_PREFIX + "*": {"queue": "notify"},
    # Push (issue 15): a kick claims its operator and polls it (one SyncFolderItems page,
    # a GetItem when something changed), kept off the sync queue so a flood of batches
    # never delays a notified change; Subscribe calls Exchange, like a batch.
    names.PUSH_KICK: {"queue": "dispatch"},
    names.PUSH_SWEEP: {"queue": "dispatch"},
    names.PUSH_SUBSCRIBE: {"queue": "sync"},
    # Graph subscription calls go to Graph, inside its fleet-wide slots, like reads.
    names.GRAPH_SUBSCRIBE: {"queue": "sync"},
    names.GRAPH_RENEW: {"queue": "sync"},
    names.GRAPH_DELETE: {"queue": "sync"},
}

# Flower and `calsync status` read task events from the workers. No "sent" events: they would
# double the Redis traffic of every dispatcher tick (one event per enqueued batch).
worker_send_task_events = True
task_send_sent_event = False

# Reconnect forever after a broker restart instead of exiting.
broker_connection_retry_on_startup = True
broker_connection_max_retries = None

# redbeat: the schedule lives in Redis; its lock makes exactly one beat the leader. The
# leader extends the lock every loop (beat_max_loop_interval); a standby takes over once
# the lock expires (redbeat_lock_timeout), so failover takes at most ~30 s. The leader must
# extend the lock well within the timeout: beat_max_loop_interval < redbeat_lock_timeout / 3.
# calsync.beat's scheduler is redbeat's, plus recovery from a wiped Redis (lock and schedule
# gone) without exiting.
beat_scheduler = "calsync.beat:Scheduler"
redbeat_redis_url = _env.redbeat_url
_redbeat_target = redis_url.parse(_env.redbeat_url)
if _redbeat_target.is_sentinel:
    # redbeat spells Sentinel its own way: a redis-sentinel:// URL and the sentinels as options.
    redbeat_redis_url = redis_url.redbeat_url(_redbeat_target)
    redbeat_redis_options = redis_url.redbeat_options(_redbeat_target, _env.redis_sentinel_master)
redbeat_key_prefix = "calsync:redbeat:"
beat_max_loop_interval = 5
redbeat_lock_timeout = _env.redbeat_lock_timeout  # default 30 s (CALSYNC_REDBEAT_LOCK_TIMEOUT)
# beat_schedule: imported above from calsync.schedule.
