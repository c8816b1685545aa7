"""The soak's timeline as one PNG: faults, sync queue depth, change latency, operators failing, worker memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {
    "exchange_503": "tab:red", "exchange_backoff": "tab:orange", "exchange_truncated": "tab:brown",
    "exchange_slow": "tab:olive", "mailbox_outage": "tab:pink", "kill_worker": "black",
    "kill_beat_leader": "tab:purple", "redis_restart": "tab:blue", "postgres_restart": "tab:cyan",
    "sentinel_failover": "tab:green", "kill_listener": "tab:gray",
}  # fmt: skip


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(13, 12.5), sharex=True, gridspec_kw={"height_ratios": [1.4, 2, 2, 2, 2]})
    ax = axes[0]
    kinds = sorted({e["fault"] for e in report["faults"]})
    for e in report["faults"]:
        y = kinds.index(e["fault"])
        width = max((e["end"] - e["start"]) / 60, 0.08)
        ax.barh(y, width, left=e["start"] / 60, color=COLOURS.get(e["fault"], "grey"), height=0.7)
    ax.set_yticks(range(len(kinds)), kinds, fontsize=7)
    ax.set_title("faults injected")
    axes[1].plot(t, [s["depth"] if s["depth"] is not None else float("nan") for s in samples], color="tab:blue")
    axes[1].set_ylabel("messages")
    axes[1].set_title("sync queue depth (gaps: Redis down)")
    lt = [s["t"] / 60 for s in samples for _ in s["latencies"]]
    lv = [v for s in samples for v in s["latencies"]]
    axes[2].scatter(lt, lv, s=6, color="tab:green")
    axes[2].set_ylabel("seconds")
    axes[2].set_title("change latency: edit in Exchange -> row in Postgres")
    for key, colour in (("failing", "tab:red"), ("retrying", "tab:orange"), ("failed", "black")):
        axes[3].plot(t, [s[key] if s[key] is not None else float("nan") for s in samples], color=colour, label=key)
    axes[3].set_ylabel("operators")
    axes[3].set_title("operators with errors (gaps: Postgres down)")
    axes[3].legend(fontsize=8)
    _memory(axes[4], report)
    axes[4].set_xlabel("minutes")
    for a in axes[1:]:
        a.grid(alpha=0.3)
        for e in report["faults"]:
            a.axvspan(e["start"] / 60, max(e["end"], e["start"] + 3) / 60, color=COLOURS.get(e["fault"], "grey"),
                      alpha=0.12)  # fmt: skip
    verdict = "all checks passed" if report["ok"] else "CHECKS FAILED"
    fig.suptitle(f"calsync soak: {report['minutes']:g} min, {report['size']['operators']} operators: {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _memory(ax: Any, report: dict[str, Any]) -> None:
    """RSS of every worker process (a line per pid: a restart starts a new one); the measured
    span (warm-up to end) shaded."""
    lines: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for s in report["samples"]:
        for name, (pid, rss) in s["rss"].items():
            lines.setdefault((name, pid), []).append((s["t"] / 60, rss))
    colours = {"w1": "tab:blue", "w2": "tab:orange"}
    for (name, _pid), points in sorted(lines.items(), key=lambda kv: kv[1][0][0]):
        ax.plot(*zip(*points, strict=True), color=colours.get(name, "grey"), lw=1)
    for name, colour in colours.items():
        ax.plot([], [], color=colour, label=name)
    mem = report.get("memory", {})
    if "warm_from_s" in mem:
        ax.axvspan(mem["warm_from_s"] / 60, report["samples"][-1]["t"] / 60, color="tab:blue", alpha=0.06)
    values = sorted(rss for points in lines.values() for _, rss in points)
    if values:  # a process starting up (a few MiB for a second) would flatten the rest
        median = values[len(values) // 2]
        ax.set_ylim(min(v for v in values if v > 0.6 * median) * 0.95, values[-1] * 1.03)
    ax.set_ylabel("MiB")
    ax.set_title(f"worker RSS (measured: {mem.get('worker', 'w1')}, shaded from warm-up)")
    ax.legend(fontsize=8)
