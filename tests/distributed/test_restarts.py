"""Issue 5: Redis and then Postgres restarted mid-run; workers and beat reconnect, mirrors converge.

Both servers are private instances started by the test, so killing them disturbs nothing else.
Workers and beat run under a supervisor, as in production: redbeat makes beat exit on purpose
when Redis goes away, and a worker can hit kombu's "Unrecoverable error" race when the broker
connection drops mid-acknowledgement; either way the process is started again, and what the
test shows is that no work is lost for good.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from calsync.simulator import SimulatorProcess, mailbox_email
from calsync.store import settings as settings_store
from tests.conftest import CALSYNC
from tests.distributed.stack import (
    Stack,
    connect,
    insert_operators,
    mirror_problems,
    private_postgres,
    private_redis,
    synced_count,
    wait_for,
)


def progress(conn: Any) -> int:
    row = conn.execute("SELECT COALESCE(sum(batches_total), 0) AS n FROM sync_state").fetchone()
    return int(row["n"])


@pytest.mark.slow
def test_redis_then_postgres_restart_mid_run_converges() -> None:
    with private_redis() as (redis_url, restart_redis), private_postgres() as (pg_url, restart_pg):
        env = {**os.environ, "CALSYNC_DATABASE_URL": pg_url, "CALSYNC_REDIS_URL": redis_url}
        for cmd in (["db", "create"], ["db", "upgrade"]):
            subprocess.run([CALSYNC, *cmd], env=env, check=True, capture_output=True)
        with SimulatorProcess(mailboxes=30, appointments=80, seed=5, latency_ms=30) as sim:
            conn = connect(pg_url)
            for key, value in (("exchange_url", sim.ews_url), ("batch_size", 4), ("poll_interval_minutes", 600)):
                settings_store.set_value(conn, key, value)
            operators = insert_operators(conn, [mailbox_email(i) for i in range(1, 31)])
            stack = Stack(
                {
                    "CALSYNC_DATABASE_URL": pg_url,
                    "CALSYNC_REDIS_URL": redis_url,
                    "CALSYNC_EWS_USERNAME": sim.user,
                    "CALSYNC_EWS_PASSWORD": sim.password,
                    "CALSYNC_LEASE_SECONDS": "8",
                    "CALSYNC_VISIBILITY_TIMEOUT": "20",
                    "CALSYNC_DISPATCH_TICK_SECONDS": "2",
                    "CALSYNC_REDBEAT_LOCK_TIMEOUT": "8",
                }
            )
            try:
                stack.worker("w1", concurrency=4, supervised=True)
                stack.worker("w2", concurrency=4, supervised=True)
                stack.beat("beat", supervised=True)
                wait_for(lambda: progress(conn) >= 40, 90, "batches before the Redis restart", interval=0.2)
                restart_redis()
                before_pg = progress(conn)
                wait_for(lambda: progress(conn) >= before_pg + 40, 120, "progress after the Redis restart")
                conn.close()
                restart_pg()
                conn = connect(pg_url)
                after_pg = progress(conn)
                wait_for(lambda: progress(conn) > after_pg, 120, "progress after the Postgres restart")
                wait_for(lambda: synced_count(conn) == 30, 240, "every first sync")
                problems = mirror_problems(conn, sim.client(), operators)
                assert problems == [], problems[:10]
                for name in ("w1", "w2", "beat"):
                    assert stack.procs[name].poll() is None, f"{name}'s supervisor exited:\n{stack.dump_logs()}"
                restarts = {name: stack.log(name).count(" exited (") for name in ("w1", "w2", "beat")}
                print(f"process restarts by the supervisor during the run: {restarts}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{stack.dump_logs()}") from exc
            finally:
                stack.stop_all()
                conn.close()
