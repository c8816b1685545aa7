"""A real calsync deployment in miniature: simulator process, celery workers and beats.

Helpers for the distributed tests; every process is a real one that a test may kill.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from calsync import celery_procs
from tests.integration.truth import diff, expected_rows, mirror_rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Stack:
    """Processes started for one test, stopped (or killed) at its end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.logs = Path(tempfile.mkdtemp(prefix="calsync-test-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def worker(
        self,
        name: str,
        concurrency: int = 8,
        pool: str = "threads",
        queues: str = "dispatch,sync,notify",
        supervised: bool = False,
    ) -> None:
        self.procs[name] = celery_procs.start_worker(
            name, self.env, concurrency=concurrency, pool=pool, queues=queues,
            log_file=self.logs / f"{name}.log", loglevel="INFO", supervised=supervised,
        )  # fmt: skip

    def beat(self, name: str, supervised: bool = False) -> None:
        self.procs[name] = celery_procs.start_beat(
            self.env, log_file=self.logs / f"{name}.log", loglevel="INFO", supervised=supervised
        )

    def kill(self, name: str) -> None:
        """kill -9, as a crashed host or the OOM killer would."""
        proc = self.procs[name]
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs.values():
            celery_procs.stop(proc, timeout=10)

    def dump_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.log"))


def insert_operators(conn: psycopg.Connection[Any], emails: list[str]) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO operators (email, display_name, calendar_sync) VALUES (%s, %s, true)",
            [(e, e) for e in emails],
        )
    return {r["email"]: r["id"] for r in conn.execute("SELECT id, email FROM operators").fetchall()}


def synced_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL").fetchone()
    return int(row["n"]) if row else 0


def mirror_problems(conn: psycopg.Connection[Any], client: Any, operators: dict[str, int]) -> list[str]:
    import datetime as dt

    problems: list[str] = []
    now = dt.datetime.now(dt.UTC)
    for email, op in operators.items():
        for p in diff(expected_rows(client.list_items(email), now), mirror_rows(conn, op)):
            problems.append(f"{email}: {p}")
    dupes = conn.execute(
        "SELECT operator_id, item_id FROM appointments GROUP BY operator_id, item_id HAVING count(*) > 1"
    ).fetchall()
    problems += [f"duplicate row {d}" for d in dupes]
    return problems


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


SEND_RE = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+).*Sending due task CalendarSynchronization")


def beat_sends(log: str) -> list[float]:
    import datetime as dt

    out = []
    for m in SEND_RE.finditer(log):
        t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC)
        out.append(t.timestamp())
    return out


@contextmanager
def private_redis() -> Iterator[tuple[str, Callable[[], None]]]:
    """A Redis of our own on a free port; the second value restarts it (same port, appendonly)."""
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="calsync-redis-"))
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--dir", str(data)]  # fmt: skip
    proc = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)]

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(ready, 10, "private redis")

    def restart() -> None:
        proc[0].kill()
        proc[0].wait()
        time.sleep(1.0)
        proc[0] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(ready, 10, "private redis after restart")

    try:
        yield f"redis://127.0.0.1:{port}/0", restart
    finally:
        proc[0].kill()
        proc[0].wait()
        shutil.rmtree(data, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql")
    return str(found[-1])


@contextmanager
def private_postgres() -> Iterator[tuple[str, Callable[[], None]]]:
    """A Postgres cluster of our own on a free port (run as the postgres user when we are root)."""
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="calsync-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    ctl = [*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"),
           "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"]  # fmt: skip
    subprocess.run([*ctl, "start"], check=True, capture_output=True)

    def restart() -> None:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        time.sleep(1.0)
        subprocess.run([*ctl, "start"], check=True, capture_output=True)

    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/calsync", restart
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
