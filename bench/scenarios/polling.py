"""Scenarios 1 and 6: incremental polls per second and CPU per poll, calsync vs the cron baseline.

N operators already in sync, nothing changing, simulator latency 20 ms. calsync runs as
deployed (a redbeat beat ticking every second, the dispatcher on a worker, real worker
processes with thread pools); its poll interval is made tiny so every operator is due again
as soon as its poll finished, which keeps the fleet saturated. A poll is one completed poll
(sync_state.polls_total); CPU is psutil's over the window, per group of processes.

Scale-out (scenario 6) keeps the total concurrency fixed (threads x processes) and varies
the processes, so what changes is how many GILs and cores the work can use.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from bench import common, profile
from bench.fleet import Fleet, fleet, wait_for
from calsync.simulator import SimulatorProcess, mailbox_email

LATENCY_MS = 20
EWS_CAP = 27  # Exchange 2013+ EWSMaxConcurrency; calsync's fleet-wide cap and the baseline's thread count cap


def _now(conn: Any) -> Any:
    return conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]


def _polls_done(conn: Any) -> int:
    """Completed polls so far (sync_state.polls_total: quiet polls and runs that reached in-sync)."""
    row = conn.execute("SELECT COALESCE(sum(polls_total), 0) AS n FROM sync_state").fetchone()
    return int(row["n"])


def measure_fleet(f: Fleet, sim: SimulatorProcess, seconds: float) -> dict[str, Any]:
    assert sim.pid is not None
    with common.connect() as conn:
        t0, p0 = _now(conn), _polls_done(conn)
        with common.cpu_window(
            {
                "calsync": f.pids,
                "simulator": [sim.pid],
                "postgres": common.postgres_backends,
                "redis": common.redis_pids(),
            }
        ) as cpu:
            time.sleep(seconds)
        t1, p1 = _now(conn), _polls_done(conn)
        polls = p1 - p0
    wall = (t1 - t0).total_seconds()
    return _rates(polls, wall, cpu)


def _rates(polls: int, wall: float, cpu: dict[str, float]) -> dict[str, Any]:
    per = lambda k: round(1000.0 * cpu[k] / polls, 3) if polls else None  # noqa: E731
    return {
        "polls": polls,
        "seconds": round(wall, 2),
        "polls_per_s": round(polls / wall, 1) if wall else 0.0,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items() if k != "wall"},
        "cpu_ms_per_poll": {k: per(k) for k in cpu if k != "wall"},
        "cpu_cores_busy": round(sum(v for k, v in cpu.items() if k != "wall") / wall, 2) if wall else None,
    }


def prepare(sim: SimulatorProcess, n: int) -> None:
    common.reset_database()
    common.flush_redis()
    common.set_settings(
        exchange_url=sim.ews_url,
        batch_size=512,
        poll_interval_minutes=0.001,
        ews_max_concurrency=EWS_CAP,
        past_window_days=3650,
    )
    common.add_operators([mailbox_email(i) for i in range(1, n + 1)])


def bootstrap(sim: SimulatorProcess, n: int) -> float:
    """Bring every operator through its first sync before anything is measured, then let
    Postgres tidy up after it (the first measured fleet would otherwise pay for it)."""
    t0 = time.monotonic()
    with fleet(sim, workers=2, threads=12, tag="boot") as _, common.connect() as conn:
        wait_for(lambda: _synced(conn) >= n, timeout=180, what=f"{n} first syncs")
    with common.connect() as conn:
        conn.execute("VACUUM ANALYZE sync_state")
        conn.execute("VACUUM ANALYZE sync_runs")
    return time.monotonic() - t0


def _synced(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL").fetchone()["n"])


def run_calsync(
    sim: SimulatorProcess,
    workers: int,
    threads: int,
    seconds: float,
    warmup: float,
    profile_name: str | None = None,
    proto: str | None = None,
) -> dict[str, Any]:
    tag = f"p{workers}x{threads}" + (f"-{proto}" if proto else "")
    bootstrap_s: float | None = None
    with fleet(sim, workers=workers, threads=threads, tag=tag, proto=proto) as f, common.connect() as conn:
        n = int(conn.execute("SELECT count(*) AS n FROM operators").fetchone()["n"])
        if _synced(conn) < n:  # the first fleet brings every operator through its first sync
            bootstrap_s = wait_for(lambda: _synced(conn) >= n, timeout=120, what=f"{n} first syncs")
        start = _polls_done(conn)
        wait_for(lambda: _polls_done(conn) > start, timeout=30, what="the first incremental poll")
        time.sleep(warmup)
        result = measure_fleet(f, sim, seconds)
        if profile_name and profile.available():
            prof = profile.record(f.workers[0].pid, seconds, profile_name)
            time.sleep(seconds)
            result["profile"] = profile.summary(prof, profile_name)
        if not f.alive():
            result["error"] = "a worker or beat exited during the run"
    result.update(workers=workers, threads=threads, proto=proto)
    if bootstrap_s is not None:
        result["bootstrap_s"] = round(bootstrap_s, 1)
    common.say(
        f"  calsync {workers} proc x {threads} threads{' + ' + proto if proto else ''}: "
        f"{result['polls_per_s']} polls/s, "
        f"{result['cpu_ms_per_poll']['calsync']} ms CPU/poll (calsync)"
    )
    return result


def run_baseline(sim: SimulatorProcess, n: int, threads: int, seconds: float) -> dict[str, Any]:
    assert sim.pid is not None
    args = [
        common.PYTHON,
        "-m",
        "bench.baseline",
        "--ews-url",
        sim.ews_url,
        "--user",
        sim.user,
        "--password",
        sim.password,
        "--db-url",
        common.DB_URL,
        "--mailboxes",
        str(n),
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(
        [*args[:3], "poll", *args[3:], "--seconds", str(seconds), "--wait-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=common.REPO,
    )
    assert proc.stdin is not None and proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"baseline did not start: {proc.communicate()[1][-2000:]}")
    groups = {
        "simulator": [sim.pid],
        "postgres": common.postgres_backends,
        "redis": common.redis_pids(),
    }
    with common.cpu_window(groups) as cpu:
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"baseline poll failed: {err[-2000:]}")
    data = json.loads(out.strip().splitlines()[-1])
    cpu["baseline"] = data["cpu_s"]  # its own process_time over its polling loop: it has exited by now
    result = _rates(data["polls"], data["seconds"], cpu)
    result.update(threads=threads, errors=data["errors"])
    common.say(
        f"  baseline {threads} threads: {result['polls_per_s']} polls/s, "
        f"{result['cpu_ms_per_poll']['baseline']} ms CPU/poll"
    )
    return result


def run(quick: bool) -> dict[str, Any]:
    n = 600 if quick else 1500
    seconds = 1.5 if quick else 6.0
    warmup = 0.5 if quick else 1.5
    # (processes, threads per process); total concurrency stays under the EWS cap.
    scale = [(2, 12)] if quick else [(1, 24), (2, 12), (4, 6)]
    extra: list[tuple[int, int]] = []  # (2, 24) measured 116 polls/s, as 4 x 6: more threads do not help
    protos = [] if quick else [(2, 12, "no-events")]
    baseline_threads = [16] if quick else [8, 16]
    out: dict[str, Any] = {"operators": n, "latency_ms": LATENCY_MS, "ews_cap": EWS_CAP, "window_s": seconds}
    with SimulatorProcess(mailboxes=n, appointments=1, seed=7, latency_ms=LATENCY_MS) as sim:
        common.say(f"polling: {n} operators (the first fleet brings them through their first sync)")
        prepare(sim, n)
        out["bootstrap_s"] = round(bootstrap(sim, n), 1)
        runs = []
        for workers, threads in scale + extra:
            prof = "poll" if (workers, threads) == (2, 12) and not quick else None
            runs.append(run_calsync(sim, workers, threads, seconds, warmup, profile_name=prof))
        out["calsync_runs"] = runs
        out["proto_runs"] = [run_calsync(sim, w, t, seconds, warmup, proto=p) for w, t, p in protos]
        out["baseline_runs"] = [run_baseline(sim, n, t, seconds) for t in baseline_threads]
    best = max(runs, key=lambda r: r["polls_per_s"])
    base = max(out["baseline_runs"], key=lambda r: r["polls_per_s"])
    out["scale_out"] = [r for r in runs if (r["workers"], r["threads"]) in scale]
    out["best"] = best
    out["baseline_best"] = base
    c, b = best["cpu_ms_per_poll"]["calsync"], base["cpu_ms_per_poll"]["baseline"]
    out["cpu_ratio"] = round(c / b, 2) if c and b else None
    out["rate_ratio"] = round(best["polls_per_s"] / base["polls_per_s"], 2) if base["polls_per_s"] else None
    out["profile"] = next((r.get("profile") for r in runs if r.get("profile")), None)
    if out["proto_runs"]:
        same = next((r for r in runs if (r["workers"], r["threads"]) == (2, 12)), None)
        p = out["proto_runs"][0]
        if same and same["polls_per_s"]:
            out["proto_gain"] = {
                "proto": p["proto"],
                "polls_per_s": [same["polls_per_s"], p["polls_per_s"]],
                "cpu_ms_per_poll": [same["cpu_ms_per_poll"]["calsync"], p["cpu_ms_per_poll"]["calsync"]],
            }
    return out
