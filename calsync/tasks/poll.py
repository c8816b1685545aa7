"""The poll chunk task: a chunk of in-sync operators polled on one throttle lane.

The chunk's logic is calsync.runner.chunk (plain Python); this task runs it with this
process's settings and source and turns its outcome into Celery calls: each operator's
follow-up, the deferred rest as a new chunk, hand-offs as single batches.
"""

from __future__ import annotations

import time

from calsync import metrics
from calsync.celery import app
from calsync.runner.chunk import run_chunk
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
        settings = current_settings()
        out = run_chunk(pairs, self.owner, settings, source_for(settings))
    except Exception as exc:
        if not is_outage(exc):
            raise
        # Quiet polls settled before the error are no longer in flight and will be left
        # out; the others are polled again under the same tokens.
        self.retry_outage(exc, (claims,), f"poll chunk of {len(pairs)}")
    owed = False
    for op, step in out.steps:
        metrics.BATCHES.labels(step.outcome).inc()
        follow_up(op, step)
        owed = owed or step.notify
    if owed:
        notify.schedule()
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
