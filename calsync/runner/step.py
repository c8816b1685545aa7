"""One batch and what it means for its operator: the one core a chain and a poll chunk share.

`run_step` runs a batch under a `Context` (the settings, the source, who runs it, and what
the global-pause gate said) and turns its result into a `Step`, which the task turns into
Celery calls. The rules:

- transient: retry the batch under the same lease, with exponential back-off and jitter,
  never sooner than Exchange asked; once the operator has been failing for the
  notification frequency, give up: status failed, an email owed, re-checked later;
- resync: handled inside run_batch (a fresh full sync, no duplicates);
- operator: failed at once with its catalogue code, an email owed, re-checked hourly;
- global: pause everyone (calsync.store.pause), give the lease back until the pause ends;
- ThrottleBusy (our own fleet-wide cap) is no failure at all: just later;
- anything else raised while the step runs (a bug, an answer never seen) is classified as
  UnexpectedError and handled as transient: recorded, retried, and emailed once it lasts.

A batch that completes the sync closes the operator's failure episode (a recovery email if
the failure was emailed); a probe batch that reached Exchange ends a global pause.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from calsync import errors, metrics
from calsync.errors import Disposition, SourceError
from calsync.runner.backoff import MAX_RETRY_COUNTDOWN, backoff_seconds
from calsync.runner.batch import BatchFailed, BatchOutcome, run_batch
from calsync.runner.outage import passes_through
from calsync.settings import SyncSettings
from calsync.source.port import CalendarSource
from calsync.store import failures, lifecycle, pause
from calsync.store.db import transaction
from calsync.store.lifecycle import LeaseLost
from calsync.sync.model import SyncPage
from calsync.throttle import ThrottleBusy

log = logging.getLogger(__name__)

OPERATOR_RECHECK_MINUTES = 60.0


@dataclass(frozen=True, slots=True)
class Context:
    """What the task opened for its batches. A chain's batch consults the gate itself
    (`enter`); a poll chunk has seen no pause before it started and passes Gate("open")."""

    settings: SyncSettings
    source: CalendarSource
    owner: str
    gate: pause.Gate = field(default_factory=lambda: pause.Gate("open"))


@dataclass(slots=True)
class Step:
    """What one batch did, and what the task must do next."""

    result: dict[str, object]
    outcome: str  # metrics label: more, done, retry, failed, paused, skipped, throttled
    retry_in: float | None = None  # run this batch again (same token) after this many seconds
    retry_token: int | None = None
    next_token: int | None = None  # enqueue the next batch of the chain with this token
    notify: bool = field(default=False)  # an email became owed


def enter(settings: SyncSettings, source: CalendarSource, owner: str, operator_id: int, token: int | None) -> Context:
    """A chain's batch meets the global-pause gate: go on, be the probe, or stand back (the
    lease is given back here, in the gate's transaction)."""
    with transaction() as conn:
        gate = pause.gate(conn, settings.poll_interval_minutes)
        if gate.kind == "paused":
            assert gate.pause is not None
            pause.stand_back(conn, operator_id, token, gate.pause, attempted=False)
    return Context(settings, source, owner, gate)


def run_step(
    ctx: Context, operator_id: int, token: int | None, page: tuple[str | None, SyncPage] | None = None
) -> Step:
    """One batch and its consequences. `page`: what a poll already read, with its cursor."""
    if ctx.gate.kind == "paused":
        assert ctx.gate.pause is not None
        return Step({"operator_id": operator_id, "paused": ctx.gate.pause.code}, "paused")
    probe = ctx.gate.kind == "probe"
    try:
        outcome = run_batch(ctx.source, operator_id, token, ctx.owner, prefetched=page)
    except BatchFailed as failed:
        return failure_step(failed, ctx.settings, probe=probe)
    except LeaseLost:
        return Step({"operator_id": operator_id, "skipped": "lease lost"}, "skipped")
    except Exception as exc:
        if passes_through(exc) or token is None:
            raise
        log.exception("operator %s: unexpected error around a batch", operator_id)
        return failure_step(BatchFailed(errors.unexpected(exc), operator_id, token), ctx.settings, probe=probe)
    return _success(outcome, probe=probe)


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
        return _give_up(err, op, token, OPERATOR_RECHECK_MINUTES, owed)
    return _transient(err, op, token, settings, owed)


def _give_up(err: SourceError, op: int, token: int, recheck_minutes: float, owed: bool) -> Step:
    with transaction() as conn:
        if lifecycle.fail(conn, op, token, err.code, err.detail, recheck_minutes):
            owed = failures.open_episode(conn, op, err.code, err.disposition, err.detail) or owed
    metrics.RUNS.labels("failed").inc()
    log.warning("operator %s failed: %s (%s)", op, err.code, err.disposition.value)
    return Step({"operator_id": op, "failed": err.code}, "failed", notify=owed)


def _transient(err: SourceError, op: int, token: int, settings: SyncSettings, owed: bool) -> Step:
    with transaction() as conn:
        recorded = lifecycle.fail_transient(conn, op, token, err.code, err.detail, MAX_RETRY_COUNTDOWN + 300.0)
    if recorded is None:
        return Step({"operator_id": op, "skipped": "lease lost"}, "skipped", notify=owed)
    failing_since, attempts = recorded
    timeout = dt.timedelta(minutes=settings.notification_frequency_minutes)
    if dt.datetime.now(dt.UTC) - failing_since >= timeout:
        log.warning("operator %s: sync cancelled after %s of failures (%s)", op, timeout, err.code)
        return _give_up(err, op, token, float(settings.notification_frequency_minutes), owed)
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
