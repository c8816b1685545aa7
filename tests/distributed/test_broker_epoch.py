"""The dispatcher's broker epoch, tick by tick, against the real Postgres and Redis.

The dispatcher task runs in this process (no worker needed to see what it claims and
publishes): while the broker keeps its data, a lease in flight is left alone until it
expires; once the broker lost it (FLUSHDB), the very next tick gives those leases back and
claims them again with new tokens, publishing a fresh message for each, and only that tick.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from calsync.simulator import mailbox_email
from calsync.tasks.dispatch import EPOCH_KEY, dispatch_tick
from tests.distributed.stack import insert_operators

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def tick(n: int) -> dict[str, object]:
    return dict(dispatch_tick(slot=(BASE + dt.timedelta(seconds=n)).isoformat()))


def tokens(db: Any) -> dict[int, int]:
    rows = db.execute("SELECT operator_id, lease_token FROM sync_state WHERE in_flight").fetchall()
    return {r["operator_id"]: r["lease_token"] for r in rows}


def test_a_wiped_broker_gets_its_leases_back_on_the_next_tick_only(db: Any, clean_redis: Any) -> None:
    ops = insert_operators(db, [mailbox_email(i) for i in range(1, 4)])
    assert not clean_redis.exists(EPOCH_KEY)

    assert tick(1)["dispatched"] == 3  # a fresh broker: nothing was in flight to release
    first = tokens(db)
    assert set(first) == set(ops.values()) and clean_redis.llen("sync") == 3
    assert clean_redis.exists(EPOCH_KEY)

    assert tick(2)["dispatched"] == 0  # the messages are queued: the leases are left alone
    assert tokens(db) == first and clean_redis.llen("sync") == 3

    clean_redis.flushdb()  # the three messages are gone
    assert tick(3)["dispatched"] == 3
    second = tokens(db)
    assert set(second) == set(first) and all(second[op] != first[op] for op in first)
    assert clean_redis.llen("sync") == 3 and clean_redis.exists(EPOCH_KEY)
    # Not a failure: no attempt counted, nobody retrying.
    row = db.execute("SELECT max(attempts) AS a, bool_or(failing_since IS NOT NULL) AS f FROM sync_state").fetchone()
    assert (row["a"], row["f"]) == (0, False)

    assert tick(4)["dispatched"] == 0  # once noticed, the wipe is not noticed again
    assert tokens(db) == second and clean_redis.llen("sync") == 3
