"""Issue 14: calsync through Redis Sentinel; the master is killed (-9) in the middle of a run.

Three private redis-servers (a master and two replicas) and three sentinels. Workers, a
supervised beat and calsync's own clients (throttle, publication) all reach Redis through
`sentinel://` URLs and the master group named in CALSYNC_REDIS_SENTINEL_MASTER. First syncs
run while users edit their calendars; the master is killed; the sentinels promote a replica,
and everything finds the new master by itself: syncing goes on, the mirror converges, and
no tick slot is dispatched twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from calsync.simulator import SimulatorProcess, mailbox_email
from tests.conftest import CALSYNC
from tests.distributed.editing import Editors
from tests.distributed.sentinels import MASTER_NAME, sentinel_group
from tests.distributed.stack import Stack, insert_operators, mirror_problems, synced_count, wait_for
from tests.distributed.test_flushdb import all_settled_after, db_now, progress, ticks_dispatched

TICK = 2.0


@pytest.mark.slow  # ~55 s here; the soak smoke in `make test` fails over twice mid-run and checks every mirror
def test_sentinel_failover_mid_run_syncing_goes_on_and_the_mirror_converges(
    db: Any, stack_factory: Callable[..., tuple[Stack, SimulatorProcess]], set_settings: Callable[..., None]
) -> None:
    n = 20
    with sentinel_group() as group:
        stack, sim = stack_factory(
            mailboxes=n, appointments=60, latency_ms=20,
            CALSYNC_REDIS_URL=group.url, CALSYNC_REDIS_SENTINEL_MASTER=MASTER_NAME,
            CALSYNC_DISPATCH_TICK_SECONDS=str(TICK),
            # A message written to the old master in its last milliseconds may not have reached
            # a replica (replication is asynchronous): its lease comes back after this.
            CALSYNC_LEASE_SECONDS="30", CALSYNC_REDBEAT_LOCK_TIMEOUT="10",
        )  # fmt: skip
        set_settings(batch_size=3, poll_interval_minutes=0.05)
        operators = insert_operators(db, [mailbox_email(i) for i in range(1, n + 1)])
        stack.worker("w1", concurrency=3, supervised=True)
        stack.worker("w2", concurrency=3, supervised=True)
        stack.beat("beat", supervised=True)
        client = sim.client()
        try:
            old_master = group.master_port()
            assert old_master == group.redis_ports[0]
            with Editors(client, n) as editors:
                wait_for(lambda: progress(db) >= 40, 120, "first syncs under way through the sentinels", interval=0.1)
                assert group.master().exists("calsync:redbeat::lock"), "beat leads through the sentinels"
                group.kill(old_master)
                t0 = time.monotonic()
                wait_for(lambda: group.master_port() not in (None, old_master), 60, "the sentinels' failover")
                failover = time.monotonic() - t0
                at_failover = progress(db)
                wait_for(lambda: progress(db) >= at_failover + 40, 120, "batches after the failover", interval=0.2)
                resumed = time.monotonic() - t0
                print(f"master killed; new master after {failover:.1f}s; syncing resumed within {resumed:.1f}s")
                time.sleep(3 * TICK)  # users keep editing on the new master
            assert editors.errors == [], editors.errors[:5]
            edited = db_now(db)
            wait_for(lambda: all_settled_after(db, edited, n), 180, "every operator polled after the last edit")
            assert synced_count(db) == n
            problems = mirror_problems(db, client, operators)
            assert problems == [], problems[:10]
            # The lock lives on the new master now, and `calsync status` finds the queues there.
            assert group.master().exists("calsync:redbeat::lock")
            status = subprocess.run(
                [CALSYNC, "status", "--json"], env={**os.environ, **stack.env}, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip
            report = json.loads(status.stdout)
            assert report["broker"] == "ok" and set(report["queues"]) == {"dispatch", "sync", "notify"}, report
            assert len(report["workers"]) == 2, report
            worker_logs = stack.log("w1") + stack.log("w2")
            twice = {slot: k for slot, k in ticks_dispatched(worker_logs).items() if k > 1}
            assert twice == {}, f"tick slots dispatched more than once: {twice}"
            restarts = {name: stack.log(name).count(" exited (") for name in ("w1", "w2", "beat")}
            print(f"{editors.edits} edits; restarts by the supervisor: {restarts}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.dump_logs()}") from exc
        finally:
            stack.stop_all()


@pytest.mark.slow  # ~30 s on a loaded machine; the soak smoke (make test) also runs the listener through Sentinel
def test_push_listener_kicks_through_the_sentinels_and_follows_a_failover() -> None:
    """The listener's Redis clients read sentinel:// URLs too (they once took them for redis:// and
    could not start): a kick lands on the master, and after a failover on the new one."""
    import asyncio

    from calsync.listener.kick import Kicker, kick_key

    with sentinel_group() as group:
        kicker = Kicker(group.url, group.url, MASTER_NAME)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(kicker.kick(1)) is True
            old = group.master_port()
            assert group.master().exists(kick_key(1)) and group.master().llen(kicker.queue) == 1
            group.sentinel(0).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            wait_for(lambda: group.master_port() not in (None, old), 60, "the sentinels' failover", interval=0.2)
            # A write in the moments before the old master is demoted is lost with it (replication is
            # asynchronous; the push sweep finds such a change): kick until one lands on the new master.
            ids = iter(range(2, 10_000))

            def lands() -> bool:
                op = next(ids)
                return loop.run_until_complete(_kicked(kicker, op)) and bool(group.master().exists(kick_key(op)))

            wait_for(lands, 30, "a kick on the new master", 0.2)
            assert group.master_port() != old
        finally:
            loop.run_until_complete(kicker.close())
            loop.close()


async def _kicked(kicker: Any, operator_id: int) -> bool:
    """A kick, or False while the clients still reach the demoted master (it refuses writes)."""
    import redis

    try:
        return bool(await kicker.kick(operator_id))
    except redis.RedisError:
        return False
