"""Backpressure: an overloaded fleet, with the dispatcher's backpressure off (before) and on (after).

One worker with few threads, many operators on a short poll interval and a short lease: the
fleet cannot drain what the dispatcher claims. Without backpressure, messages wait in the
sync queue longer than the lease, the dispatcher claims those operators again, and the queue
carries both copies. With it (calsync.backpressure), the dispatcher claims only what the
fleet drains within half a lease. Sampled every half second: the sync queue's depth (LLEN),
re-claims (calsync.tasks.dispatch's totals in Redis) and useful work (polls and batches
settled, from sync_state).

    python -m bench.scenarios.backpressure [--quick]

writes bench/results/backpressure.json and backpressure.png (quick: bench/results/quick/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.fleet import fleet
from calsync.simulator import SimulatorProcess, mailbox_email

LATENCY_MS = 40


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"operators": 150, "threads": 2, "window_s": 45.0, "lease_s": 8, "interval_min": 0.05}
    return {"operators": 600, "threads": 3, "window_s": 120.0, "lease_s": 10, "interval_min": 0.05}


def _work(conn: Any) -> int:
    row = conn.execute(
        "SELECT COALESCE(sum(polls_total), 0) + COALESCE(sum(batches_total), 0) AS n FROM sync_state"
    ).fetchone()
    return int(row["n"])


def _phase(sim: SimulatorProcess, size: dict[str, Any], backpressure: bool) -> dict[str, Any]:
    import redis

    from calsync.celery import app
    from calsync.tasks.dispatch import TOTALS_KEY
    from calsync.tasks.publish import queue_for

    label = "after (backpressure on)" if backpressure else "before (backpressure off)"
    n = size["operators"]
    common.say(f"backpressure {label}: {n} operators, 1 worker x {size['threads']} threads, lease {size['lease_s']}s")
    common.reset_database()
    common.set_settings(
        exchange_url=sim.ews_url,
        batch_size=512,
        poll_interval_minutes=size["interval_min"],
        past_window_days=3650,
        ews_max_concurrency=27,
    )
    common.add_operators([mailbox_email(i) for i in range(1, n + 1)])
    queue = queue_for(app, "calsync.sync_batch")
    r = redis.Redis.from_url(common.REDIS_URL)
    extra = {"CALSYNC_LEASE_SECONDS": str(size["lease_s"]), "CALSYNC_BACKPRESSURE": "1" if backpressure else "0",
             "CALSYNC_VISIBILITY_TIMEOUT": "3600"}  # fmt: skip
    series: list[dict[str, float]] = []
    with fleet(sim, workers=1, threads=size["threads"], tag="bp", extra_env=extra), common.connect() as conn:
        start = time.monotonic()
        base = _work(conn)
        while (t := time.monotonic() - start) < size["window_s"]:
            totals = {k.decode(): int(v) for k, v in r.hgetall(TOTALS_KEY).items()}
            series.append(
                {
                    "t": round(t, 2),
                    "depth": int(r.llen(queue)),
                    "claimed": totals.get("claimed", 0),
                    "reclaimed": totals.get("reclaimed", 0),
                    "work": _work(conn) - base,
                }
            )
            time.sleep(0.5)
        synced = conn.execute("SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL").fetchone()["n"]
    last = series[-1]
    depths = [s["depth"] for s in series]
    return {
        "label": label,
        "backpressure": backpressure,
        "series": series,
        "max_depth": max(depths),
        "mean_depth": round(sum(depths) / len(depths), 1),
        "final_depth": last["depth"],
        "claimed": last["claimed"],
        "reclaimed": last["reclaimed"],
        "reclaimed_share": round(last["reclaimed"] / last["claimed"], 3) if last["claimed"] else None,
        "work_done": last["work"],
        "work_per_s": round(last["work"] / size["window_s"], 1),
        "first_syncs_done": int(synced),
    }


def run(quick: bool) -> dict[str, Any]:
    size = _sizes(quick)
    out: dict[str, Any] = {**size, "latency_ms": LATENCY_MS, "dispatch_tick_s": 1.0}
    with SimulatorProcess(mailboxes=size["operators"], appointments=3, seed=9, latency_ms=LATENCY_MS) as sim:
        out["before"] = _phase(sim, size, backpressure=False)
        out["after"] = _phase(sim, size, backpressure=True)
    b, a = out["before"], out["after"]
    common.say(
        f"  before: max depth {b['max_depth']}, re-claims {b['reclaimed']}/{b['claimed']}, work {b['work_done']}; "
        f"after: max depth {a['max_depth']}, re-claims {a['reclaimed']}/{a['claimed']}, work {a['work_done']}"
    )
    return out


def table(r: dict[str, Any]) -> str:
    head = ("", "max queue depth", "mean depth", "claims", "re-claims (lease outlived)", "polls+batches done",
            "per s", "first syncs done")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key in ("before", "after"):
        p = r[key]
        share = f" ({p['reclaimed_share']:.0%})" if p["reclaimed_share"] is not None else ""
        lines.append(
            f"| {p['label']} | {p['max_depth']:,} | {p['mean_depth']:,} | {p['claimed']:,} | "
            f"{p['reclaimed']:,}{share} | {p['work_done']:,} | {p['work_per_s']} | "
            f"{p['first_syncs_done']}/{r['operators']} |"
        )
    return "\n".join(lines)


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, colour in (("before", "tab:red"), ("after", "tab:green")):
        s = r[key]["series"]
        t = [x["t"] for x in s]
        axes[0].plot(t, [x["depth"] for x in s], color=colour, label=r[key]["label"])
        axes[1].plot(t, [x["reclaimed"] for x in s], color=colour, label=r[key]["label"])
        axes[2].plot(t, [x["work"] for x in s], color=colour, label=r[key]["label"])
    for ax, title in zip(
        axes, ("sync queue depth (messages)", "re-claims (cumulative)", "polls + batches settled"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Backpressure: {r['operators']} operators, 1 worker x {r['threads']} threads, "
        f"lease {r['lease_s']} s, poll every {r['interval_min'] * 60:.0f} s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about two minutes")
    args = parser.parse_args(argv)
    common.use_bench_environment()  # before anything reads calsync.config
    out_dir = common.RESULTS / "quick" if args.quick else common.RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    common.prepare_database()
    common.flush_redis()
    result = run(args.quick)
    common.reset_database()
    common.flush_redis()
    result["machine"] = common.machine()
    (out_dir / "backpressure.json").write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out_dir / "backpressure.png")
    print(table(result))
    print(f"results in {(out_dir / 'backpressure.json').relative_to(common.REPO)} and backpressure.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
