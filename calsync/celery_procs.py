"""Start and stop real `celery` worker and beat processes (the demo, tests and benchmarks).

They run as separate processes exactly as an operator would start them, so what is
exercised is the deployed shape: a broker, a leader beat, and workers that can be killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

CELERY = str(Path(sys.executable).parent / "celery")


def start_worker(
    name: str,
    env: Mapping[str, str],
    concurrency: int = 8,
    pool: str = "threads",
    queues: str = "dispatch,sync,notify",
    log_file: Path | None = None,
    loglevel: str = "WARNING",
    supervised: bool = False,
) -> subprocess.Popen[bytes]:
    """A worker process; `supervised` restarts it when it exits (see _supervise).

    Celery's worker can die with "Unrecoverable error" when the broker connection drops while
    a thread acknowledges a message (a long-standing kombu race on the Redis transport), so
    production runs workers under a supervisor, and so does the broker-restart test.
    """
    args = [
        CELERY, "-A", "calsync", "worker", "-n", f"{name}@%h", "-Q", queues, "-P", pool,
        "-c", str(concurrency), "-l", loglevel, "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    return _spawn(_supervise(args, "worker") if supervised else args, env, log_file)


def _supervise(args: list[str], name: str) -> list[str]:
    """Run `args` again whenever it exits, as systemd's Restart=always or compose's restart: would."""
    loop = f'while true; do "$@"; echo "{name} exited ($?); restarting"; sleep 1; done'
    return ["bash", "-c", loop, name, *args]


def start_beat(
    env: Mapping[str, str], log_file: Path | None = None, loglevel: str = "WARNING", supervised: bool = False
) -> subprocess.Popen[bytes]:
    """A beat process; `supervised` restarts it when it exits, as systemd or compose would.

    redbeat makes a beat that loses Redis (and so cannot prove it holds the lock) exit on
    purpose; a deployment runs beat under a supervisor that starts it again.
    """
    args = [CELERY, "-A", "calsync", "beat", "-l", loglevel]
    return _spawn(_supervise(args, "beat") if supervised else args, env, log_file)


def start_listener(
    env: Mapping[str, str],
    port: int,
    host: str = "127.0.0.1",
    log_file: Path | None = None,
    supervised: bool = False,
) -> subprocess.Popen[bytes]:
    """A push listener process (`calsync listener serve`), as a deployment runs it; `supervised`
    starts it again when it exits (the soak kills it with -9)."""
    calsync = str(Path(sys.executable).parent / "calsync")
    args = [calsync, "listener", "serve", "--host", host, "--port", str(port)]
    return _spawn(_supervise(args, "listener") if supervised else args, env, log_file)


def _spawn(args: list[str], env: Mapping[str, str], log_file: Path | None) -> subprocess.Popen[bytes]:
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Warm shutdown first (the worker finishes its current task), then kill."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
