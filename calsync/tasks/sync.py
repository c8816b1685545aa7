"""The per-operator batch chain: each task syncs one batch, commits, and enqueues the next.

What a batch means for its operator is decided in calsync.runner.step (plain Python); this
task only turns the Step into Celery calls: a retry with a countdown, the chain's next batch,
and the notification sender when an email became owed.
"""

from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded

from calsync import metrics
from calsync.celery import app
from calsync.runner.outage import is_outage
from calsync.runner.step import Step, enter, run_step
from calsync.runtime import current_settings, source_for
from calsync.store import pause
from calsync.store.db import transaction
from calsync.tasks import names, notify
from calsync.tasks.base import CalsyncTask


def sync_once(operator_id: int, token: int | None, owner: str) -> Step:
    """One chain step with this process's settings and source: the gate, then the batch."""
    settings = current_settings()
    return run_step(enter(settings, source_for(settings), owner, operator_id, token), operator_id, token)


@app.task(bind=True, base=CalsyncTask, name=names.SYNC_BATCH, max_retries=None)
def sync_batch(self: CalsyncTask, operator_id: int, token: int | None = None) -> dict[str, object]:
    """Sync one batch of `operator_id` under lease `token`, then hand on to the next batch."""
    started = time.monotonic()
    try:
        step = sync_once(operator_id, token, self.owner)
    except SoftTimeLimitExceeded:
        # The batch gave its lease back and recorded why (calsync.runner.batch); the
        # dispatcher claims the operator again when it is due.
        metrics.BATCHES.labels("time_limit").inc()
        return {"operator_id": operator_id, "time_limit": True}
    except Exception as exc:
        if not is_outage(exc):
            raise
        self.retry_outage(exc, (operator_id, token), f"operator {operator_id}")
    metrics.BATCHES.labels(step.outcome).inc()
    metrics.BATCH_DURATION.labels(step.outcome).observe(time.monotonic() - started)
    if step.notify:
        notify.schedule()
    if step.retry_in is not None:
        raise self.retry(args=(operator_id, step.retry_token), countdown=step.retry_in)
    if step.next_token is not None:
        sync_batch.apply_async((operator_id, step.next_token))
    return step.result


def global_pause_active() -> bool:
    """For the dispatcher: True while syncing is paused for everyone (skip the tick's claims)."""
    with transaction() as conn:
        return pause.active(conn)


def follow_up(operator_id: int, step: Step) -> None:
    """Enqueue what a step leaves to do outside a batch task: its retry, or its chain's next batch."""
    if step.retry_in is not None:
        sync_batch.apply_async((operator_id, step.retry_token), countdown=step.retry_in)
    elif step.next_token is not None:
        sync_batch.apply_async((operator_id, step.next_token))
