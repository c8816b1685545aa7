"""Quiet polls in chunks: the steady state of a large fleet, made cheap.

Nearly every poll of an operator that is in sync finds nothing. Paying a Celery task, a
lease round trip, a run row and two throttle round trips for each of them made a poll cost
three times what exchangelib itself costs. So the dispatcher hands healthy incremental
operators out in chunks (calsync.tasks.dispatch): one task reads their states in one
query, polls them one after another on one fleet-wide throttle slot (a lane), and settles
every empty answer in one UPDATE. An operator whose poll finds changes goes on, inside the
chunk, through the same batch code as any chain (calsync.tasks.sync.run_step, with the page
already read), and its chain continues as its own tasks if there is more. A failing poll is
handled exactly as a failing batch.

Leases and fencing are unchanged: the chunk works under the tokens the dispatcher handed
out, every write is fenced by them, and a chunk delivered twice finds its settled
operators no longer in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from calsync import metrics
from calsync.celery import app
from calsync.config import env
from calsync.runner import BatchFailed
from calsync.settings import SyncSettings
from calsync.source.errors import Disposition, InvalidCursor, SourceError
from calsync.source.port import CalendarSource
from calsync.store import pause, polls, push_sync_state
from calsync.store.db import transaction
from calsync.sync.model import SyncPage
from calsync.tasks import notify
from calsync.tasks.base import CalsyncTask, backoff_seconds, current_settings, source_for
from calsync.tasks.sync import INFRA_ERRORS, Step, failure_step, follow_up, run_step, sync_batch
from calsync.throttle import ThrottleBusy

log = logging.getLogger(__name__)

# Stop taking new polls after this long and pass the rest on as a new chunk, well inside
# the task's soft time limit (celeryconfig) even when the last poll hits a slow Exchange.
CHUNK_BUDGET_SECONDS = 45.0


@dataclass
class ChunkOutcome:
    quiet: int = 0  # polls that found nothing and were settled
    lost: int = 0  # quiet polls whose lease had moved on by the time they were settled
    skipped: int = 0  # claims no longer ours when the chunk started
    steps: list[tuple[int, Step]] = field(default_factory=list)  # operators that ran a batch
    deferred: list[tuple[int, int]] = field(default_factory=list)  # not polled: poll them later
    defer_seconds: float = 0.0
    handed_off: list[tuple[int, int]] = field(default_factory=list)  # not polled: each as its own batch
    crashed: list[int] = field(default_factory=list)  # an unexpected error: left to the lease's expiry
    push_latencies: list[float] = field(default_factory=list)  # notification-to-commit seconds (push)


def run_chunk(
    claims: Sequence[tuple[int, int]],
    owner: str,
    settings: SyncSettings | None = None,
    budget_seconds: float = CHUNK_BUDGET_SECONDS,
) -> ChunkOutcome:
    """Poll `claims` (operator id, lease token) one after another; the plain-Python core."""
    settings = settings or current_settings()
    out = ChunkOutcome()
    with transaction() as conn:
        paused = pause.current(conn) is not None
        targets = [] if paused else polls.leased(conn, claims)
    if paused:
        # Each operator meets the pause gate on its own (standing back, or being the probe).
        out.handed_off = [(op, token) for op, token in claims]
        return out
    out.skipped = len(claims) - len(targets)
    deadline = time.monotonic() + budget_seconds
    quiet: list[polls.QuietPoll] = []
    done = 0
    try:
        with source_for(settings).lane() as lane:
            for target in targets:
                if time.monotonic() > deadline:
                    break
                op, token = target.operator_id, target.token
                try:
                    page = lane.sync_page(target.email, target.cursor, settings.batch_size)
                except ThrottleBusy as busy:
                    out.defer_seconds = busy.retry_after or 1.0
                    break
                except InvalidCursor:
                    # The batch code starts the resync (it meets the same answer again).
                    done += 1
                    _batch(out, op, token, owner, settings, lane, None)
                    continue
                except SourceError as err:
                    done += 1
                    out.steps.append((op, failure_step(BatchFailed(err, op, token), settings, probe=False)))
                    if err.disposition is Disposition.GLOBAL:
                        # Paused now: the rest stand back through the gate, each on its own.
                        out.handed_off = [(t.operator_id, t.token) for t in targets[done:]]
                        break
                    continue
                done += 1
                if target.current and page.includes_last and not page.changes:
                    quiet.append(polls.QuietPoll(op, token, page.sync_state))
                    continue
                _batch(out, op, token, owner, settings, lane, (target.cursor, page))
    except ThrottleBusy as busy:  # no slot for the lane at all
        out.defer_seconds = busy.retry_after or 1.0
    finally:
        # Settle what was polled even when something above raised: those polls happened.
        if quiet:
            with transaction() as conn:
                settled = polls.settle_quiet(conn, quiet, settings.poll_interval_minutes)
                if settings.notification_url:
                    out.push_latencies = push_sync_state.after_success(
                        conn, [q.operator_id for q in quiet], settings.push_safety_poll_minutes,
                        env().push_minute_seconds,
                    )  # fmt: skip
            out.quiet, out.lost = settled, len(quiet) - settled
    if not out.handed_off:
        out.deferred = [(t.operator_id, t.token) for t in targets[done:]]
    return out


def _batch(
    out: ChunkOutcome,
    op: int,
    token: int,
    owner: str,
    settings: SyncSettings,
    lane: CalendarSource,
    prefetched: tuple[str | None, SyncPage] | None,
) -> None:
    """A poll that was not quiet: the operator's batch, run here as a chain's task would run it."""
    try:
        step = run_step(op, token, owner, settings, source=lane, prefetched=prefetched, gated=True)
    except INFRA_ERRORS:
        raise  # Postgres or Redis is down for everyone: the task retries the chunk
    except Exception:
        # A bug met in one mailbox must not stall the others of its chunk. As a chain
        # task's crash would, it leaves the lease to expire and the operator to be claimed again.
        log.exception("operator %s: unexpected error in a batch run by a poll chunk", op)
        metrics.SYNC_ERRORS.labels("UnexpectedError", Disposition.TRANSIENT.value).inc()
        out.crashed.append(op)
        return
    out.steps.append((op, step))


@app.task(bind=True, base=CalsyncTask, name="calsync.poll_chunk", max_retries=None)
def poll_chunk(self: CalsyncTask, claims: list[list[int]]) -> dict[str, object]:
    """Poll a chunk of in-sync operators (ids and lease tokens only)."""
    started = time.monotonic()
    pairs = [(int(op), int(token)) for op, token in claims]
    try:
        out = run_chunk(pairs, self.owner)
    except INFRA_ERRORS as exc:
        # Quiet polls settled before the error are no longer in flight and will be left
        # out; the others are polled again under the same tokens.
        code = "RedisUnavailable" if isinstance(exc, redis.RedisError) else "DatabaseUnavailable"
        metrics.SYNC_ERRORS.labels(code, Disposition.TRANSIENT.value).inc()
        countdown = backoff_seconds(self.request.retries, None)
        log.warning("poll chunk of %d: %s (%s); retrying in %.0fs", len(pairs), code, type(exc).__name__, countdown)
        raise self.retry(args=(claims,), countdown=countdown, exc=exc) from exc
    owed = False
    for op, step in out.steps:
        metrics.BATCHES.labels(step.outcome).inc()
        follow_up(op, step)
        owed = owed or step.notify
    if owed:
        notify.schedule()
    for seconds in out.push_latencies:
        metrics.PUSH_LATENCY.observe(seconds)
    if out.quiet:
        metrics.BATCHES.labels("done").inc(out.quiet)
        metrics.RUNS.labels("succeeded").inc(out.quiet)
    if out.deferred:
        poll_chunk.apply_async(([list(c) for c in out.deferred],), countdown=out.defer_seconds or None)
    for op, token in out.handed_off:
        sync_batch.apply_async((op, token))
    for outcome, n in (
        ("quiet", out.quiet),
        ("batch", len(out.steps)),
        ("lost", out.lost + out.skipped),
        ("deferred", len(out.deferred)),
        ("handed_off", len(out.handed_off)),
        ("crashed", len(out.crashed)),
    ):
        if n:
            metrics.POLLS.labels(outcome).inc(n)
    metrics.POLL_CHUNK_DURATION.observe(time.monotonic() - started)
    return {
        "operators": len(pairs),
        "quiet": out.quiet,
        "batches": len(out.steps),
        "lost": out.lost + out.skipped,
        "deferred": len(out.deferred),
        "handed_off": len(out.handed_off),
        "crashed": len(out.crashed),
    }
