"""The per-operator batch chain: each task syncs one batch, commits, and enqueues the next.

`run_step` is the plain-Python core (tests drive it without Celery): the global-pause gate,
one batch, and what a failure means for the operator:

- transient: retry the batch under the same lease, with exponential back-off and jitter,
  never sooner than Exchange asked; once the operator has been failing for the
  notification frequency, give up: status failed, an email owed, re-checked later;
- resync: handled inside run_batch (a fresh full sync, no duplicates);
- operator: failed at once with its catalogue code, an email owed, re-checked hourly;
- global: pause everyone (calsync.store.pause), give the lease back until the pause ends;
- ThrottleBusy (our own fleet-wide cap) is no failure at all: just later.

A batch that completes the sync closes the operator's failure episode (a recovery email if
the failure was emailed); a probe batch that reached Exchange ends a global pause.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

import psycopg
import psycopg_pool
import redis

from calsync import metrics
from calsync.celery import app
from calsync.runner import BatchFailed, BatchOutcome, run_batch
from calsync.settings import SyncSettings
from calsync.source.errors import Disposition, SourceError
from calsync.source.port import CalendarSource
from calsync.store import failures, pause
from calsync.store.db import transaction
from calsync.store.sync_state import LeaseLost
from calsync.sync.model import SyncPage
from calsync.tasks import notify
from calsync.tasks.base import MAX_RETRY_COUNTDOWN, CalsyncTask, backoff_seconds, current_settings, source_for
from calsync.throttle import ThrottleBusy

log = logging.getLogger(__name__)

OPERATOR_RECHECK_MINUTES = 60.0
# A Postgres or Redis blip inside a task: retried under the same lease token.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    redis.ConnectionError,
    redis.TimeoutError,
)


@dataclass(slots=True)
class Step:
    """What one batch did, and what the task must do next."""

    result: dict[str, object]
    outcome: str  # metrics label: more, done, retry, failed, paused, skipped, throttled
    retry_in: float | None = None  # run this batch again (same token) after this many seconds
    retry_token: int | None = None
    next_token: int | None = None  # enqueue the next batch of the chain with this token
    notify: bool = field(default=False)  # an email became owed


def run_step(
    operator_id: int,
    token: int | None,
    owner: str,
    settings: SyncSettings | None = None,
    *,
    source: CalendarSource | None = None,
    prefetched: tuple[str | None, SyncPage] | None = None,
    gated: bool = False,
) -> Step:
    """One batch and its consequences. `gated`: the caller (a poll chunk) has seen that no
    global pause exists, so the gate is not consulted again; `source` and `prefetched` let
    that caller hand over its throttle lane and the page it already read."""
    settings = settings or current_settings()
    gate = pause.Gate("open")
    if not gated:
        with transaction() as conn:
            gate = pause.gate(conn, settings.poll_interval_minutes)
            if gate.kind == "paused":
                assert gate.pause is not None
                pause.stand_back(conn, operator_id, token, gate.pause, attempted=False)
        if gate.kind == "paused":
            assert gate.pause is not None
            return Step({"operator_id": operator_id, "paused": gate.pause.code}, "paused")
    try:
        outcome = run_batch(source or source_for(settings), operator_id, token, owner, prefetched=prefetched)
    except BatchFailed as failed:
        step = failure_step(failed, settings, probe=gate.kind == "probe")
    except LeaseLost:
        return Step({"operator_id": operator_id, "skipped": "lease lost"}, "skipped")
    else:
        step = _success(outcome, probe=gate.kind == "probe")
    if step.notify:
        notify.schedule()
    return step


def _success(outcome: BatchOutcome, probe: bool) -> Step:
    op = outcome.operator_id
    result: dict[str, object] = {
        "operator_id": op,
        "more": outcome.more,
        "created": outcome.created,
        "updated": outcome.updated,
        "deleted": outcome.deleted,
        "skipped": outcome.skipped_reason,
    }
    if outcome.skipped_reason is not None:
        return Step(result, "skipped")
    owed = False
    if probe:
        with transaction() as conn:
            owed = pause.clear(conn)
        log.warning("Exchange answered the probe: the global pause is over")
    for change, n in (("created", outcome.created), ("updated", outcome.updated), ("deleted", outcome.deleted)):
        if n:
            metrics.ITEMS.labels(change).inc(n)
    if outcome.more:
        return Step(result, "more", next_token=outcome.token, notify=owed)
    owed = outcome.recovery_owed or owed
    metrics.RUNS.labels("succeeded").inc()
    if outcome.run_seconds is not None:
        metrics.RUN_DURATION.observe(outcome.run_seconds)
    for seconds in outcome.push_latencies:
        metrics.PUSH_LATENCY.observe(seconds)
    return Step(result, "done", notify=owed)


def failure_step(failed: BatchFailed, settings: SyncSettings, probe: bool) -> Step:
    """What a failed batch means for its operator (see the module docstring)."""
    err, op, token = failed.error, failed.operator_id, failed.token
    if isinstance(err, ThrottleBusy):
        wait = min(MAX_RETRY_COUNTDOWN, err.retry_after or 1.0)
        metrics.BACKOFF.labels("throttle").observe(wait)
        return Step({"operator_id": op, "throttled": wait}, "throttled", retry_in=wait, retry_token=token)
    metrics.SYNC_ERRORS.labels(err.code, err.disposition.value).inc()
    if err.retry_after:
        metrics.SERVER_BACKOFFS.labels(err.code).inc()
    if err.disposition is Disposition.GLOBAL:
        return _global(err, op, token, settings)
    owed = False
    if probe:  # Exchange answered, with something that is not a global failure
        with transaction() as conn:
            owed = pause.clear(conn)
    if err.disposition is Disposition.OPERATOR:
        with transaction() as conn:
            if failures.mark_failed(conn, op, token, err.code, err.detail, OPERATOR_RECHECK_MINUTES):
                owed = failures.open_episode(conn, op, err.code, err.disposition, err.detail) or owed
        metrics.RUNS.labels("failed").inc()
        log.warning("operator %s failed permanently: %s", op, err.code)
        return Step({"operator_id": op, "failed": err.code}, "failed", notify=owed)
    return _transient(err, op, token, settings, owed)


def _transient(err: SourceError, op: int, token: int, settings: SyncSettings, owed: bool) -> Step:
    with transaction() as conn:
        recorded = failures.record_retry(conn, op, token, err.code, err.detail, MAX_RETRY_COUNTDOWN)
    if recorded is None:
        return Step({"operator_id": op, "skipped": "lease lost"}, "skipped", notify=owed)
    failing_since, attempts = recorded
    timeout = dt.timedelta(minutes=settings.notification_frequency_minutes)
    if dt.datetime.now(dt.UTC) - failing_since >= timeout:
        with transaction() as conn:
            if failures.mark_failed(
                conn, op, token, err.code, err.detail, float(settings.notification_frequency_minutes)
            ):
                owed = failures.open_episode(conn, op, err.code, err.disposition, err.detail) or owed
        metrics.RUNS.labels("failed").inc()
        log.warning("operator %s: sync cancelled after %s of failures (%s)", op, timeout, err.code)
        return Step({"operator_id": op, "failed": err.code}, "failed", notify=owed)
    countdown = backoff_seconds(attempts, err.retry_after)
    metrics.BACKOFF.labels("server" if err.retry_after and countdown <= err.retry_after else "backoff").observe(
        countdown
    )
    return Step(
        {"operator_id": op, "retry_in": round(countdown, 3), "code": err.code},
        "retry",
        retry_in=countdown,
        retry_token=token,
        notify=owed,
    )


def _global(err: SourceError, op: int, token: int, settings: SyncSettings) -> Step:
    with transaction() as conn:
        current, started = pause.trip(conn, err.code, err.detail, settings.poll_interval_minutes)
        pause.stand_back(conn, op, token, current, attempted=True)
    if started:
        metrics.PAUSES.labels(err.code).inc()
        log.error("global failure %s: syncing paused for everyone until %s", err.code, current.until.isoformat())
    overdue = dt.datetime.now(dt.UTC) - current.since >= dt.timedelta(minutes=settings.notification_frequency_minutes)
    return Step({"operator_id": op, "paused": err.code}, "paused", notify=overdue)


@app.task(bind=True, base=CalsyncTask, name="calsync.sync_batch", max_retries=None)
def sync_batch(self: CalsyncTask, operator_id: int, token: int | None = None) -> dict[str, object]:
    """Sync one batch of `operator_id` under lease `token`, then hand on to the next batch."""
    started = time.monotonic()
    try:
        step = run_step(operator_id, token, self.owner)
    except INFRA_ERRORS as exc:
        code = "RedisUnavailable" if isinstance(exc, redis.RedisError) else "DatabaseUnavailable"
        metrics.SYNC_ERRORS.labels(code, Disposition.TRANSIENT.value).inc()
        countdown = backoff_seconds(self.request.retries, None)
        metrics.BACKOFF.labels("backoff").observe(countdown)
        log.warning("operator %s: %s (%s); retrying in %.0fs", operator_id, code, type(exc).__name__, countdown)
        raise self.retry(args=(operator_id, token), countdown=countdown, exc=exc) from exc
    metrics.BATCHES.labels(step.outcome).inc()
    metrics.BATCH_DURATION.labels(step.outcome).observe(time.monotonic() - started)
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
