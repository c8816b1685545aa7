"""Quiet polls in chunks: the steady state of a large fleet, made cheap.

Nearly every poll of an operator that is in sync finds nothing. Paying a Celery task, a
lease round trip, a run row and two throttle round trips for each of them made a poll cost
three times what exchangelib itself costs. So the dispatcher hands healthy incremental
operators out in chunks: one task reads their states in one query, polls them one after
another on one fleet-wide throttle slot (a lane), and settles every empty answer in one
UPDATE. Anything else a poll finds (changes, a failure) goes through `run_step`, the same
core a chain's batch runs, with the page already read; a chain continues as its own tasks
if there is more.

Leases and fencing are unchanged: the chunk works under the tokens the dispatcher handed
out, every write is fenced by them, and a chunk delivered twice finds its settled
operators no longer in flight.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from celery.exceptions import SoftTimeLimitExceeded

from calsync import errors
from calsync.config import env
from calsync.errors import Disposition, InvalidCursor, SourceError
from calsync.runner.backoff import MAX_RETRY_COUNTDOWN
from calsync.runner.batch import BatchFailed
from calsync.runner.outage import struck_by_time_limit
from calsync.runner.step import Context, Step, failure_step, run_step
from calsync.settings import SyncSettings
from calsync.source.routed import RoutedSource
from calsync.source.throttled import ThrottledSource
from calsync.store import lifecycle, pause
from calsync.store.db import transaction
from calsync.throttle import ThrottleBusy

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
    timed_out: int | None = None  # the operator being polled when the task's time limit struck
    push_latencies: list[float] = field(default_factory=list)  # notification-to-commit seconds (push)


@dataclass(frozen=True)
class ChunkRead:
    paused: bool  # a global pause is on: every claim meets the gate on its own
    targets: list[lifecycle.PollTarget]  # the claims still ours to poll, in order


def read_chunk(conn: psycopg.Connection[Any], claims: Sequence[tuple[int, int]]) -> ChunkRead:
    """What a chunk reads before polling: the global pause, and which claims are still its own."""
    paused = pause.current(conn) is not None
    return ChunkRead(paused, [] if paused else lifecycle.leased(conn, claims))


def run_chunk(
    claims: Sequence[tuple[int, int]],
    owner: str,
    settings: SyncSettings,
    source: ThrottledSource | RoutedSource,
    budget_seconds: float = CHUNK_BUDGET_SECONDS,
    read: ChunkRead | None = None,
) -> ChunkOutcome:
    """Poll `claims` (operator id, lease token) one after another; the plain-Python core.

    `read`: what `read_chunk` gave inside the caller's own transaction (a push kick reads it
    in its claim's), in place of a transaction here."""
    out = ChunkOutcome()
    if read is None:
        with transaction() as conn:
            read = read_chunk(conn, claims)
    paused, targets = read.paused, read.targets
    if paused:
        # Each operator meets the pause gate on its own (standing back, or being the probe).
        out.handed_off = [(op, token) for op, token in claims]
        return out
    out.skipped = len(claims) - len(targets)
    deadline = time.monotonic() + budget_seconds
    quiet: list[lifecycle.QuietPoll] = []
    done = 0
    current: lifecycle.PollTarget | None = None
    try:
        with source.lane() as lane:
            ctx = Context(settings, lane, owner)
            for target in targets:
                if time.monotonic() > deadline:
                    break
                current = target
                op, token = target.operator_id, target.token
                try:
                    page = lane.sync_page(target.email, target.cursor, settings.batch_size)
                except ThrottleBusy as busy:
                    out.defer_seconds = busy.retry_after or 1.0
                    break
                except InvalidCursor:
                    # The batch code starts the resync (it meets the same answer again).
                    done += 1
                    out.steps.append((op, run_step(ctx, op, token)))
                    continue
                except SourceError as err:
                    if struck_by_time_limit(err):
                        raise SoftTimeLimitExceeded() from err
                    done += 1
                    out.steps.append((op, failure_step(BatchFailed(err, op, token), settings, probe=False)))
                    if err.disposition is Disposition.GLOBAL:
                        # Paused now: the rest stand back through the gate, each on its own.
                        out.handed_off = [(t.operator_id, t.token) for t in targets[done:]]
                        break
                    continue
                done += 1
                if target.current and page.includes_last and not page.changes:
                    quiet.append(lifecycle.QuietPoll(op, token, page.sync_state))
                    continue
                out.steps.append((op, run_step(ctx, op, token, (target.cursor, page))))
            current = None
    except ThrottleBusy as busy:  # no slot for the lane at all
        out.defer_seconds = busy.retry_after or 1.0
    except SoftTimeLimitExceeded:
        # The poll under way overran (a batch releases its own lease; a bare page read is
        # released here); the rest of the chunk goes on as a new chunk.
        if current is not None:
            out.timed_out = current.operator_id
            done = max(done, targets.index(current) + 1)
            with transaction() as conn:
                lifecycle.release(
                    conn, current.operator_id, current.token, errors.TIME_LIMIT,
                    "the poll was stopped by the task's soft time limit",
                    min(MAX_RETRY_COUNTDOWN, max(60.0, settings.poll_interval_minutes * 60.0)),
                )  # fmt: skip
    finally:
        # Settle what was polled even when something above raised: those polls happened.
        if quiet:
            with transaction() as conn:
                settled = lifecycle.settle_quiet(conn, quiet, settings.poll_interval_minutes)
                if settings.notification_url:
                    out.push_latencies = lifecycle.push_after_finish(
                        conn, [q.operator_id for q in quiet], settings.push_safety_poll_minutes,
                        env().push_minute_seconds,
                    )  # fmt: skip
            out.quiet, out.lost = settled, len(quiet) - settled
    if not out.handed_off:
        out.deferred = [(t.operator_id, t.token) for t in targets[done:]]
    return out
