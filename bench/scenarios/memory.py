"""Scenario 5: peak RSS of a worker through the first sync of one large mailbox.

One `celery worker` process (thread pool) syncs one mailbox; psutil samples the RSS of its
process tree every 100 ms, together with how many items the sync has written, so the curve
shows whether memory follows the batch (flat) or the mailbox (growing). The same for a
mailbox ten times smaller (in quick mode: four times smaller, synced first by the same worker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from bench import common
from bench.fleet import fleet, wait_for
from calsync.simulator import SimulatorProcess, mailbox_email


def _rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


def _sync(conn: Any, worker: int, email: str, k: int) -> dict[str, Any]:
    """Enable the operator of `email` and sample the worker's RSS until its first sync succeeded."""
    idle = _rss(worker)
    t0 = time.monotonic()
    op = conn.execute("UPDATE operators SET calendar_sync = true WHERE email = %s RETURNING id", (email,)).fetchone()
    conn.execute(
        "UPDATE sync_state SET status = 'not_synced', next_poll_at = now() WHERE operator_id = %s", (op["id"],)
    )
    curve: list[tuple[float, int, float]] = []
    peak = idle
    while time.monotonic() - t0 < 400:
        rss = _rss(worker)
        peak = max(peak, rss)
        row = conn.execute(
            "SELECT items_created, last_success_at IS NOT NULL AS done FROM sync_state WHERE operator_id = %s",
            (op["id"],),
        ).fetchone()
        curve.append((round(time.monotonic() - t0, 1), int(row["items_created"]), round(rss / 2**20, 1)))
        if row["done"]:
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f"the {k}-item mailbox did not finish its first sync")
    seconds = time.monotonic() - t0
    rows = conn.execute("SELECT count(*) AS n FROM appointments WHERE operator_id = %s", (op["id"],)).fetchone()["n"]
    step = max(1, len(curve) // 200)  # thin the curve for the JSON and the chart
    return {
        "appointments": k,
        "rows_written": rows,
        "seconds": round(seconds, 1),
        "idle_rss_mib": round(idle / 2**20, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "growth_mib": round((peak - idle) / 2**20, 1),
        "curve": curve[::step],
    }


@contextmanager
def _worker(sim: SimulatorProcess, emails: list[str], tag: str) -> Iterator[tuple[Any, int]]:
    """A fresh database with `emails` as disabled operators, one worker (2 threads) and a beat."""
    common.reset_database()
    common.set_settings(
        exchange_url=sim.ews_url,
        batch_size=512,
        poll_interval_minutes=60,
        past_window_days=3650,
        ews_max_concurrency=27,
    )
    with common.connect() as conn:
        for email in emails:
            conn.execute("INSERT INTO operators (email, calendar_sync) VALUES (%s, false)", (email,))
    with fleet(sim, workers=1, threads=2, tag=tag) as f, common.connect() as conn:
        wait_for(
            lambda: conn.execute("SELECT count(*) AS n FROM dispatch_ticks").fetchone()["n"] > 0,
            60,
            "the first dispatcher tick",
        )
        time.sleep(0.3)
        yield conn, f.workers[0].pid


def _separate(k: int) -> dict[str, Any]:
    with (
        SimulatorProcess(mailboxes=1, appointments=k, seed=21, latency_ms=0, startup_timeout=120) as sim,
        _worker(sim, [mailbox_email(1)], f"mem{k}") as (conn, pid),
    ):
        return _sync(conn, pid, mailbox_email(1), k)


def _shared(small: int, large: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Quick mode: one simulator and one worker; mailbox 1 trimmed to `small` items, then mailbox 2."""
    with SimulatorProcess(mailboxes=2, appointments=large, seed=21, latency_ms=0) as sim:
        client = sim.client()
        for item in client.list_items(mailbox_email(1))[small:]:
            client.delete_item(mailbox_email(1), item["id"])
        with _worker(sim, [mailbox_email(1), mailbox_email(2)], "mem") as (conn, pid):
            return _sync(conn, pid, mailbox_email(1), small), _sync(conn, pid, mailbox_email(2), large)


def run(quick: bool) -> dict[str, Any]:
    small, large = (200, 800) if quick else (5_000, 50_000)
    common.say(f"memory: one mailbox of {small:,} appointments, then one of {large:,}")
    if quick:  # the same worker syncs both, small first: its peak must not move much
        out: dict[str, Any] = dict(zip(("small", "large"), _shared(small, large), strict=True))
        out["same_worker"] = True
    else:
        out = {"small": _separate(small), "large": _separate(large), "same_worker": False}
    for key in ("small", "large"):
        r = out[key]
        common.say(
            f"  {r['appointments']:,}: peak RSS {r['peak_rss_mib']} MiB (idle {r['idle_rss_mib']} MiB) "
            f"in {r['seconds']}s"
        )
    growth_small, growth_large = out["small"]["growth_mib"], out["large"]["growth_mib"]
    out["growth_ratio"] = round(growth_large / growth_small, 2) if growth_small > 0 else None
    out["peak_ratio"] = round(out["large"]["peak_rss_mib"] / out["small"]["peak_rss_mib"], 2)
    return out
