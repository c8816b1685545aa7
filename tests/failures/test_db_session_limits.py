"""A worker frozen inside a transaction: Postgres ends its session, the operator can be taken over.

The frozen worker is a real process that takes an operator's row lock through calsync's own
pool (calsync.store.db) and then stops (SIGSTOP), as a stuck process would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import psycopg
import pytest

from calsync.store import lifecycle

from .conftest import add_operators, wait_for

pytestmark = pytest.mark.timeout(120)

LOCKER = textwrap.dedent(
    """
    import sys, time
    from calsync.store.db import transaction
    with transaction() as conn:
        conn.execute("SELECT 1 FROM sync_state WHERE operator_id = %s FOR UPDATE", (int(sys.argv[1]),))
        print(conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"], flush=True)
        time.sleep(3600)
    """
)


def claim(database_url: str) -> list[int]:
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        return [c.operator_id for c in lifecycle.claim_due(conn, slack_seconds=0.0, lease_seconds=60.0, limit=10)]


def test_frozen_worker_in_a_transaction_loses_its_session_and_the_operator_is_taken_over(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    (op,) = add_operators(db, ["frozen@example.com"])
    # Due now, with an expired lease: exactly what the dispatcher takes over.
    db.execute(
        "UPDATE sync_state SET in_flight = true, lease_expires_at = now() - interval '1 second', next_poll_at = now() "
        "WHERE operator_id = %s",
        (op,),
    )
    env = {**os.environ, "CALSYNC_DATABASE_URL": database_url, "CALSYNC_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": "2"}
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(op)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert locker.stdout is not None
        backend = int(locker.stdout.readline())
        os.kill(locker.pid, signal.SIGSTOP)  # frozen while holding the row lock
        state = db.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone()
        assert state is not None and state["state"] == "idle in transaction"
        if claim(database_url) == [op]:
            pytest.fail("the operator was claimable while the frozen session still held its lock")
        # Postgres ends the frozen session after 2 s; then the dispatcher can take the operator over.
        wait_for(
            lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone() is None,
            60,
            "Postgres to end the idle-in-transaction session",
        )
        assert claim(database_url) == [op]
    finally:
        os.kill(locker.pid, signal.SIGCONT)
        locker.kill()
        locker.wait(10)


def test_pooled_sessions_carry_both_limits(database_url: str) -> None:
    script = (
        "from calsync.store.db import transaction\n"
        "with transaction() as c:\n"
        "    print(c.execute('SHOW idle_in_transaction_session_timeout').fetchone()['idle_in_transaction_session_timeout'])\n"
        "    print(c.execute('SHOW statement_timeout').fetchone()['statement_timeout'])\n"
    )
    env = {**os.environ, "CALSYNC_DATABASE_URL": database_url}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1min", "2min"]
    env["CALSYNC_DB_STATEMENT_TIMEOUT_SECONDS"] = "0.5"
    slow = subprocess.run(
        [sys.executable, "-c", "from calsync.store.db import transaction\n"
         "with transaction() as c: c.execute('SELECT pg_sleep(5)')"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert slow.returncode != 0 and "canceling statement due to statement timeout" in slow.stderr
