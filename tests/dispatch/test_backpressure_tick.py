"""The dispatcher tick with backpressure, on the real Postgres and Redis (no worker: the queue is
what the test puts there). The rule itself is unit-tested in tests/unit/test_backpressure.py;
here: the tick reads the routed queue's depth and the previous observation, claims only what
fits, leaves the rest unclaimed for a later tick, and records what it saw for the next one.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from calsync.config import env

N = 200


@pytest.fixture
def due(db: Any, clean_redis: Any) -> Iterator[Any]:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO operators (email, display_name, calendar_sync) VALUES (%s, %s, true)",
            [(f"bp{i}@example.com", f"bp{i}") for i in range(N)],
        )
    yield db
    env.cache_clear()


def tick() -> dict[str, Any]:
    from calsync.tasks.dispatch import dispatch_tick

    slot = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(microseconds=uuid.uuid4().int % 999_999)
    return dispatch_tick(slot=slot.isoformat())  # type: ignore[no-any-return]


def in_flight(db: Any) -> int:
    return int(db.execute("SELECT count(*) AS n FROM sync_state WHERE in_flight").fetchone()["n"])


def backlog(client: Any, depth: int, rate: float) -> None:
    """A sync queue `depth` messages deep that has drained `rate` messages/s since the previous tick, 10 s ago."""
    from calsync.tasks.dispatch import BACKPRESSURE_KEY, sync_queue

    client.lpush(sync_queue(), *[b"stale"] * depth)
    seconds, micros = client.time()
    prev = {"at": seconds + micros / 1e6 - 10.0, "depth": depth + int(10 * rate), "ops_per_message": 1.0, "rate": rate}
    client.set(BACKPRESSURE_KEY, json.dumps(prev))


def test_a_queue_deeper_than_the_fleet_drains_holds_claims_back(due: Any, clean_redis: Any) -> None:
    # 1 message/s and a 300 s lease: 150 s of room, 500 queued -> only the floor (one operator).
    backlog(clean_redis, depth=500, rate=1.0)
    out = tick()
    assert out["dispatched"] == 1 and out["queue_depth"] == 500 and out["limit"] == 1, out
    assert in_flight(due) == 1
    from calsync.tasks.dispatch import BACKPRESSURE_KEY, TOTALS_KEY

    seen = json.loads(clean_redis.get(BACKPRESSURE_KEY))
    assert seen["depth"] == 501  # the queue as this tick left it, for the next tick's drain estimate
    assert int(clean_redis.hget(TOTALS_KEY, "held_back")) == 1


def test_room_in_the_queue_is_filled_and_no_more(due: Any, clean_redis: Any) -> None:
    # 1 message/s x 150 s = 150 messages of room; 100 queued -> 50 operators (one chain message
    # each), a little less as the test's own seconds count as time without drain.
    backlog(clean_redis, depth=100, rate=1.0)
    out = tick()
    assert 45 <= out["dispatched"] <= 50, out
    assert in_flight(due) == out["dispatched"]


def test_without_backpressure_every_due_operator_is_claimed(
    due: Any, clean_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALSYNC_BACKPRESSURE", "0")
    env.cache_clear()
    backlog(clean_redis, depth=500, rate=1.0)
    out = tick()
    assert out["dispatched"] == N and out["limit"] is None, out


def test_a_fresh_start_claims_every_due_operator(due: Any, clean_redis: Any) -> None:
    """One tick on an empty queue claims all that is due, as without backpressure (a manual tick, a first start)."""
    out = tick()
    assert out["dispatched"] == N and out["limit"] is None, out


def test_a_leftover_queue_without_a_measurement_grows_only_to_the_bootstrap(due: Any, clean_redis: Any) -> None:
    from calsync.tasks.dispatch import MIN_CHUNKS, sync_queue

    clean_redis.lpush(sync_queue(), *[b"left over"] * 14)
    out = tick()
    assert out["dispatched"] == MIN_CHUNKS - 14, out


def test_a_claim_that_takes_over_an_expired_lease_is_counted(due: Any, clean_redis: Any) -> None:
    from calsync.tasks.dispatch import BACKPRESSURE_KEY, MIN_CHUNKS, TOTALS_KEY, sync_queue

    clean_redis.lpush(sync_queue(), *[b"left over"] * 1)
    tick()  # the bootstrap: 63 claimed; their messages never run (no worker)
    # Their leases expire, they are the most overdue, and the queue (and what the dispatcher
    # saw of it) is lost: the next tick, with one message left, takes exactly them over.
    due.execute(
        "UPDATE sync_state SET lease_expires_at = now() - interval '1 second', "
        "next_poll_at = now() - interval '1 hour' WHERE in_flight"
    )
    clean_redis.delete(BACKPRESSURE_KEY, sync_queue())
    clean_redis.lpush(sync_queue(), *[b"left over"] * 1)
    out = tick()
    assert out["reclaimed"] == out["dispatched"] == MIN_CHUNKS - 1, out
    assert int(clean_redis.hget(TOTALS_KEY, "reclaimed")) == MIN_CHUNKS - 1
