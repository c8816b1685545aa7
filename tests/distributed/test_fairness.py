"""Issue 5: a huge mailbox does not hold back the small ones.

Each batch is its own task and the next batch of a mailbox joins the back of the queue, so
a huge first sync interleaves with everyone else's instead of occupying a worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from calsync.simulator import SimulatorProcess, mailbox_email
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from tests.distributed.conftest import dispatch_now
from tests.distributed.stack import Stack, insert_operators, mirror_problems, synced_count, wait_for

BIG = mailbox_email(101)
# 10,000 keeps `make test` within its budget on 2 cores; `make bench` syncs one of 50,000.
HUGE = 10_000


@pytest.fixture
def company() -> Iterator[SimulatorProcess]:
    """The simulator in a process of its own, so it does not share the test's interpreter."""
    with SimulatorProcess(mailboxes=100, appointments=20, seed=3, extra_args=["--also", f"1:{HUGE}"]) as sim:
        yield sim


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_huge_mailbox_and_a_hundred_small_ones_small_first(
    db: Any, clean_redis: Any, database_url: str, redis_url: str, company: SimulatorProcess
) -> None:
    with transaction() as conn:
        settings_store.set_value(conn, "exchange_url", company.ews_url)
        settings_store.set_value(conn, "batch_size", 512)
        settings_store.set_value(conn, "poll_interval_minutes", 600)
    # The huge mailbox is claimed and started first.
    operators = insert_operators(db, [BIG, *(mailbox_email(i) for i in range(1, 101))])
    stack = Stack(
        {
            "CALSYNC_DATABASE_URL": database_url,
            "CALSYNC_REDIS_URL": redis_url,
            "CALSYNC_EWS_USERNAME": company.user,
            "CALSYNC_EWS_PASSWORD": company.password,
        }
    )
    try:
        stack.worker("w1", concurrency=4)
        stack.worker("w2", concurrency=4)
        dispatch_now()
        wait_for(lambda: synced_count(db) == 101, 400, "all 101 first syncs", interval=1.0)
    finally:
        stack.stop_all()
    rows = db.execute(
        "SELECT o.email, s.last_success_at FROM sync_state s JOIN operators o ON o.id = s.operator_id"
    ).fetchall()
    done = {r["email"]: r["last_success_at"] for r in rows}
    big_done = done.pop(BIG)
    assert max(done.values()) < big_done, "every small mailbox finished before the huge one"
    big_rows = db.execute("SELECT count(*) AS n FROM appointments WHERE operator_id = %s", (operators[BIG],)).fetchone()
    assert big_rows["n"] > HUGE // 5
    problems = mirror_problems(db, company.client(), operators)
    assert problems == [], problems[:10]
