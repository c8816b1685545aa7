"""Scenario 7: Microsoft Graph beside EWS, same simulator, same run.

First sync (appointments per second into Postgres, from "operators enabled" to "every first
sync succeeded") and steady-state polls per second (operators in sync, nothing changing,
20 ms latency per request), each measured through EWS and through Graph with the same
fleet (beat + 2 worker processes), the same mailboxes and the same settings. Appointments
are Exchange items (singles and series masters) mirrored; occurrence rows are counted apart.
Both sources use the default window (past_window_days 180, future_horizon_days 365).
"""

from __future__ import annotations

import time
from typing import Any

from bench import common
from bench.fleet import fleet, wait_for
from bench.scenarios.polling import measure_fleet
from calsync.simulator import SimulatorProcess, mailbox_email
from calsync.simulator.graph import DEFAULT_CLIENT_ID, DEFAULT_TENANT

LATENCY_MS = 20


def _settings(sim: SimulatorProcess, source: str, **extra: Any) -> None:
    common.set_settings(
        exchange_url=sim.ews_url,
        source=source,
        graph_tenant_id=DEFAULT_TENANT,
        graph_client_id=DEFAULT_CLIENT_ID,
        graph_authority_url=sim.base_url,
        graph_base_url=sim.base_url + "/v1.0",
        ews_max_concurrency=27,
        graph_max_concurrency=27,
        **extra,
    )


def _synced(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL").fetchone()["n"])


def first_sync(sim: SimulatorProcess, source: str, m: int, threads: int) -> dict[str, Any]:
    common.reset_database()
    _settings(sim, source, batch_size=512, poll_interval_minutes=60)
    with (
        common.connect() as conn,
        conn.cursor() as cur,
        cur.copy("COPY operators (email, display_name, calendar_sync) FROM STDIN") as copy,
    ):
        for i in range(1, m + 1):
            copy.write_row((mailbox_email(i), f"User {i}", False))
    with fleet(sim, workers=2, threads=threads, tag=f"g-first-{source}") as f, common.connect() as conn:
        wait_for(lambda: conn.execute("SELECT count(*) AS n FROM dispatch_ticks").fetchone()["n"] > 0, 60, "a tick")
        with common.cpu_window(
            {"calsync": f.pids, "simulator": [sim.pid], "postgres": common.postgres_backends}
        ) as cpu:
            t0 = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
            conn.execute("UPDATE operators SET calendar_sync = true")
            conn.execute("UPDATE sync_state SET status = 'not_synced', next_poll_at = now()")
            wait_for(lambda: _synced(conn) >= m, timeout=400, what=f"{m} first syncs", interval=0.1)
        t1 = conn.execute("SELECT max(last_success_at) AS t FROM sync_state").fetchone()["t"]
        counts = conn.execute(
            "SELECT count(*) FILTER (WHERE kind IN ('single', 'series')) AS items, count(*) AS rows FROM appointments"
        ).fetchone()
        failed = conn.execute("SELECT count(*) AS n FROM sync_state WHERE status <> 'active'").fetchone()["n"]
    seconds = (t1 - t0).total_seconds()
    out = {
        "source": source,
        "items": counts["items"],
        "rows": counts["rows"],
        "seconds": round(seconds, 2),
        "appointments_per_s": round(counts["items"] / seconds, 1) if seconds else 0.0,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items() if k != "wall"},
        "not_active": failed,
    }
    common.say(f"  first sync via {source}: {out['appointments_per_s']} appointments/s ({out['items']} items)")
    return out


def polling(sim: SimulatorProcess, source: str, n: int, seconds: float, warmup: float) -> dict[str, Any]:
    common.reset_database()
    _settings(sim, source, batch_size=512, poll_interval_minutes=0.001)
    common.add_operators([mailbox_email(i) for i in range(1, n + 1)])
    with fleet(sim, workers=2, threads=12, tag=f"g-poll-{source}") as f, common.connect() as conn:
        wait_for(lambda: _synced(conn) >= n, timeout=180, what=f"{n} first syncs")
        time.sleep(warmup)
        result = measure_fleet(f, sim, seconds)
        result["alive"] = f.alive()
    result["source"] = source
    common.say(
        f"  polls via {source}: {result['polls_per_s']} polls/s, {result['cpu_ms_per_poll']['calsync']} ms CPU/poll"
    )
    return result


def run(quick: bool) -> dict[str, Any]:
    m, k = (2, 200) if quick else (8, 1500)
    n = 300 if quick else 1500
    seconds, warmup = (3.0, 1.0) if quick else (6.0, 1.5)
    out: dict[str, Any] = {"latency_ms": LATENCY_MS, "first_sync": {}, "polling": {}}
    with SimulatorProcess(mailboxes=max(m, n), appointments=1, seed=7, latency_ms=LATENCY_MS) as sim:
        common.say(f"graph: steady polls, {n} operators, EWS then Graph")
        for source in ("ews", "graph"):
            out["polling"][source] = polling(sim, source, n, seconds, warmup)
    with SimulatorProcess(mailboxes=m, appointments=k, seed=11, latency_ms=LATENCY_MS) as sim:
        common.say(f"graph: first sync, {m} mailboxes x {k} appointments, EWS then Graph")
        for source in ("ews", "graph"):
            out["first_sync"][source] = first_sync(sim, source, m, max(4, m // 2))
    e, g = out["polling"]["ews"]["polls_per_s"], out["polling"]["graph"]["polls_per_s"]
    out["polls_ratio"] = round(g / e, 2) if e else None
    fe, fg = out["first_sync"]["ews"]["appointments_per_s"], out["first_sync"]["graph"]["appointments_per_s"]
    out["first_sync_ratio"] = round(fg / fe, 2) if fe else None
    return out


if __name__ == "__main__":
    import argparse
    import json

    common.use_bench_environment()
    parser = argparse.ArgumentParser(description="Graph beside EWS (scenario 7)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    common.prepare_database()
    result = run(args.quick)
    path = common.RESULTS / ("quick" if args.quick else "") / "graph.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k.endswith("ratio")}, indent=2))
