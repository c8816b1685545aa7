"""The dispatcher: the seed's CalendarSynchronization job, run by the redbeat leader's tick."""

from __future__ import annotations

import datetime as dt
import logging

from beat.schedule import DISPATCH_TICK_SECONDS
from calsync.celery import app
from calsync.store import dispatch
from calsync.store.db import transaction
from calsync.tasks.base import CalsyncTask, current_settings
from calsync.tasks.sync import sync_batch

log = logging.getLogger(__name__)

CLAIM_LIMIT = 200_000
ENQUEUE_CHUNK = 1000


def slot_of(now: dt.datetime, tick_seconds: float = DISPATCH_TICK_SECONDS) -> dt.datetime:
    """The tick a moment belongs to; two beats racing on one tick compute the same slot."""
    epoch = round(now.timestamp() / tick_seconds) * tick_seconds
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def enqueue_chains(claimed: list[tuple[int, int]]) -> None:
    """Publish the first batch of each chain over one broker connection, in chunks."""
    with app.producer_or_acquire() as producer:
        for i in range(0, len(claimed), ENQUEUE_CHUNK):
            for operator_id, token in claimed[i : i + ENQUEUE_CHUNK]:
                sync_batch.apply_async((operator_id, token), producer=producer)


@app.task(bind=True, base=CalsyncTask, name="calsync.dispatch", acks_late=False)
def dispatch_tick(self: CalsyncTask, slot: str | None = None) -> dict[str, object]:
    """Claim every operator that is due and start its chain; a slot is dispatched once."""
    now = dt.datetime.now(dt.UTC)
    tick = dt.datetime.fromisoformat(slot) if slot else slot_of(now)
    settings = current_settings()
    interval = settings.poll_interval_minutes * 60.0
    with transaction() as conn:
        if not dispatch.take_slot(conn, tick):
            return {"slot": tick.isoformat(), "duplicate": True}
        claimed = dispatch.claim_due(
            conn,
            slack_seconds=min(30.0, interval * 0.1),
            lease_seconds=max(600.0, interval * 2),
            limit=CLAIM_LIMIT,
        )
        dispatch.record_tick(conn, tick, len(claimed))
    enqueue_chains(claimed)
    log.info("tick %s: %d operator(s) dispatched", tick.isoformat(), len(claimed))
    return {"slot": tick.isoformat(), "dispatched": len(claimed)}
