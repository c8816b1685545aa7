"""The soak's 3-minute smoke (`make soak` runs it for 30): real processes, random faults, users editing.

Everything is the soak's own (private Redis and Postgres on free ports, an SMTP sink, the
simulator, supervised workers, beats and push listener; Redis behind three sentinels), so it
needs neither the test database nor Redis db of the suite. The fault order is fixed so that
three minutes meet every kind once: a mailbox down past the notification timeout (in the
background: one failure email, one recovery), a Sentinel failover, kill -9 of the listener,
of a worker and of the beat leader, Redis and Postgres restarts, and Exchange answering 503,
ErrorServerBusy, truncated and slowly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.run import soak, summary
from soak.world import Size

ORDER = [
    "mailbox_outage", "sentinel_failover", "kill_listener", "kill_worker", "exchange_503", "redis_restart",
    "exchange_backoff", "postgres_restart", "kill_beat_leader", "exchange_truncated", "exchange_slow",
]  # fmt: skip


@pytest.mark.soak
@pytest.mark.timeout(720)
def test_three_minute_soak_keeps_every_promise(tmp_path: Path) -> None:
    size = Size(operators=12, appointments=20, threads=3, edit_interval=1.0, fault_hold=(6.0, 10.0),
                fault_gap=(3.0, 6.0), warm_fraction=0.5, push_safety_poll_minutes=0.5)  # fmt: skip
    report = soak(3.0, tmp_path, size, seed=3, order=ORDER)
    print(summary(report))
    logs = (tmp_path / "logs.txt").read_text() if (tmp_path / "logs.txt").exists() else ""
    assert report["mirror"]["ok"], (report["mirror"], report.get("convergence_error"), logs[-5000:])
    assert report["emails"]["ok"], report["emails"]
    assert report["secrets"]["ok"], report["secrets"]
    assert report["memory"]["ok"], report["memory"]
    assert all(report["supervisors_alive"].values()), report["supervisors_alive"]
    # The smoke must actually have met its faults and its users.
    injected = set(report["faults_by_kind"])
    assert {
        "kill_worker", "redis_restart", "postgres_restart", "kill_beat_leader", "exchange_503", "sentinel_failover",
        "kill_listener",
    } <= injected, injected  # fmt: skip
    assert not any(e["detail"].startswith("injection failed") for e in report["faults"]), report["faults"]
    assert report["emails"]["episodes_notified"] >= 1, report["emails"]
    assert sum(report["edits"]["made"].values()) >= 100, report["edits"]
    assert report["edits"]["seen_in_postgres"] >= 1, report["edits"]
    assert (tmp_path / "soak.png").stat().st_size > 0
