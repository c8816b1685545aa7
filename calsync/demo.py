"""`make demo`: the whole job on the built-in Exchange simulator, then a summary read from Postgres.

It uses its own database (calsync_demo) and its own Redis keys so it never touches a real
deployment's data, starts one beat and two workers as real processes, and stops all it
started, also on Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg.rows import dict_row

from calsync import celery_procs
from calsync.config import ConfigError, load_env
from calsync.simulator import SimulatorProcess
from calsync.store import migrate, summary

REPO = Path(__file__).resolve().parent.parent
CALSYNC = str(Path(sys.executable).parent / "calsync")
MAILBOXES, APPOINTMENTS = 50, 200
POLL_MINUTES = 0.1
# The dispatcher's tick (10 s in a deployment): the demo's second poll comes within seconds.
TICK_SECONDS = 2
KOMBU_KEYS = ("sync", "dispatch", "notify", "unacked", "unacked_index", "unacked_mutex")


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _demo_db_url(base: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/calsync_demo"))


def _check_services(db_url: str, redis_url: str) -> None:
    try:
        migrate.create_database(db_url)
    except ConfigError as exc:
        raise SystemExit(f"demo: {exc}") from exc
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise SystemExit(
            f"demo: cannot reach Redis at {redis_url} ({exc}). Start it with "
            "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`, "
            "or run `make up`, or set CALSYNC_REDIS_URL"
        ) from exc


def _reset_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = [*KOMBU_KEYS, *client.keys("calsync:*"), *client.keys("_kombu.binding.*")]
    if keys:
        client.delete(*keys)


def _run(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: {' '.join(args[1:])} failed:\n{proc.stderr or proc.stdout}")
    return proc.stdout


def _wait(count: Callable[[], int], want: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        got = count()
        if got != last:
            _say(f"{what}: {got}/{want}")
            last = got
        if got >= want:
            return
        time.sleep(1.0)
    raise SystemExit(
        f"demo: timed out waiting for {what} ({last}/{want}); see the logs in {os.environ.get('TMPDIR', '/tmp')}"
    )


def main() -> int:
    base = load_env()
    db_url = os.environ.get("CALSYNC_DEMO_DATABASE_URL") or _demo_db_url(base.database_url)
    redis_url = base.redis_url
    _check_services(db_url, redis_url)
    migrate.upgrade(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        summary.reset(conn)
    _reset_redis(redis_url)
    logs = Path(tempfile.mkdtemp(prefix="calsync-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    _say(f"starting the Exchange simulator: {MAILBOXES} mailboxes x {APPOINTMENTS} appointments")
    with SimulatorProcess(mailboxes=MAILBOXES, appointments=APPOINTMENTS, seed=42, latency_ms=5) as sim:
        env = {
            "CALSYNC_DATABASE_URL": db_url,
            "CALSYNC_REDIS_URL": redis_url,
            "CALSYNC_EWS_USERNAME": sim.user,
            "CALSYNC_EWS_PASSWORD": sim.password,
            "CALSYNC_DISPATCH_TICK_SECONDS": str(TICK_SECONDS),
        }
        _run([CALSYNC, "settings", "set", "exchange_url", sim.ews_url], env)
        _run([CALSYNC, "settings", "set", "poll_interval_minutes", str(POLL_MINUTES)], env)
        _run([CALSYNC, "settings", "set", "batch_size", "100"], env)
        _say(_run([CALSYNC, "operators", "import", str(REPO / "examples" / "operators.csv")], env).strip())
        try:
            procs.append(celery_procs.start_beat(env, logs / "beat.log"))
            procs.append(celery_procs.start_worker("demo-w1", env, log_file=logs / "worker1.log"))
            procs.append(celery_procs.start_worker("demo-w2", env, log_file=logs / "worker2.log"))
            _say(f"beat and two workers started (logs in {logs})")
            with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
                _wait(lambda: summary.synced_count(conn), MAILBOXES, 120, "operators through their first sync")
                first_done = time.monotonic()
                changed_at = dt.datetime.now(dt.UTC)
                client = sim.client()
                changes = _make_changes(client)
                _say(f"changed {sum(len(v) for v in changes.values())} appointments in {len(changes)} mailboxes")
                _wait(
                    lambda: summary.polled_since(conn, list(changes), changed_at),
                    len(changes), 90, "changed mailboxes polled again",
                )  # fmt: skip
                _summary(conn, changed_at, first_done - t0, time.monotonic() - first_done)
        finally:
            for proc in procs:
                celery_procs.stop(proc)
    _say(f"stopped beat, workers and simulator; done in {time.monotonic() - t0:.0f}s")
    return 0


def _make_changes(client: Any) -> dict[str, list[str]]:
    """A handful of edits as users make them: a move, a cancellation, a deletion, a new meeting."""
    now = dt.datetime.now(dt.UTC)
    changes: dict[str, list[str]] = {}
    for n, email in enumerate(["user0001@example.com", "user0002@example.com", "user0003@example.com"]):
        future = [
            it for it in client.list_items(email)
            if it["recurrence"] is None and dt.datetime.fromisoformat(it["start"]) > now and not it["is_cancelled"]
        ]  # fmt: skip
        done = changes.setdefault(email, [])
        client.update_item(email, future[0]["id"], {"subject": f"Moved by the demo ({n})", "location": "Room 42"})
        done.append("updated")
        client.cancel_item(email, future[1]["id"])
        done.append("cancelled")
        client.delete_item(email, future[2]["id"])
        done.append("deleted")
        start = (now + dt.timedelta(days=2 + n)).replace(minute=0, second=0, microsecond=0)
        client.create_item(
            email,
            {
                "subject": f"New customer call {n}",
                "start": start.isoformat(),
                "end": (start + dt.timedelta(minutes=30)).isoformat(),
                "timezone": "Europe/Berlin",
            },
        )
        done.append("created")
    return changes


def _summary(conn: psycopg.Connection[Any], changed_at: dt.datetime, first_secs: float, second_secs: float) -> None:
    rows = summary.per_operator(conn)
    print()
    print(f"{'operator':<28} {'appointments':>12} {'occurrences':>11} {'cancelled':>9}  {'status':<10} last sync (UTC)")
    for r in rows:
        last = r["last_success_at"].strftime("%H:%M:%S") if r["last_success_at"] else "-"
        print(
            f"{r['email']:<28} {r['appointments']:>12} {r['occurrences']:>11} {r['cancelled']:>9}  "
            f"{r['status']:<10} {last}"
        )
    total = sum(r["appointments"] for r in rows)
    occurrences = sum(r["occurrences"] for r in rows)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    second = summary.changes_since(conn, changed_at)
    print()
    print(f"operators: {len(rows)} ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})")
    print(
        f"appointments mirrored: {total} singles and series, plus {occurrences} occurrences of the series "
        f"(first sync of all operators took {first_secs:.1f}s)"
    )
    print(
        f"changes seen by the polls after the edits: {second['c']} created, {second['u']} updated "
        f"(cancellations included), {second['d']} deleted, in {second['runs']} sync runs ({second_secs:.1f}s; "
        "the polls that found nothing leave no run row)"
    )
    print("Flower: run `make flower` while workers run, then open http://127.0.0.1:5555 (user admin)")
    print()


if __name__ == "__main__":
    sys.exit(main())
