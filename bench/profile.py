"""Where a running worker spends its time: py-spy samples, summarised by library and by calsync step.

py-spy attaches to the live `celery worker` (all its threads) without changing it; only
samples of the thread holding the GIL are kept (--gil), so the shares are shares of the
Python CPU work of the process. Without py-spy in the virtualenv the profile is skipped.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.fleet import LOGS

PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")

# Leaf to root, the first frame from one of these decides whose work a sample is.
_LIBRARIES = (
    ("exchangelib/", "exchangelib (build request, parse XML)"),
    ("lxml/", "exchangelib (build request, parse XML)"),
    ("psycopg", "psycopg (Postgres client)"),
    ("kombu/", "Celery/kombu (messaging)"),
    ("celery/", "Celery/kombu (messaging)"),
    ("billiard/", "Celery/kombu (messaging)"),
    ("redis/", "redis-py"),
    ("urllib3/", "requests/urllib3 (HTTP)"),
    ("requests/", "requests/urllib3 (HTTP)"),
    ("http/client.py", "requests/urllib3 (HTTP)"),
    ("pydantic", "pydantic"),
    ("prometheus_client/", "prometheus-client (metrics)"),
    ("calsync/", "calsync's own code"),
    ("bench/", "bench's own code"),
)
# Inclusive shares of these steps (a sample counts for every step on its stack).
STEPS = (
    ("poll_chunk", "calsync.poll_chunk task (whole chunk)"),
    ("leased", "lifecycle.leased (read the chunk's states)"),
    ("settle_quiet", "lifecycle.settle_quiet (one UPDATE per chunk)"),
    ("Lane.before_request", "throttle lane: back-off check per poll (Redis)"),
    ("sync_batch", "calsync.sync_batch task (whole batch)"),
    ("run_batch", "runner.run_batch"),
    ("renew", "lifecycle.renew"),
    ("start_run", "lifecycle.start_run"),
    ("sync_page", "SyncFolderItems (sync_page)"),
    ("get_items", "GetItem (get_items)"),
    ("to_appointment", "convert.to_appointment"),
    ("slot", "throttle slot (Redis)"),
    ("apply_plan", "appointments.apply_plan"),
    ("known_change_keys", "appointments.known_change_keys"),
    ("plan_batch", "sync.plan_batch"),
    ("current_settings", "current_settings"),
    ("load", "settings load"),
    ("finish", "lifecycle.finish"),
    ("commit_page", "lifecycle.commit_page"),
    ("apply_async", "Celery apply_async (publish next)"),
    ("transaction", "db.transaction (pool + BEGIN/COMMIT)"),
    ("dispatch_tick", "calsync.dispatch tick"),
    ("observe_ews", "metrics.observe_ews"),
    ("operation_of", "metrics.operation_of"),
)


def available() -> bool:
    return PY_SPY is not None


def record(pid: int, seconds: float, name: str) -> subprocess.Popen[bytes] | None:
    """Start sampling `pid` for `seconds` in the background; pass the handle to summary()."""
    if PY_SPY is None:
        return None
    out = LOGS / f"{name}.pyspy.txt"
    return subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "--gil",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """End a recording early; py-spy writes what it sampled when interrupted."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)


def summary(proc: subprocess.Popen[bytes] | None, name: str, top: int = 8) -> dict[str, Any] | None:
    if proc is None:
        return None
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None
    path = LOGS / f"{name}.pyspy.txt"
    if not path.exists():
        return None
    by_lib: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = stack.split(";")
        total += count
        lib = "other (stdlib, threads)"
        for frame in reversed(frames):
            where = _file(frame)
            hit = next(
                (label for needle, label in _LIBRARIES if where.startswith(needle) or "/" + needle in where), None
            )
            if hit:
                lib = hit
                break
        by_lib[lib] += count
        names = {f.split(" (", 1)[0].strip() for f in frames}
        for fn, label in STEPS:
            if fn in names:
                by_step[label] += count
        by_leaf[frames[-1].split(" (", 1)[0] + " " + _short(frames[-1])] += count
    if not total:
        return None

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(top)]

    return {
        "samples": total,
        "by_library_pct": share(by_lib),
        "by_step_pct": [(k, round(100.0 * by_step[k] / total, 1)) for _, k in STEPS if by_step[k]],
        "top_leaf_pct": share(by_leaf),
        "raw": str(path),
    }


def _file(frame: str) -> str:
    return frame.rsplit("(", 1)[1].rstrip(")") if "(" in frame else ""


def _short(frame: str) -> str:
    if "(" not in frame:
        return ""
    loc = frame.rsplit("(", 1)[1].rstrip(")")
    parts = loc.split("/")
    return "(" + "/".join(parts[-2:]) + ")"
