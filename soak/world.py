"""Everything a soak runs against, all private to it: Redis, Postgres, an SMTP sink, the
simulator, supervised workers, beats and a push listener (as systemd's Restart=always would
keep them).

Redis is a Sentinel group (a master, two replicas, three sentinels; tests/distributed/
sentinels.py) that calsync reaches through `sentinel://` URLs, so that the soak can fail the
master over as well as restart it; Postgres is a private cluster (tests/distributed/stack.py).
All on free ports, so restarting them disturbs nobody else on the machine. Push is on: the
simulator sends its notifications to the soak's listener, and polls are only the safety net
(push_safety_poll_minutes), so a killed listener delays changes until Exchange retries. The
EWS and SMTP passwords are the soak's own, so the log scan knows exactly what must never appear.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests
from aiosmtpd.controller import Controller

from calsync import celery_procs
from calsync.redis_url import client as redis_client
from calsync.simulator import SimulatorProcess, mailbox_email
from calsync.simulator.client import SimulatorClient
from calsync.store import settings as settings_store
from tests.distributed.sentinels import MASTER_NAME, SentinelGroup, sentinel_group
from tests.distributed.stack import Stack, beat_sends, connect, insert_operators, private_postgres, wait_for

CALSYNC = str(Path(os.sys.executable).parent / "calsync")  # type: ignore[attr-defined]
EWS_ACCOUNT = ("svc-soak", "S0ak-EWS-pa55w0rd!")
SMTP_USER, SMTP_PASSWORD = "soak-mailer", "S0ak-SMTP-pa55!"
RECIPIENT = "ops@example.com"


@dataclass(frozen=True)
class Size:
    operators: int = 30
    appointments: int = 30
    workers: int = 2  # the first is never killed: its memory is the one measured
    threads: int = 4
    edit_interval: float = 1.0
    fault_hold: tuple[float, float] = (15.0, 40.0)
    fault_gap: tuple[float, float] = (20.0, 50.0)
    poll_interval_minutes: float = 0.25
    # Polls while a mailbox's push subscription is healthy: the net under push, and what ends the soak
    # (every operator polled after the last edit).
    push_safety_poll_minutes: float = 2.0
    notification_minutes: int = 1  # also push's StatusFrequency
    warm_fraction: float = 0.2  # of the run, before worker memory is measured


@dataclass
class Mail:
    subject: str
    recipients: list[str]
    body: str
    at: float


class _Sink:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import time

        msg = message_from_bytes(envelope.content, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",))
        with self.lock:
            self.mails.append(
                Mail(str(msg["Subject"]), list(envelope.rcpt_tos), body.get_content() if body else "", time.time())
            )
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(), SMTP_PASSWORD.encode(),
    )  # fmt: skip
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class World:
    size: Size
    sim: SimulatorProcess
    stack: Stack
    pg_url: str
    redis: SentinelGroup
    restart_postgres: Callable[[], None]
    sink: _Sink
    rng: random.Random
    operators: dict[str, int]
    listener_port: int
    outages: list[str] = field(default_factory=list)
    failovers: int = 0

    def redis_client(self) -> Any:
        """A client that follows the master across failovers, as calsync's own do."""
        return redis_client(self.redis.url, MASTER_NAME, socket_timeout=2, socket_connect_timeout=2)

    def restart_redis(self) -> int:
        """kill -9 of the master and a start again on its port with its append-only file, well within
        the sentinels' down-after time: a restart, not a failover. Returns the master's port."""
        port = self.redis.master_port()
        if port is None:
            raise RuntimeError("no sentinel names a master")
        self.redis.kill(port)
        time.sleep(1.0)
        self.redis.start_redis(port)
        wait_for(lambda: _answers(port), 20, f"redis {port} after restart")
        return port

    @property
    def mailboxes(self) -> list[str]:
        return list(self.operators)

    @property
    def workers(self) -> list[str]:
        return [f"w{i}" for i in range(1, self.size.workers + 1)]

    @property
    def listeners(self) -> list[str]:
        return ["listener"]

    @property
    def killable_workers(self) -> list[str]:
        return self.workers[1:] or self.workers

    @property
    def beats(self) -> list[str]:
        return ["beat1", "beat2"]

    @property
    def fault_hold(self) -> tuple[float, float]:
        return self.size.fault_hold

    @property
    def notification_minutes(self) -> int:
        return self.size.notification_minutes

    def admin(self) -> SimulatorClient:
        """A client of its own per caller: requests' sessions are not shared between threads."""
        return SimulatorClient(self.sim.base_url, *EWS_ACCOUNT)

    def beat_leader(self) -> str | None:
        """The beat that sent the latest tick (both log every send at INFO)."""
        last = {name: max(beat_sends(self.stack.log(name)), default=0.0) for name in self.beats}
        name, at = max(last.items(), key=lambda kv: kv[1])
        return name if at else None

    def failure_emailed(self, email: str) -> bool:
        """The operator's open failure episode has had its email (False while Postgres is unreachable)."""
        try:
            with psycopg.connect(self.pg_url, connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT e.notified_at IS NOT NULL FROM failure_episodes e JOIN operators o ON o.id = e.operator_id "
                    "WHERE o.email = %s AND e.recovered_at IS NULL",
                    (email,),
                ).fetchone()
                return bool(row and row[0])
        except psycopg.Error:
            return False

    def status_of(self, email: str) -> str | None:
        """An operator's status, or None while Postgres is unreachable (a restart fault)."""
        try:
            with psycopg.connect(self.pg_url, connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT s.status FROM sync_state s JOIN operators o ON o.id = s.operator_id WHERE o.email = %s",
                    (email,),
                ).fetchone()
                return str(row[0]) if row else None
        except psycopg.Error:
            return None

    def log_files(self) -> list[Path]:
        return sorted(self.stack.logs.glob("*.log"))


