"""The dispatcher: the seed's CalendarSynchronization job, run by the redbeat leader's tick."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence

import redis

from calsync.celery import app
from calsync.config import env
from calsync.runtime import broker_client, current_settings
from calsync.schedule import DISPATCH_TICK_SECONDS
from calsync.store import dispatch, lifecycle, pause
from calsync.store.db import transaction
from calsync.tasks import names
from calsync.tasks.base import CalsyncTask
from calsync.tasks.poll import poll_chunk  # noqa: F401  (registers the task the chunks run)
from calsync.tasks.publish import publish_first_batches, publish_poll_chunks
from calsync.tasks.sync import sync_batch  # noqa: F401  (registers the task the chains run)

log = logging.getLogger(__name__)

CLAIM_LIMIT = 200_000
# Present as long as the broker keeps its data (calsync.tasks.dispatch.dispatch_tick).
EPOCH_KEY = "calsync:broker-epoch"
# A small tick is cut into at least this many chunks, so that every worker thread gets work.
MIN_CHUNKS = 64


def slot_of(now: dt.datetime, tick_seconds: float = DISPATCH_TICK_SECONDS) -> dt.datetime:
    """The tick a moment belongs to; two beats racing on one tick compute the same slot."""
    epoch = round(now.timestamp() / tick_seconds) * tick_seconds
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def chunked(claims: Sequence[tuple[int, int]], size: int, min_chunks: int = MIN_CHUNKS) -> list[list[tuple[int, int]]]:
    """Cut quiet claims into chunks of at most `size`, but into at least `min_chunks` when there are enough."""
    if not claims:
        return []
    n = max(1, min(size, math.ceil(len(claims) / min_chunks)))
    return [list(claims[i : i + n]) for i in range(0, len(claims), n)]


def enqueue_chains(claimed: Sequence[lifecycle.Claim]) -> None:
    """Start what each claim needs: a chunk of quiet polls, or the first batch of a chain."""
    quiet = [(c.operator_id, c.token) for c in claimed if c.quiet]
    single = [(c.operator_id, c.token) for c in claimed if not c.quiet]
    client = broker_client()
    if quiet:
        publish_poll_chunks(app, client, chunked(quiet, env().poll_chunk_size))
    if single:
        publish_first_batches(app, client, single)


def note_broker_epoch(client: redis.Redis, tick: dt.datetime, released: Sequence[int]) -> None:
    """Mark this broker as known again, once the leases its lost messages carried are released.

    Set only after the release committed and the new claims' messages were published: if the
    tick dies before (Redis failing again mid-publish), the next one releases again.
    """
    client.set(EPOCH_KEY, tick.isoformat())
    if released:
        log.warning(
            "tick %s: the broker had lost its data (Redis wiped or failed over to an empty replica); "
            "%d lease(s) in flight released and claimed again",
            tick.isoformat(), len(released),
        )  # fmt: skip


@app.task(bind=True, base=CalsyncTask, name=names.DISPATCH, acks_late=False)
def dispatch_tick(self: CalsyncTask, slot: str | None = None) -> dict[str, object]:
    """Claim every operator that is due and start its chain; a slot is dispatched once."""
    now = dt.datetime.now(dt.UTC)
    tick = dt.datetime.fromisoformat(slot) if slot else slot_of(now)
    settings = current_settings()
    interval = settings.poll_interval_minutes * 60.0
    client = broker_client()
    # The epoch key lives as long as the broker's data: when it is missing, every message
    # queued before may be gone, so the leases in flight are given back and claimed again.
    broker_lost = not client.exists(EPOCH_KEY)
    with transaction() as conn:
        if not dispatch.take_slot(conn, tick):
            return {"slot": tick.isoformat(), "duplicate": True}
        released = lifecycle.release_in_flight(conn) if broker_lost else []
        paused = pause.active(conn)
        if paused:
            # Exchange or the service account is broken for everyone: the paused batches
            # probe it themselves (calsync.store.pause); claiming would only churn leases.
            dispatch.record_tick(conn, tick, 0)
            claimed: list[lifecycle.Claim] = []
        else:
            claimed = lifecycle.claim_due(
                conn,
                slack_seconds=min(30.0, interval * 0.1),
                lease_seconds=env().lease_seconds,
                limit=CLAIM_LIMIT,
            )
            dispatch.record_tick(conn, tick, len(claimed))
    if not paused:
        enqueue_chains(claimed)
    if broker_lost:
        note_broker_epoch(client, tick, released)
    if paused:
        return {"slot": tick.isoformat(), "paused": True}
    log.info("tick %s: %d operator(s) dispatched", tick.isoformat(), len(claimed))
    return {"slot": tick.isoformat(), "dispatched": len(claimed)}
