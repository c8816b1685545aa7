"""This tree against an earlier commit, in the same run: a refactor must not cost polls.

    python -m bench.compare --base REV [--rounds 2] [--scenario polling]

The earlier commit is checked out in a temporary git worktree; each round runs the quick
scenario there and here, one after the other, each tree importing its own calsync (through
PYTHONPATH, ahead of this venv's editable install) with the same venv, services and sizes.
Alternating the trees spreads the machine's own drift over both. The table shows polls per
second and worker CPU per poll for each run, the medians, and the ratio head/base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def _worktree(rev: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"calsync-base-{rev[:12]}"
    if not (path / "calsync").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True)
    return path


def _run(tree: Path, scenario: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only", scenario], cwd=tree, env=env, check=True)
    data: dict[str, Any] = json.loads((tree / "bench" / "results" / "quick" / "results.json").read_text())
    best = data[scenario]["best"]
    return {"polls_per_s": best["polls_per_s"], "cpu_ms_per_poll": best["cpu_ms_per_poll"]["calsync"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--base", required=True, help="the commit to compare against (e.g. HEAD~1)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenario", default="polling")
    args = parser.parse_args(argv)
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", args.base], check=True, capture_output=True, text=True
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    base_tree = _worktree(rev)
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
    for n in range(args.rounds):
        for label, tree in (("base", base_tree), ("head", REPO)):
            print(f"compare: round {n + 1}/{args.rounds}, {label}", flush=True)
            runs[label].append(_run(tree, args.scenario))
    med = {
        label: {k: round(statistics.median(r[k] for r in rs), 3) for k in ("polls_per_s", "cpu_ms_per_poll")}
        for label, rs in runs.items()
    }
    ratio = {k: round(med["head"][k] / med["base"][k], 3) for k in ("polls_per_s", "cpu_ms_per_poll")}
    lines = [
        f"| {args.scenario} (quick) | base {rev[:10]} | head {head[:10]} |",
        "|---|---|---|",
        *(
            f"| round {i + 1} | {b['polls_per_s']} polls/s, {b['cpu_ms_per_poll']} ms CPU/poll | "
            f"{h['polls_per_s']} polls/s, {h['cpu_ms_per_poll']} ms CPU/poll |"
            for i, (b, h) in enumerate(zip(runs["base"], runs["head"], strict=True))
        ),
        f"| median | {med['base']['polls_per_s']} polls/s, {med['base']['cpu_ms_per_poll']} ms | "
        f"{med['head']['polls_per_s']} polls/s, {med['head']['cpu_ms_per_poll']} ms |",
        f"| head / base | | polls/s x{ratio['polls_per_s']}, CPU per poll x{ratio['cpu_ms_per_poll']} |",
    ]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"base": rev, "head": head, "scenario": args.scenario, "runs": runs, "median": med, "ratio": ratio}
    (RESULTS / "compare.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
