"""calsync as deployed: real `celery worker` processes and a redbeat beat, against the bench stores."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from calsync import celery_procs

PROTO = common.REPO / "bench" / "proto"
LOGS = Path(tempfile.mkdtemp(prefix="calsync-bench-"))


@dataclass
class Fleet:
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.workers] + ([self.beat.pid] if self.beat else [])

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.workers) and (self.beat is None or self.beat.poll() is None)


def release_all() -> None:
    """Leftovers of a previous fleet (messages flushed with Redis) must not keep operators leased."""
    with common.connect() as conn:
        conn.execute(
            "UPDATE sync_state SET in_flight = false, lease_expires_at = NULL, lease_owner = NULL, "
            "next_poll_at = now() WHERE in_flight"
        )


@contextmanager
def fleet(
    sim: Any,
    workers: int,
    threads: int,
    beat: bool = True,
    tick_seconds: float = 1.0,
    tag: str = "w",
    queues: str = "dispatch,sync,notify",
    proto: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Fleet]:
    """Workers and a beat; `proto` names bench/proto/celeryconfig.py overrides to measure (e.g. "no-events")."""
    common.flush_redis()
    release_all()
    env = common.bench_env(sim, CALSYNC_DISPATCH_TICK_SECONDS=str(tick_seconds), CALSYNC_LEASE_SECONDS="120")
    env.update(extra_env or {})
    cwd = os.getcwd()
    if proto:
        # Celery's own config-module variable: calsync/celery.py loads the overlay instead of calsync.celeryconfig.
        env.update(CALSYNC_BENCH_PROTO=proto, PYTHONPATH=str(PROTO), CELERY_CONFIG_MODULE="celeryconfig")
        os.chdir(PROTO)
    f = Fleet()
    try:
        for i in range(workers):
            f.workers.append(
                celery_procs.start_worker(
                    f"bench-{tag}{i}", env, concurrency=threads, queues=queues, log_file=LOGS / f"{tag}{i}.log"
                )
            )
        if beat:
            f.beat = celery_procs.start_beat(env, log_file=LOGS / f"beat-{tag}.log")
        os.chdir(cwd)
        yield f
    finally:
        os.chdir(cwd)
        procs = [*f.workers, *([f.beat] if f.beat else [])]
        for p in procs:  # TERM all at once, then wait: shutdown runs in parallel
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            celery_procs.stop(p, timeout=10)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> float:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (logs in {LOGS})")
