"""`make bench` / `make bench-quick`: every scenario, then the table, the JSON, the chart, the README section.

    python -m bench.run [--quick] [--only polling,first_sync,...]

Full results go to bench/results/ (results.json, bench.png, README-section.md); a quick
run writes to bench/results/quick/ so a smoke run never replaces the figures the README
quotes. A scenario that fails is reported as such and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any

from bench import common

common.use_bench_environment()  # before anything reads calsync.config

from bench import report  # noqa: E402
from bench.scenarios import (  # noqa: E402
    backpressure,
    console,
    dispatcher,
    first_sync,
    graph,
    graph_push,
    latency,
    memory,
    polling,
    push,
    simulator,
)

SCENARIOS = {
    "simulator": simulator.run,
    "dispatcher": dispatcher.run,
    "polling": polling.run,
    "first_sync": first_sync.run,
    "latency": latency.run,
    "memory": memory.run,
    "push": push.run,
    "console": console.run,
    "graph": graph.run,
    "graph_push": graph_push.run,
    "backpressure": backpressure.run,
}


def _notes(r: dict[str, Any]) -> list[str]:
    notes = []
    if r.get("quick"):
        notes.append("_Quick run: small sizes and short windows; see `make bench` for the figures to quote._")
    gain = (r.get("polling") or {}).get("proto_gain")
    if gain:
        notes.append(
            f"Measured proposal (bench/proto/celeryconfig.py, `{gain['proto']}`: worker_send_task_events and "
            f"task_send_sent_event off): {gain['polls_per_s'][0]} -> {gain['polls_per_s'][1]} polls/s and "
            f"{gain['cpu_ms_per_poll'][0]} -> {gain['cpu_ms_per_poll'][1]} ms of worker CPU per poll (2 x 12)."
        )
    d = r.get("dispatcher") or {}
    if d.get("ticks"):
        big = d["ticks"][-1]
        notes.append(
            f"Dispatcher at {big['operators']:,} operators due for their first sync: claim {big['claim_s']:.2f} s, "
            f"enqueue {big['enqueue_s']:.2f} s (calsync.tasks.publish: one sync_batch message each), "
            f"{big['enqueue_template_s']:.2f} s with a string-splicing prototype (bench/scenarios/dispatcher.py)."
        )
        if "steady_tick_s" in big:
            notes.append(
                f"The same {big['operators']:,} operators in sync (the steady state): claim "
                f"{big['steady_claim_s']:.2f} s, enqueue {big['steady_enqueue_s']:.2f} s as "
                f"{big['steady_messages']:,} calsync.poll_chunk messages."
            )
    g = r.get("graph") or {}
    if g.get("polling") and g.get("first_sync"):
        gp, gf = g["polling"], g["first_sync"]
        notes.append(
            f"7. Graph beside EWS (same simulator, fleet and settings; 20 ms latency): steady polls "
            f"{gp['graph']['polls_per_s']} polls/s through Graph, {gp['ews']['polls_per_s']} through EWS "
            f"({g['polls_ratio']}x); first sync {gf['graph']['appointments_per_s']} appointments/s through Graph, "
            f"{gf['ews']['appointments_per_s']} through EWS ({g['first_sync_ratio']}x)."
        )
    f = r.get("first_sync") or {}
    if f.get("twenty_1472_events_s"):
        notes.append(
            f"For scale: Twenty CRM reports a first sync of 1,472 events in 15 minutes; at the rate measured here "
            f"calsync mirrors 1,472 appointments in {f['twenty_1472_events_s']:.1f} s."
        )
    return notes


def _write(results: dict[str, Any], out_dir: Any) -> None:
    report.chart(results, out_dir / "bench.png")
    if results.get("backpressure") and "error" not in results["backpressure"]:
        backpressure.chart(results["backpressure"], out_dir / "backpressure.png")
        print(backpressure.table(results["backpressure"]))
    (out_dir / "README-section.md").write_text(report.readme_section(results, _notes(results)))
    print(report.table(results))
    print()
    print(f"total {results['total_s']:.0f}s; results in {out_dir.relative_to(common.REPO)}/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--report-only", action="store_true", help="rewrite table, chart and section from results.json")
    args = parser.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    out_dir = common.RESULTS / "quick" if args.quick else common.RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        _write(json.loads((out_dir / "results.json").read_text()), out_dir)
        return 0

    started = time.monotonic()
    common.prepare_database()
    common.flush_redis()
    results: dict[str, Any] = {
        "quick": args.quick,
        "machine": common.machine(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    for name in chosen:
        t0 = time.monotonic()
        try:
            results[name] = SCENARIOS[name](args.quick)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["scenario_s"] = round(time.monotonic() - t0, 1)
        common.say(f"{name} done in {results[name]['scenario_s']}s")
    common.reset_database()
    common.flush_redis()
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = round(time.monotonic() - started, 1)

    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    _write(results, out_dir)
    failed = [n for n in chosen if "error" in results[n]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
