"""The listener's group commit against real Postgres: lingering keep-alives share one statement.

Rows updated by one statement carry the same last_heard_at (now() is the transaction's start
time), so equal timestamps show that keep-alives which arrived apart were recorded together,
and distinct ones that they were not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from calsync.listener.group import GroupCommit
from calsync.push.callback import new_secret, secret_hash
from calsync.store import push


def _subscriptions(db: Any, n: int, enabled: bool = True, prefix: str = "k") -> list[push.Notice]:
    notices = []
    for i in range(n):
        op = db.execute(
            "INSERT INTO operators (email, calendar_sync) VALUES (%s, %s) RETURNING id",
            (f"{prefix}{i}@example.com", enabled),
        ).fetchone()["id"]
        db.execute("INSERT INTO push_status (operator_id) VALUES (%s)", (op,))
        h = secret_hash(new_secret())
        db.execute(
            "INSERT INTO push_subscriptions (operator_id, subscription_id, secret_hash, base_url, email, "
            "status_frequency_minutes, state, subscribed_at, last_heard_at) "
            "VALUES (%s, %s, %s, 'http://listener/ews/push', 'x@example.com', 30, 'active', now(), now() - interval '1 hour')",
            (op, f"SUB{op}", h),
        )
        notices.append(push.Notice(h, f"SUB{op}", f"wm-{op}", 0))
    return notices


async def _hear(database_url: str, notices: list[push.Notice], gap: float, **options: Any) -> list[push.Heard]:
    """Each notice `gap` seconds after the previous one, without waiting for its answer (as
    Exchange's mailboxes send them: each on its own)."""
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=2, kwargs={"autocommit": True, "row_factory": dict_row}
    ) as pool:
        group = GroupCommit(pool, **options)

        async def one(k: int, n: push.Notice) -> push.Heard:
            await asyncio.sleep(k * gap)
            return await group.hear(n)

        try:
            return list(await asyncio.wait_for(asyncio.gather(*(one(k, n) for k, n in enumerate(notices))), 30))
        finally:
            group.close()


def _heard_at(db: Any) -> list[Any]:
    rows = db.execute("SELECT last_heard_at, watermark FROM push_subscriptions ORDER BY id").fetchall()
    assert all(r["watermark"].startswith("wm-") for r in rows)  # every keep-alive recorded
    return [r["last_heard_at"] for r in rows]


def test_lone_keepalives_that_linger_share_one_statement(db: Any, database_url: str) -> None:
    notices = _subscriptions(db, 3)
    heard = asyncio.run(_hear(database_url, notices, gap=0.05, linger=0.5))
    assert [h.verdict for h in heard] == [push.Verdict.OK] * 3
    assert len(set(_heard_at(db))) == 1


def test_without_linger_each_lone_keepalive_is_its_own_statement(db: Any, database_url: str) -> None:
    notices = _subscriptions(db, 3)
    heard = asyncio.run(_hear(database_url, notices, gap=0.05, linger=0.0))
    assert [h.verdict for h in heard] == [push.Verdict.OK] * 3
    assert len(set(_heard_at(db))) == 3


def test_a_full_batch_goes_at_once_without_waiting_for_the_timer(db: Any, database_url: str) -> None:
    # A linger far past wait_for's 30 s: only the batch size can have started the statement.
    notices = _subscriptions(db, 4)
    heard = asyncio.run(_hear(database_url, notices, gap=0.0, linger=600.0, linger_batch=4))
    assert [h.verdict for h in heard] == [push.Verdict.OK] * 4


def test_a_lingering_keepalive_of_a_disabled_operator_is_answered_unsubscribe(db: Any, database_url: str) -> None:
    notices = _subscriptions(db, 1) + _subscriptions(db, 1, enabled=False, prefix="off")
    heard = asyncio.run(_hear(database_url, notices, gap=0.05, linger=0.3))
    assert [h.verdict for h in heard] == [push.Verdict.OK, push.Verdict.UNSUBSCRIBE]
    assert db.execute("SELECT state FROM push_subscriptions ORDER BY id").fetchall() == [
        {"state": "active"},
        {"state": "ended"},
    ]