TRACEMEM = Path(__file__).resolve().parent / "tracemem"


def _traced_worker(stack: Stack, name: str, threads: int, out: Path) -> None:
    """A supervised worker like the others, with soak/tracemem first on its PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(TRACEMEM), os.environ.get("PYTHONPATH", "")) if p)
    env = {**stack.env, "PYTHONPATH": path, "SOAK_TRACEMALLOC_DIR": str(out)}
    stack.procs[name] = celery_procs.start_worker(
        name, env, concurrency=threads, log_file=stack.logs / f"{name}.log", loglevel="INFO", supervised=True
    )


@contextmanager
def world(size: Size, seed: int, trace_memory: Path | None = None) -> Iterator[World]:
    """Start everything; with `trace_memory`, the measured worker runs under tracemalloc and dumps
    snapshots there (soak/tracemem/sitecustomize.py, read by soak/memtrace.py)."""
    handler = _Sink()
    port = _free_port()
    smtp = Controller(handler, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False)
    smtp.start()
    try:
        # Sentinels give the master 5 s of silence before they fail it over: a restart (about 1 s) stays one.
        with sentinel_group(down_after_ms=5000, appendonly=True) as group, private_postgres() as (pg_url, restart_pg):
            redis_env = {"CALSYNC_REDIS_URL": group.url, "CALSYNC_REDIS_SENTINEL_MASTER": MASTER_NAME}
            env = {**os.environ, "CALSYNC_DATABASE_URL": pg_url, **redis_env}
            for cmd in (["db", "create"], ["db", "upgrade"]):
                subprocess.run([CALSYNC, *cmd], env=env, check=True, capture_output=True)
            with SimulatorProcess(
                mailboxes=size.operators, appointments=size.appointments, seed=seed, latency_ms=20,
                service_accounts=[EWS_ACCOUNT],
            ) as sim:  # fmt: skip
                conn = connect(pg_url)
                listener_port = _free_port()
                for key, value in (
                    ("notification_url", f"http://127.0.0.1:{listener_port}/ews/push"),
                    ("push_safety_poll_minutes", size.push_safety_poll_minutes),
                    ("exchange_url", sim.ews_url), ("batch_size", 50),
                    ("poll_interval_minutes", size.poll_interval_minutes),
                    ("notification_frequency_minutes", size.notification_minutes),
                    ("notify_sync_failure_to", RECIPIENT),
                ):  # fmt: skip
                    settings_store.set_value(conn, key, value)
                operators = insert_operators(conn, [mailbox_email(i) for i in range(1, size.operators + 1)])
                conn.close()
                stack = Stack(
                    {
                        "CALSYNC_DATABASE_URL": pg_url,
                        **redis_env,
                        "CALSYNC_EWS_USERNAME": EWS_ACCOUNT[0],
                        "CALSYNC_EWS_PASSWORD": EWS_ACCOUNT[1],
                        "CALSYNC_SMTP_URL": f"smtp://{SMTP_USER}:{SMTP_PASSWORD.replace('!', '%21')}@127.0.0.1:{port}",
                        "CALSYNC_SMTP_FROM": "calsync@example.com",
                        "CALSYNC_LEASE_SECONDS": "15",
                        "CALSYNC_VISIBILITY_TIMEOUT": "30",
                        "CALSYNC_DISPATCH_TICK_SECONDS": "2",
                        "CALSYNC_REDBEAT_LOCK_TIMEOUT": "8",
                        "CALSYNC_NOTIFY_DIGEST_SECONDS": "2",
                        "CALSYNC_PUSH_SWEEP_SECONDS": "5",
                    }
                )
                w = World(size, sim, stack, pg_url, group, restart_pg, handler, random.Random(seed), operators,
                          listener_port)  # fmt: skip
                try:
                    stack.procs["listener"] = celery_procs.start_listener(
                        stack.env, listener_port, log_file=stack.logs / "listener.log", supervised=True
                    )
                    wait_for(lambda: _healthy(listener_port), 60, "the push listener")
                    for name in w.workers:
                        if name == w.workers[0] and trace_memory is not None:
                            _traced_worker(stack, name, size.threads, trace_memory)
                        else:
                            stack.worker(name, concurrency=size.threads, supervised=True)
                    for name in w.beats:
                        stack.beat(name, supervised=True)
                    yield w
                finally:
                    stack.stop_all()
    finally:
        smtp.stop()
