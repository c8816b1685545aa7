"""What every scenario shares: the bench database and Redis, CPU accounting, the machine.

The benchmarks never touch a deployment's data: their own database (calsync_bench, or
CALSYNC_BENCH_DATABASE_URL) and their own Redis database number (/11, or
CALSYNC_BENCH_REDIS_URL), both wiped before each scenario.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable
CALSYNC = str(Path(sys.executable).parent / "calsync")

DB_URL = os.environ.get("CALSYNC_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/calsync_bench")
REDIS_URL = os.environ.get("CALSYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_env(sim: Any | None = None, **extra: str) -> dict[str, str]:
    """The environment of every calsync process the bench starts (and of the bench itself)."""
    out = {"CALSYNC_DATABASE_URL": DB_URL, "CALSYNC_REDIS_URL": REDIS_URL, **extra}
    if sim is not None:
        from calsync.simulator.graph import DEFAULT_CLIENT_SECRET

        out.update(CALSYNC_EWS_USERNAME=sim.user, CALSYNC_EWS_PASSWORD=sim.password)
        out.update(CALSYNC_GRAPH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET)  # the simulator's app (scenario 7)
    return out


def use_bench_environment() -> None:
    """Point this process's calsync at the bench database and Redis before calsync.config is read."""
    os.environ.update(bench_env())


def prepare_database() -> None:
    """Create and migrate the bench database with the product's own commands, then empty it."""
    env = {**os.environ, **bench_env()}
    for args in (["db", "create"], ["db", "upgrade"]):
        proc = subprocess.run([CALSYNC, *args], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bench: calsync {' '.join(args)} failed:\n{proc.stderr or proc.stdout}")
    reset_database()


def reset_database() -> None:
    """Empty every product table (whatever migrations exist now) and drop the baseline's schema."""
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '%%yoyo%%'"
            ).fetchall()
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS baseline CASCADE")
        # No ANALYZE here: statistics of empty tables would mislead the planner for the whole
        # scenario (this server runs with autovacuum off); truncated tables are planned from
        # their actual size instead.


def flush_redis() -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()


def connect() -> Any:
    """An autocommit connection to the bench database whose rows are dicts (typed Any for brevity at call sites)."""
    return psycopg.connect(DB_URL, autocommit=True, row_factory=dict_row)


def set_settings(**values: Any) -> None:
    from calsync.store import settings as settings_store

    with psycopg.connect(DB_URL, row_factory=dict_row) as conn:
        for key, value in values.items():
            settings_store.set_value(conn, key, value)
        conn.commit()


def add_operators(emails: Sequence[str]) -> None:
    """COPY the operators in; the schema's trigger gives each its sync_state row."""
    with psycopg.connect(DB_URL, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy("COPY operators (email, display_name, calendar_sync) FROM STDIN") as copy:
            for email in emails:
                copy.write_row((email, email.split("@")[0], True))
        cur.execute("ANALYZE operators")
        cur.execute("ANALYZE sync_state")


@dataclass
class CpuMeter:
    """CPU seconds of a changing set of processes (and their children) between start() and stop().

    `pids` is called at both ends: a process born inside the window counts with all its CPU,
    one that died inside it is lost (rare here: the processes measured live longer).
    """

    pids: Callable[[], Iterable[int]]
    include_children: bool = True
    _before: dict[int, float] = field(default_factory=dict)

    def _sample(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for pid in self.pids():
            try:
                root = psutil.Process(pid)
                procs = [root, *(root.children(recursive=True) if self.include_children else [])]
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                    out[p.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    pass
        return out

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> float:
        after = self._sample()
        return sum(v - self._before.get(pid, 0.0) for pid, v in after.items())


def postgres_backends(database: str | None = None) -> list[int]:
    """The Postgres backends serving the bench database (other databases on this server are not ours)."""
    name = database or DB_URL.rsplit("/", 1)[1].split("?", 1)[0]
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if (p.info.get("name") or "") != "postgres":
            continue
        cmd = " ".join(p.info.get("cmdline") or [])
        if f" {name} " in cmd:
            out.append(p.pid)
    return out


def redis_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if (p.info.get("name") or "").startswith("redis-server")]


def _fixed(pids: list[int]) -> Callable[[], list[int]]:
    return lambda: pids


@contextmanager
def cpu_window(groups: dict[str, Any], alone: tuple[str, ...] = ()) -> Iterator[dict[str, float]]:
    """Measure CPU seconds per group of process trees over the with-block; filled in at exit.
    Groups named in `alone` (and postgres, whose children are every backend) count their
    own processes without children."""
    meters = {
        name: CpuMeter(pids if callable(pids) else _fixed(pids), include_children=name not in ("postgres", *alone))
        for name, pids in groups.items()
    }
    result: dict[str, float] = {}
    for m in meters.values():
        m.start()
    started = time.monotonic()
    try:
        yield result
    finally:
        for name, m in meters.items():
            result[name] = m.stop()
        result["wall"] = time.monotonic() - started


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = "?"
    try:
        with psycopg.connect(DB_URL) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            pg = str(row[0]) if row else "?"
    except psycopg.Error:
        pass
    try:
        rv = str(redis.Redis.from_url(REDIS_URL).info("server")["redis_version"])
    except redis.RedisError:
        rv = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "postgres": pg,
        "redis": rv,
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def copy_text(rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    for r in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in r) + "\n")
    return buf.getvalue().encode()
