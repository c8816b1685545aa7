"""The poll chunk task: a chunk of in-sync operators polled on one throttle lane.

The chunk's logic is calsync.runner.chunk (plain Python); this task runs it with this
process's settings and source and turns its outcome into Celery calls: each operator's
follow-up, the deferred rest as a new chunk, hand-offs as single batches. A push kick runs
the same chunk for its own operator in place (`poll_now`), without a task of its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from calsync import metrics
from calsync.celery import app
from calsync.runner.backoff import backoff_seconds
from calsync.runner.chunk import ChunkOutcome, ChunkRead, run_chunk
from calsync.runner.outage import is_outage
from calsync.runtime import current_settings, source_for
from calsync.tasks import names, notify
from calsync.tasks.base import CalsyncTask
from calsync.tasks.sync import follow_up, sync_batch


@app.task(bind=True, base=CalsyncTask, name=names.POLL_CHUNK, max_retries=None)
def poll_chunk(self: CalsyncTask, claims: list[list[int]]) -> dict[str, object]:
    """Poll a chunk of in-sync operators (ids and lease tokens only)."""
    started = time.monotonic()
    pairs = [(int(op), int(token)) for op, token in claims]
    try:
        out = _run(pairs, self.owner)
    except Exception as exc:
        if not is_outage(exc):
            raise
        # Quiet polls settled before the error are no longer in flight and will be left
        # out; the others are polled again under the same tokens.
        self.retry_outage(exc, (claims,), f"poll chunk of {len(pairs)}")
    return _carry_out(pairs, out, started)


def poll_now(owner: str, pairs: Sequence[tuple[int, int]], read: ChunkRead | None = None) -> dict[str, object]:
    """Poll these claims in the calling task, as a chunk would.

    Why: a change notification's sync used to be a kick task that published a chunk task
    of one operator; the second task's messaging (publish, deliver, acknowledge, three task
    events) cost about as much worker CPU as the claim itself. An outage of Postgres hands
    the claims to a chunk task, which backs off and retries under the same tokens.
    """
    started = time.monotonic()
    try:
        out = _run(pairs, owner, read)
    except Exception as exc:
        if not is_outage(exc):
            raise
        poll_chunk.apply_async(([list(p) for p in pairs],), countdown=backoff_seconds(0, None))
        return {"operators": len(pairs), "handed_to_chunk": len(pairs)}
    return _carry_out(pairs, out, started)


def _run(pairs: Sequence[tuple[int, int]], owner: str, read: ChunkRead | None = None) -> ChunkOutcome:
    settings = current_settings()
    return run_chunk(pairs, owner, settings, source_for(settings), read=read)


def _carry_out(pairs: Sequence[tuple[int, int]], out: ChunkOutcome, started: float) -> dict[str, object]:
    """What the chunk's outcome leaves to Celery: follow-ups, the deferred rest, hand-offs."""
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
    counts = {
        "quiet": out.quiet,
        "batch": len(out.steps),
        "lost": out.lost + out.skipped,
        "deferred": len(out.deferred),
        "handed_off": len(out.handed_off),
        "time_limit": 0 if out.timed_out is None else 1,
    }
    for outcome, n in counts.items():
        if n:
            metrics.POLLS.labels(outcome).inc(n)
    metrics.POLL_CHUNK_DURATION.observe(time.monotonic() - started)
    return {"operators": len(pairs), **counts}
