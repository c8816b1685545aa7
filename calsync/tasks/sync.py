"""The per-operator batch chain: each task syncs one batch, commits, and enqueues the next."""

from __future__ import annotations

import datetime as dt
import logging

from celery.exceptions import Retry

from calsync.celery import app
from calsync.runner import BatchFailed, run_batch
from calsync.source.errors import Disposition
from calsync.store import failures
from calsync.store.db import transaction
from calsync.tasks.base import CalsyncTask, backoff_seconds, current_settings, source_for
from calsync.throttle import ThrottleBusy

log = logging.getLogger(__name__)

OPERATOR_RECHECK_MINUTES = 60.0


@app.task(bind=True, base=CalsyncTask, name="calsync.sync_batch", max_retries=None)
def sync_batch(self: CalsyncTask, operator_id: int, token: int | None = None) -> dict[str, object]:
    """Sync one batch of `operator_id` under lease `token`, then hand on to the next batch."""
    settings = current_settings()
    try:
        outcome = run_batch(source_for(settings), operator_id, token, self.owner)
    except BatchFailed as failed:
        return _handle_failure(self, failed)
    if outcome.more:
        sync_batch.apply_async((operator_id, outcome.token))
    return {
        "operator_id": operator_id,
        "more": outcome.more,
        "created": outcome.created,
        "updated": outcome.updated,
        "deleted": outcome.deleted,
        "skipped": outcome.skipped_reason,
    }


def _handle_failure(task: CalsyncTask, failed: BatchFailed) -> dict[str, object]:
    err, op, token = failed.error, failed.operator_id, failed.token
    settings = current_settings()
    if isinstance(err, ThrottleBusy):
        raise task.retry(args=(op, token), countdown=err.retry_after or 1.0)
    if err.disposition is Disposition.OPERATOR:
        with transaction() as conn:
            failures.mark_failed(conn, op, token, err.code, err.detail, OPERATOR_RECHECK_MINUTES)
        log.warning("operator %s failed permanently: %s", op, err.code)
        return {"operator_id": op, "failed": err.code}
    countdown = backoff_seconds(0, err.retry_after)
    with transaction() as conn:
        recorded = failures.record_retry(conn, op, token, err.code, err.detail, countdown)
    if recorded is None:
        return {"operator_id": op, "skipped": "lease lost"}
    failing_since, attempts = recorded
    timeout = dt.timedelta(minutes=settings.notification_frequency_minutes)
    if dt.datetime.now(dt.UTC) - failing_since >= timeout:
        with transaction() as conn:
            failures.mark_failed(conn, op, token, err.code, err.detail, settings.notification_frequency_minutes)
        log.warning("operator %s: sync cancelled after %s of failures (%s)", op, timeout, err.code)
        return {"operator_id": op, "failed": err.code}
    countdown = backoff_seconds(attempts, err.retry_after)
    try:
        raise task.retry(args=(op, token), countdown=countdown)
    except Retry:
        raise
