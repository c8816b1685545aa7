"""What grew in a traced worker (`python -m soak --trace-memory`): tracemalloc snapshots diffed.

    python -m soak.memtrace DIR [--from SECONDS] [--top 25] [--frames 6]

Prints, for the longest-lived traced process, the traced total at every snapshot (does it
grow like the RSS, or is the RSS growth outside Python's allocator? does it fall back when a
full garbage collection runs?) and the allocating lines that grew most between the first
snapshot at or after --from and the last, each with its largest call path and the number of
intervals in which it grew (a leak grows in every one; a warm-up stops). With
SOAK_TRACEMALLOC_HOLDERS=TypeName,... the worker also writes, per snapshot, how many objects
of those types are alive, what holds the first one, and how many a full collection frees.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

NOISE = (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "*/soak/tracemem/*"))


def snapshots(directory: Path) -> dict[int, list[tuple[int, Path]]]:
    by_pid: dict[int, list[tuple[int, Path]]] = defaultdict(list)
    for path in directory.glob("*.snap"):
        pid, seconds = path.stem.split("-")
        by_pid[int(pid)].append((int(seconds), path))
    return {pid: sorted(v) for pid, v in by_pid.items()}


def report(directory: Path, start: float, top: int, frames: int) -> str:
    runs = snapshots(directory)
    if not runs:
        return f"no snapshots in {directory}"
    pid, series = max(runs.items(), key=lambda kv: kv[1][-1][0] - kv[1][0][0])
    lines = [f"process {pid}: {len(series)} snapshots, {series[0][0]}..{series[-1][0]} s after start"]
    loaded = [(t, tracemalloc.Snapshot.load(str(p)).filter_traces(NOISE)) for t, p in series]
    totals = []
    for t, snap in loaded:
        stats = snap.statistics("filename")
        imports = sum(s.size for s in stats if s.traceback[0].filename.startswith("<frozen importlib"))
        totals.append(f"{t}: {sum(s.size for s in stats) / 2**20:.1f} ({imports / 2**20:.1f} by imports)")
    lines.append("traced MiB by seconds after start: " + ", ".join(totals))
    base = next(((t, s) for t, s in loaded if t >= start), loaded[0])
    later = [(t, s) for t, s in loaded if t >= base[0]]
    last_t, last = later[-1]
    steps = [{st.traceback: st.size_diff for st in b.compare_to(a, "lineno")} for (_, a), (_, b) in pairwise(later)]
    lines.append(f"\ngrowth {base[0]} s -> {last_t} s by allocating line, with its largest call path now:")
    for stat in sorted(last.compare_to(base[1], "lineno"), key=lambda s: s.size_diff, reverse=True)[:top]:
        if stat.size_diff <= 0:
            break
        grew = sum(1 for step in steps if step.get(stat.traceback, 0) > 0)
        lines.append(f"+{stat.size_diff / 1024:8.1f} KiB  +{stat.count_diff:6d} blocks  now {stat.size / 1024:8.1f} KiB"
                     f"  grew in {grew}/{len(steps)} intervals")  # fmt: skip
        frame = stat.traceback[0]
        here = last.filter_traces([tracemalloc.Filter(True, frame.filename, frame.lineno)])
        path = max(here.statistics("traceback"), key=lambda s: s.size)
        lines += [f"      {line.strip()}" for line in path.traceback.format(limit=frames, most_recent_first=True)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--from", dest="start", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=6)
    args = parser.parse_args(argv)
    print(report(args.directory, args.start, args.top, args.frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
