"""The notification task: one email for everything that failed (or recovered) in a short window.

Whoever records a failure or a recovery calls `schedule()`. The first call in a window
enqueues one `calsync.notify.send_pending` with a countdown of the window; later calls in
the window do nothing (a Redis key), so 100 operators failing together (Exchange down) get
one digest, not 100 emails. The sender holds a Postgres advisory lock, so two senders never
split or duplicate a digest, and marks what it sent in the same transaction.
"""

from __future__ import annotations

import logging
import os
import smtplib
from typing import Any

import redis

from calsync import metrics
from calsync.celery import app
from calsync.config import env
from calsync.notify.email import compose_failures, compose_recoveries, send, smtp_config
from calsync.runtime import redis_client
from calsync.store import failures, pause
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from calsync.tasks import names
from calsync.tasks.base import CalsyncTask

log = logging.getLogger(__name__)

SCHEDULE_KEY = "calsync:notify:scheduled"


def digest_window_seconds() -> float:
    """How long failures are collected before one email goes out (CALSYNC_NOTIFY_DIGEST_SECONDS, default 60)."""
    try:
        return max(0.0, float(os.environ.get("CALSYNC_NOTIFY_DIGEST_SECONDS", "60")))
    except ValueError:
        return 60.0


def schedule(client: redis.Redis | None = None) -> bool:
    """Make sure one sender runs at the end of the current window; True when this call enqueued it."""
    window = digest_window_seconds()
    try:
        # The key lives a little shorter than the countdown: whatever is recorded after the
        # sender read its rows schedules the next one.
        first = (client or redis_client()).set(SCHEDULE_KEY, "1", nx=True, px=max(1, int(window * 1000) - 250))
    except redis.RedisError:
        first = True  # better two senders (the lock serialises them) than none
    if first:
        try:
            send_pending_task.apply_async(countdown=window)
        except Exception as exc:  # the broker is down: the periodic sweep sends it later
            log.error("cannot enqueue the notification sender: %s", type(exc).__name__)
            return False
    return bool(first)


def send_pending() -> dict[str, int]:
    """Send what is owed: one failure digest and one recovery digest at most. Plain Python (tests call it)."""
    with transaction() as conn:
        settings = settings_store.load(conn)
    recipients = settings.failure_recipients()
    config = smtp_config()
    sender = env().smtp_from
    sent = {"failures": 0, "recoveries": 0}
    for kind in ("failure", "recovery"):
        with transaction() as conn:
            failures.lock_sender(conn)
            if kind == "failure":
                pause.due_for_alert(conn, settings.notification_frequency_minutes)
            owed_failures, owed_recoveries = failures.lock_pending(conn)
            episodes = owed_failures if kind == "failure" else owed_recoveries
            if not episodes:
                continue
            if not recipients:
                log.warning("%d %s notification(s) not sent: notify_sync_failure_to is empty", len(episodes), kind)
            elif config is None:
                log.error("%d %s notification(s) waiting: CALSYNC_SMTP_URL is not set", len(episodes), kind)
                continue  # keep them owed until SMTP is configured
            else:
                if kind == "failure":
                    message = compose_failures(episodes, sender, recipients, settings.notification_frequency_minutes)
                else:
                    message = compose_recoveries(episodes, sender, recipients)
                send(config, message)
                metrics.NOTIFICATIONS.labels(kind).inc()
                log.warning("sent %s email about %d episode(s) to %d address(es) via %s",
                            kind, len(episodes), len(recipients), config.describe())  # fmt: skip
            ids = [e.id for e in episodes]
            if kind == "failure":
                failures.mark_notified(conn, ids, [])
                sent["failures"] = len(ids)
            else:
                failures.mark_notified(conn, [], ids)
                sent["recoveries"] = len(ids)
    return sent


@app.task(
    bind=True,
    base=CalsyncTask,
    name=names.NOTIFY_SEND_PENDING,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=900,
    retry_jitter=True,
    max_retries=48,
)
def send_pending_task(self: CalsyncTask) -> dict[str, Any]:
    """Send the owed failure/recovery digests (queue "notify"); safe to run any time, any number of times."""
    return dict(send_pending())
