"""The dispatcher: the seed's CalendarSynchronization job, run by the redbeat leader's tick."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from calsync import backpressure
from calsync.celery import app
from calsync.config import env
from calsync.runtime import broker_client, current_settings
from calsync.schedule import DISPATCH_TICK_SECONDS
from calsync.store import dispatch, lifecycle, pause
from calsync.store.db import transaction
from calsync.tasks import names
from calsync.tasks.base import CalsyncTask
from calsync.tasks.poll import poll_chunk  # noqa: F401  (registers the task the chunks run)
from calsync.tasks.publish import publish_first_batches, publish_poll_chunks, queue_for
from calsync.tasks.sync import sync_batch  # noqa: F401  (registers the task the chains run)

log = logging.getLogger(__name__)

CLAIM_LIMIT = 200_000
# Present as long as the broker keeps its data (calsync.tasks.dispatch.dispatch_tick).
EPOCH_KEY = "calsync:broker-epoch"
# A small tick is cut into at least this many chunks, so that every worker thread gets work.
MIN_CHUNKS = 64
# What the previous tick saw of the sync queue (calsync.backpressure.Observation, JSON), and
# running totals for `calsync status`-style tools and the backpressure benchmark.
BACKPRESSURE_KEY = "calsync:dispatch:backpressure"
TOTALS_KEY = "calsync:dispatch:totals"


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


def enqueue_chains(claimed: Sequence[lifecycle.Claim], min_chunks: int = MIN_CHUNKS) -> int:
    """Start what each claim needs: a chunk of quiet polls, or the first batch of a chain.

    `min_chunks`: quiet claims are cut into at least this many chunks when there are enough
    (so that every worker thread gets work). Returns the number of messages published.
    """
    quiet = [(c.operator_id, c.token) for c in claimed if c.quiet]
    single = [(c.operator_id, c.token) for c in claimed if not c.quiet]
    client = broker_client()
    chunks = chunked(quiet, env().poll_chunk_size, min_chunks) if quiet else []
    if chunks:
        publish_poll_chunks(app, client, chunks)
    if single:
        publish_first_batches(app, client, single)
    return len(chunks) + len(single)


@dataclass(frozen=True, slots=True)
class Budget:
    """This tick's view of the sync queue and the claim limit it gives."""

    at: float
    depth: int
    rate: float | None
    limit: int
    ops_per_message: float


def sync_queue() -> str:
    """The queue sync batches and poll chunks go to, from the one routing table."""
    return queue_for(app, names.SYNC_BATCH)


def _now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def plan_claims(client: redis.Redis, lease_seconds: float, tick_seconds: float) -> Budget:
    """Read the queue and the previous tick's observation; the limit is CLAIM_LIMIT when backpressure is off."""
    at, depth = _now(client), int(client.llen(sync_queue()))
    raw = client.get(BACKPRESSURE_KEY)
    prev = backpressure.Observation.from_json(json.loads(raw)) if raw else None
    rate = backpressure.drain_rate(prev, at, depth)
    ops = prev.ops_per_message if prev else 1.0
    limit = CLAIM_LIMIT
    if env().backpressure:
        wait = backpressure.target_wait(lease_seconds, tick_seconds)
        limit = backpressure.claim_limit(depth, rate, ops, wait, CLAIM_LIMIT, bootstrap=MIN_CHUNKS)
    return Budget(at, depth, rate, limit, ops)


def observe(client: redis.Redis, budget: Budget, claimed: Sequence[lifecycle.Claim], messages: int) -> None:
    """Leave what this tick published for the next tick's estimate, and count the re-claims."""
    ops = len(claimed) / messages if messages else budget.ops_per_message
    obs = backpressure.Observation(
        at=_now(client), depth=int(client.llen(sync_queue())), ops_per_message=max(1.0, ops), rate=budget.rate
    )
    reclaimed = sum(1 for c in claimed if c.reclaimed)
    pipe = client.pipeline(transaction=False)
    pipe.set(BACKPRESSURE_KEY, json.dumps(obs.to_json()), ex=3600)
    pipe.hincrby(TOTALS_KEY, "ticks", 1)
    pipe.hincrby(TOTALS_KEY, "claimed", len(claimed))
    pipe.hincrby(TOTALS_KEY, "reclaimed", reclaimed)
    held_back = budget.limit < CLAIM_LIMIT and len(claimed) >= budget.limit
    pipe.hincrby(TOTALS_KEY, "held_back", 1 if held_back else 0)
    pipe.execute()


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
    budget = plan_claims(client, env().lease_seconds, DISPATCH_TICK_SECONDS)
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
                limit=budget.limit,
            )
            dispatch.record_tick(conn, tick, len(claimed))
    messages = 0 if paused else enqueue_chains(claimed)
    if broker_lost:
        note_broker_epoch(client, tick, released)
    if paused:
        return {"slot": tick.isoformat(), "paused": True}
    observe(client, budget, claimed, messages)
    reclaimed = sum(1 for c in claimed if c.reclaimed)
    limited = budget.limit < CLAIM_LIMIT
    log.info(
        "tick %s: %d operator(s) dispatched (%d re-claimed after their lease expired); sync queue %d deep%s",
        tick.isoformat(), len(claimed), reclaimed, budget.depth,
        f", claims limited to {budget.limit} (draining ~{budget.rate or 0:.1f} messages/s)" if limited else "",
    )  # fmt: skip
    return {
        "slot": tick.isoformat(), "dispatched": len(claimed), "reclaimed": reclaimed,
        "queue_depth": budget.depth, "limit": budget.limit if limited else None,
    }  # fmt: skip
