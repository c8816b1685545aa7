"""Turn the raw results into the Markdown table, the PNG chart and the README section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str, str, str]


def _f(v: Any, fmt: str = "{:,.1f}") -> str:
    if v is None:
        return "-"
    return fmt.format(v) if isinstance(v, int | float) else str(v)


def _yes(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    err = "error: {}"
    p = r.get("polling")
    if p and "error" not in p:
        b, base = p["best"], p["baseline_best"]
        out.append(
            (
                "1. Polling capacity (polls/s, 20 ms latency, nothing changing)",
                f"{_f(b['polls_per_s'])} ({b['workers']} proc x {b['threads']} threads)",
                f"{_f(base['polls_per_s'])} (cron script, {base['threads']} threads)",
                _f(p["rate_ratio"], "{:.2f}x"),
                ">= 333 polls/s",
                _yes(b["polls_per_s"] >= 333),
            )
        )
        cb = b["cpu_ms_per_poll"]
        bb = base["cpu_ms_per_poll"]
        out.append(
            (
                "1. CPU per poll (ms: workers + beat; with Postgres backends)",
                f"{_f(cb['calsync'], '{:.2f}')}; {_f((cb['calsync'] or 0) + (cb['postgres'] or 0), '{:.2f}')}",
                f"{_f(bb['baseline'], '{:.2f}')}; {_f((bb['baseline'] or 0) + (bb['postgres'] or 0), '{:.2f}')}",
                _f(p["cpu_ratio"], "{:.2f}x"),
                "<= 1.5x baseline",
                _yes(p["cpu_ratio"] is not None and p["cpu_ratio"] <= 1.5),
            )
        )
    elif p:
        out.append(("1. Polling capacity", err.format(p["error"]), "", "", "", ""))
    f = r.get("first_sync")
    if f and "error" not in f:
        c = f["calsync"]
        out.append(
            (
                f"2. First sync ({f['mailboxes']} x {f['appointments_each']:,} appointments/s into Postgres)",
                f"{_f(c['appointments_per_s'])} ({c['items']:,} items, {c['rows']:,} rows incl. occurrences)",
                f"ceiling {_f(f['ceiling']['appointments_per_s'])} (exchangelib alone, 1 core); "
                f"cron script {_f(f['baseline']['appointments_per_s'])}",
                _f(f["ratio_to_ceiling"], "{:.2f}x"),
                ">= 0.7x ceiling",
                _yes(f["ratio_to_ceiling"] is not None and f["ratio_to_ceiling"] >= 0.7),
            )
        )
    elif f:
        out.append(("2. First sync", err.format(f["error"]), "", "", "", ""))
    lat = r.get("latency")
    if lat and "error" not in lat:
        iv = lat["poll_interval_s"]
        limit = iv + lat["dispatch_tick_s"] + 2.0
        out.append(
            (
                f"3. Change latency p50 / p95 / p99 (s; {lat['seen']}/{lat['changes']} edits seen)",
                f"{_f(lat['p50_s'], '{:.1f}')} / {_f(lat['p95_s'], '{:.1f}')} / {_f(lat['p99_s'], '{:.1f}')}",
                f"poll interval {iv:.0f} s, tick {lat['dispatch_tick_s']:.0f} s",
                f"p50 {_f(lat['p50_of_interval'], '{:.2f}')}, p99 {_f(lat['p99_of_interval'], '{:.2f}')} of interval",
                "p99 <= interval + tick + 2 s",
                _yes(lat["p99_s"] is not None and lat["p99_s"] <= limit and lat["missing"] == 0),
            )
        )
    elif lat:
        out.append(("3. Change latency", err.format(lat["error"]), "", "", "", ""))
    d = r.get("dispatcher")
    if d and "error" not in d:
        ticks = d["ticks"]
        out.append(
            (
                "4. Dispatcher tick (s): " + " / ".join(f"{t['operators']:,}" for t in ticks) + " due",
                " / ".join(f"{t['tick_s']:.2f}" for t in ticks)
                + f" (claim {ticks[-1]['claim_s']:.2f} + enqueue {ticks[-1]['enqueue_s']:.2f}); in sync, as "
                + f"{ticks[-1].get('steady_messages', '?'):,} chunk messages: "
                + " / ".join(f"{t['steady_tick_s']:.2f}" for t in ticks if "steady_tick_s" in t),
                "prototype (message template + pipelined LPUSH): "
                + " / ".join(f"{t['tick_prototype_s']:.2f}" for t in ticks),
                f"{_f(d['linear_ratio'], '{:.2f}')} (per-operator cost, largest/smallest)",
                "100,000 <= 5 s, linear",
                _yes(d["largest"] >= 100_000 and d["largest_tick_s"] <= 5.0 and d["linear_ratio"] <= 1.5)
                if d["largest"] >= 100_000
                else _yes(d["largest_tick_s"] <= 0.5),
            )
        )
    elif d:
        out.append(("4. Dispatcher", err.format(d["error"]), "", "", "", ""))
    m = r.get("memory")
    if m and "error" not in m:
        s, lg = m["small"], m["large"]
        out.append(
            (
                f"5. Worker peak RSS (MiB), one mailbox of {lg['appointments']:,}",
                f"{_f(lg['peak_rss_mib'])} (idle {_f(lg['idle_rss_mib'])}, {lg['seconds']:.0f} s)",
                f"{s['appointments']:,}-item mailbox: {_f(s['peak_rss_mib'])} (idle {_f(s['idle_rss_mib'])})",
                _f(m["peak_ratio"], "{:.2f}x"),
                "flat: <= 1.2x the small mailbox",
                _yes(m["peak_ratio"] <= 1.2),
            )
        )
    elif m:
        out.append(("5. Memory", err.format(m["error"]), "", "", "", ""))
    if p and "error" not in p:
        so = p["scale_out"]
        out.append(
            (
                "6. Scale-out (polls/s; "
                + " / ".join(f"{x['workers']}x{x['threads']}" for x in so)
                + " proc x threads)",
                " / ".join(_f(x["polls_per_s"]) for x in so),
                "CPU cores busy (all processes): " + " / ".join(_f(x["cpu_cores_busy"], "{:.2f}") for x in so),
                _f(so[-1]["polls_per_s"] / so[0]["polls_per_s"] if so[0]["polls_per_s"] else None, "{:.2f}x"),
                "-",
                "-",
            )
        )
    s_ = r.get("simulator")
    if s_ and "error" not in s_:
        out.append(
            (
                "Simulator: empty incremental SyncFolderItems/s (one process)",
                _f(s_["per_second"]),
                s_.get("clients", ""),
                "-",
                ">= 1,500/s",
                _yes(s_["per_second"] >= 1500),
            )
        )
    elif s_:
        out.append(("Simulator", err.format(s_["error"]), "", "", "", ""))
    c_ = r.get("console")
    if c_ and "error" not in c_:
        unfiltered = c_["cases"]["unfiltered (page 1, by email)"]
        filtered = max((c for n, c in c_["cases"].items() if n.startswith("filtered")), key=lambda c: c["p95_ms"])
        out.append(
            (
                f"Console operators page, {c_['operators']:,} operators: first byte p95 (ms), unfiltered / worst filtered",
                f"{_f(unfiltered['p95_ms'])} / {_f(filtered['p95_ms'])}",
                f"/healthz p95 {_f(c_['static']['p95_ms'])}; the page's queries alone {_f(unfiltered['query']['p95_ms'])}"
                f" / {_f(filtered['query']['p95_ms'])}",
                "-",
                "<= 200 ms",
                _yes(c_["met"]),
            )
        )
    elif c_:
        out.append(("Console operators page", err.format(c_["error"]), "", "", "", ""))
    return out


def table(r: dict[str, Any]) -> str:
    head = ("Scenario", "calsync", "baseline / reference (same run)", "ratio", "target", "met")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(r)]
    return "\n".join(lines)


def _profile_lines(title: str, prof: dict[str, Any] | None) -> list[str]:
    if not prof:
        return [f"- {title}: no profile (py-spy not installed)"]
    libs = ", ".join(f"{k} {v}%" for k, v in prof["by_library_pct"][:6])
    steps = ", ".join(f"{k} {v}%" for k, v in prof["by_step_pct"] if v >= 0.5)
    return [
        f"- {title} ({prof['samples']} GIL-holding samples): by library: {libs}.",
        f"  By step (inclusive): {steps}.",
    ]


def readme_section(r: dict[str, Any], notes: list[str]) -> str:
    m = r["machine"]
    lines = [
        "## Benchmarks",
        "",
        f"`make bench{' -quick' if r['quick'] else ''}` on {m['date']}: {m['nproc']} x {m['cpu_model']}, "
        f"{m['memory_gib']} GiB RAM, {m['os']}, Python {m['python']}, PostgreSQL {m['postgres']}, "
        f"Redis {m['redis']}; the whole run took {r['total_s']:.0f} s. Load average before/after: "
        f"{r['load_before']} / {r['load_after']} (the machine is shared: compare the ratios, each measured "
        "against its baseline in the same run, rather than the absolute numbers).",
        "",
        "The baseline is `bench/baseline.py`, a careful cron script: exchangelib's `sync_items` "
        "(IdOnly) then `account.fetch` (GetItem) for changed ids, a thread pool over the mailboxes, "
        "COPY + `INSERT ... ON CONFLICT` upserts and a sync-state table. The simulator runs with 20 ms "
        "latency per EWS request on the same two cores.",
        "",
        table(r),
        "",
        "![benchmarks](bench/results/bench.png)",
        "",
        "What dominates (py-spy on a worker, only samples holding the GIL):",
        "",
    ]
    p = r.get("polling") or {}
    f = r.get("first_sync") or {}
    lines += _profile_lines("Incremental polls (scenario 1)", p.get("profile"))
    lines += _profile_lines("First sync (scenario 2)", (f.get("calsync") or {}).get("profile"))
    if notes:
        lines += ["", *notes]
    lines += [
        "",
        "Raw figures: `bench/results/results.json`; rerun with `make bench` (`make bench-quick` for a smoke run).",
    ]
    return "\n".join(lines) + "\n"


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(f"calsync benchmarks ({r['machine']['nproc']} cores, {r['machine']['date']})", fontsize=13)
    p = r.get("polling")
    ax = axes[0][0]
    if p and "error" not in p:
        labels = [f"calsync\n{x['workers']}x{x['threads']}" for x in p["calsync_runs"]]
        labels += [f"cron\n{x['threads']}t" for x in p["baseline_runs"]]
        vals = [x["polls_per_s"] for x in p["calsync_runs"] + p["baseline_runs"]]
        colors = ["tab:blue"] * len(p["calsync_runs"]) + ["tab:gray"] * len(p["baseline_runs"])
        ax.bar(labels, vals, color=colors)
        ax.axhline(333, color="tab:red", ls="--", label="target 333/s")
        ax.set_title("1/6. Incremental polls per second")
        ax.legend()
        ax.tick_params(axis="x", labelsize=8)
        ax = axes[0][1]
        groups = ["calsync", "baseline", "postgres", "redis", "simulator"]
        best, base = p["best"]["cpu_ms_per_poll"], p["baseline_best"]["cpu_ms_per_poll"]
        bottom = [0.0, 0.0]
        for g in groups:
            vals2 = [best.get(g) or 0.0, base.get(g) or 0.0]
            ax.bar(["calsync (best)", "cron script (best)"], vals2, bottom=bottom, label=g)
            bottom = [bottom[0] + vals2[0], bottom[1] + vals2[1]]
        ax.set_title("1. CPU ms per poll, by process group")
        ax.legend(fontsize=8)
    f = r.get("first_sync")
    ax = axes[0][2]
    if f and "error" not in f:
        names = ["calsync\n(end to end)", "cron script\n(end to end)", "exchangelib alone\n(parse only, 1 core)"]
        vals = [
            f["calsync"]["appointments_per_s"],
            f["baseline"]["appointments_per_s"],
            f["ceiling"]["appointments_per_s"],
        ]
        ax.bar(names, vals, color=["tab:blue", "tab:gray", "tab:green"])
        ax.axhline(0.7 * f["ceiling"]["appointments_per_s"], color="tab:red", ls="--", label="0.7 x ceiling")
        ax.set_title("2. First sync, appointments per second")
        ax.legend()
    lat = r.get("latency")
    ax = axes[1][0]
    if lat and "error" not in lat and lat.get("latencies_s"):
        xs = lat["latencies_s"]
        ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], drawstyle="steps-post")
        ax.axvline(lat["poll_interval_s"], color="tab:red", ls="--", label="poll interval")
        ax.set_xlabel("seconds from edit to row in Postgres")
        ax.set_title("3. Change latency (CDF)")
        ax.legend()
    d = r.get("dispatcher")
    ax = axes[1][1]
    if d and "error" not in d:
        ns = [t["operators"] for t in d["ticks"]]
        for key, label in (
            ("claim_s", "claim (SQL)"),
            ("enqueue_s", "enqueue (apply_async)"),
            ("enqueue_no_events_s", "enqueue, no sent events"),
            ("enqueue_template_s", "enqueue prototype (template + pipeline)"),
        ):
            ax.plot(ns, [t[key] for t in d["ticks"]], marker="o", label=label)
        ax.axhline(5.0, color="tab:red", ls="--", label="5 s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("operators due")
        ax.set_ylabel("seconds")
        ax.set_title("4. One dispatcher tick")
        ax.legend(fontsize=8)
    m = r.get("memory")
    ax = axes[1][2]
    if m and "error" not in m:
        for key in ("small", "large"):
            c = m[key]["curve"]
            ax.plot([x[0] for x in c], [x[2] for x in c], label=f"{m[key]['appointments']:,} appointments")
        ax.set_xlabel("seconds into the first sync")
        ax.set_ylabel("worker RSS (MiB)")
        ax.set_ylim(bottom=0)
        ax.set_title("5. Worker memory through a first sync")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
