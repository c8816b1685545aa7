"""`python -m soak` (what `make soak` runs); see soak/run.py."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from soak.run import soak, summary
from soak.world import Size


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="calsync under random faults while users edit; checks at the end")
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30")))
    parser.add_argument("--operators", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="run the measured worker under tracemalloc (snapshots in OUT/tracemalloc; soak.memtrace reads them)",
    )
    args = parser.parse_args(argv)
    if args.minutes < 2:
        parser.error(f"--minutes {args.minutes:g}: a soak needs at least 2 minutes (warm-up, faults, convergence)")
    signal.signal(signal.SIGTERM, _stop)  # a TERM unwinds like Ctrl-C: every process the soak started is stopped
    report = soak(
        args.minutes, args.out, Size(operators=args.operators), seed=args.seed, trace_memory=args.trace_memory
    )
    print(summary(report))
    print(f"report: {args.out / 'soak.json'}, timeline: {args.out / 'soak.png'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
