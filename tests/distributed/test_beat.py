"""Issue 5: two beat processes, one leader through the redbeat lock, failover after kill -9."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from calsync.simulator import SimulatorProcess
from tests.distributed.stack import Stack, beat_sends, wait_for

TICK = 2.0
LOCK_TIMEOUT = 8


@pytest.mark.slow  # ~30 s here; the soak smoke in `make test` kills the leader of its two beats mid-run
def test_one_leader_dispatches_and_the_standby_takes_over_after_kill_dash_nine(
    db: Any, stack_factory: Callable[..., tuple[Stack, SimulatorProcess]]
) -> None:
    stack, _ = stack_factory(
        mailboxes=1, appointments=1,
        CALSYNC_DISPATCH_TICK_SECONDS=str(TICK), CALSYNC_REDBEAT_LOCK_TIMEOUT=str(LOCK_TIMEOUT),
    )  # fmt: skip
    stack.worker("w1", queues="dispatch", concurrency=2)
    stack.beat("beat-a")
    time.sleep(3)  # let beat-a take the lock first
    stack.beat("beat-b")
    wait_for(lambda: len(beat_sends(stack.log("beat-a")) + beat_sends(stack.log("beat-b"))) >= 5, 60, "ticks")
    a, b = beat_sends(stack.log("beat-a")), beat_sends(stack.log("beat-b"))
    leader, standby = ("beat-a", "beat-b") if len(a) >= len(b) else ("beat-b", "beat-a")
    assert beat_sends(stack.log(standby)) == [], "only the lock holder sends ticks"
    killed_at = time.time()
    stack.kill(leader)
    wait_for(lambda: len(beat_sends(stack.log(standby))) >= 3, LOCK_TIMEOUT + 30, "the standby leading")
    first_takeover = beat_sends(stack.log(standby))[0]
    assert first_takeover - killed_at <= LOCK_TIMEOUT + 2 * TICK + 5, "takeover within the lock timeout"
    # No tick dispatched twice: every send took its own slot in dispatch_ticks.
    sends = sorted(beat_sends(stack.log(leader)) + beat_sends(stack.log(standby)))
    wait_for(
        lambda: db.execute("SELECT count(*) AS n FROM dispatch_ticks").fetchone()["n"] >= len(sends) - 1,
        30, "dispatch tasks executed",
    )  # fmt: skip
    slots = [r["slot"].timestamp() for r in db.execute("SELECT slot FROM dispatch_ticks ORDER BY slot")]
    assert len(slots) == len(set(slots))
    assert all(b - a >= TICK * 0.5 for a, b in itertools.pairwise(sends)), "no tick sent twice"
