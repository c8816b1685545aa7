"""The dispatcher: the seed's CalendarSynchronization job, run by the redbeat leader's tick."""

from __future__ import annotations

import datetime as dt
import logging

from beat.schedule import DISPATCH_TICK_SECONDS
from calsync.celery import app
from calsync.config import env
from calsync.store import dispatch, pause
from calsync.store.db import transaction
from calsync.tasks.base import CalsyncTask, broker_client, current_settings
from calsync.tasks.publish import publish_first_batches
from calsync.tasks.sync import sync_batch  # noqa: F401  (registers the task the chains run)

log = logging.getLogger(__name__)

CLAIM_LIMIT = 200_000


def slot_of(now: dt.datetime, tick_seconds: float = DISPATCH_TICK_SECONDS) -> dt.datetime:
    """The tick a moment belongs to; two beats racing on one tick compute the same slot."""
    epoch = round(now.timestamp() / tick_seconds) * tick_seconds
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def enqueue_chains(claimed: list[tuple[int, int]]) -> None:
    """Publish the first batch of each claimed operator's chain (see calsync.tasks.publish)."""
    publish_first_batches(app, broker_client(), claimed)


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
        if pause.active(conn):
            # Exchange or the service account is broken for everyone: the paused batches
            # probe it themselves (calsync.store.pause); claiming would only churn leases.
            dispatch.record_tick(conn, tick, 0)
            return {"slot": tick.isoformat(), "paused": True}
        claimed = dispatch.claim_due(
            conn,
            slack_seconds=min(30.0, interval * 0.1),
            lease_seconds=env().lease_seconds,
            limit=CLAIM_LIMIT,
        )
        dispatch.record_tick(conn, tick, len(claimed))
    enqueue_chains(claimed)
    log.info("tick %s: %d operator(s) dispatched", tick.isoformat(), len(claimed))
    return {"slot": tick.isoformat(), "dispatched": len(claimed)}
