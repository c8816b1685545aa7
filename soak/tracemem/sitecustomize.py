"""tracemalloc inside a process the soak starts (`--trace-memory`): snapshots dumped at intervals.

Python imports `sitecustomize` at start-up from the first directory on sys.path that has one;
the soak puts this directory on PYTHONPATH of the measured worker only, with
SOAK_TRACEMALLOC_DIR set, so the worker runs unchanged (same command line, same code) but
with its Python allocations traced. Snapshots go to <dir>/<pid>-<seconds since start>.snap
every SOAK_TRACEMALLOC_SECONDS; soak/memtrace.py diffs them.

Tracing starts SOAK_TRACEMALLOC_AFTER seconds after start-up (default 90), when the worker has
imported what it imports and taken its first tasks: traced from the first instruction, a
worker took minutes to import its modules on a loaded machine, and what a leak hunt wants is
what is allocated later and never freed.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def _dump_forever(out: Path, after: float, every: float, frames: int) -> None:
    started = time.monotonic()
    time.sleep(after)
    tracemalloc.start(frames)
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot()
        name = out / f"{os.getpid()}-{time.monotonic() - started:06.0f}.snap"
        snap.dump(str(name) + ".part")
        os.replace(str(name) + ".part", name)  # the reader never sees half a snapshot
        holders = [t for t in os.environ.get("SOAK_TRACEMALLOC_HOLDERS", "").split(",") if t]
        if holders:
            name.with_suffix(".holders.txt").write_text(_holders(holders))


def _holders(type_names: list[str]) -> str:
    """How many objects of each named type are alive, and what holds the first one alive: the
    chain of referrers up from it (what a retained type's allocation site does not say)."""
    out = []
    here = sys._getframe()
    for type_name in type_names:
        alive = [o for o in gc.get_objects() if type(o).__name__ == type_name]
        out.append(f"{type_name}: {len(alive)} alive")
        if not alive:
            continue
        obj: object = alive[0]
        seen = {id(alive), id(obj)}
        for depth in range(15):
            refs = [r for r in gc.get_referrers(obj) if id(r) not in seen and r is not here]
            seen.add(id(refs))
            if not refs:
                out.append(f"  {depth}: nothing else holds it")
                break
            obj = refs[0]
            seen.add(id(obj))
            hint = list(obj)[:6] if isinstance(obj, dict) else getattr(getattr(obj, "f_code", None), "co_name", "")
            out.append(f"  {depth}: {type(obj).__module__}.{type(obj).__qualname__} {hint!r:.200}")
        del alive, obj
    # Garbage or held? A full collection frees what only reference cycles keep (the caller's
    # snapshot was taken before it, so it shows what had piled up between collections).
    out.append(f"collections so far by generation: {[g['collections'] for g in gc.get_stats()]}")
    freed = gc.collect()
    out.append(f"gc.collect() freed {freed} objects")
    for type_name in type_names:
        out.append(f"{type_name}: {sum(1 for o in gc.get_objects() if type(o).__name__ == type_name)} alive after it")
    return "\n".join(out) + "\n"


def _start() -> None:
    out = os.environ.get("SOAK_TRACEMALLOC_DIR")
    if not out:
        return
    after = float(os.environ.get("SOAK_TRACEMALLOC_AFTER", "90"))
    every = float(os.environ.get("SOAK_TRACEMALLOC_SECONDS", "60"))
    frames = int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "10"))
    Path(out).mkdir(parents=True, exist_ok=True)
    args = (Path(out), after, every, frames)
    threading.Thread(target=_dump_forever, args=args, name="soak-tracemalloc", daemon=True).start()


_start()
