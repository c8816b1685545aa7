"""The simulator's own ceiling: empty incremental SyncFolderItems per second on one process.

Measured by bench/simulator_bench.py (raw SOAP from client processes over keep-alive
connections). It is the row that proves the simulator is not what the other scenarios
measure: calsync's polls per second must stay well below it.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from bench import common


def run(quick: bool) -> dict[str, Any]:
    seconds = 1 if quick else 5
    common.say(f"simulator: empty incremental SyncFolderItems for {seconds}s")
    size = ["--mailboxes", "10", "--appointments", "10"] if quick else []
    proc = subprocess.run(
        [common.PYTHON, "-m", "bench.simulator_bench", "--seconds", str(seconds), *size],
        capture_output=True,
        text=True,
        cwd=common.REPO,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"simulator_bench failed: {proc.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
    common.say(f"  {data['per_second']} requests/s")
    return data
