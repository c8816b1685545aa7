"""Everything a soak runs against, all private to it: Redis, Postgres, an SMTP sink, the
simulator, supervised workers and beats (as systemd's Restart=always would keep them).

Private Redis and Postgres on free ports (tests/distributed/stack.py), so restarting them
disturbs nobody else on the machine; the EWS and SMTP passwords are the soak's own, so the
log scan knows exactly what must never appear.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller

from calsync.simulator import SimulatorProcess, mailbox_email
from calsync.simulator.client import SimulatorClient
from calsync.store import settings as settings_store
from tests.distributed.stack import Stack, beat_sends, connect, insert_operators, private_postgres, private_redis

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
    notification_minutes: int = 1
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


@dataclass
class World:
    size: Size
    sim: SimulatorProcess
    stack: Stack
    pg_url: str
    redis_url: str
    restart_redis: Callable[[], None]
    restart_postgres: Callable[[], None]
    sink: _Sink
    rng: random.Random
    operators: dict[str, int]
    outages: list[str] = field(default_factory=list)

    @property
    def mailboxes(self) -> list[str]:
        return list(self.operators)

    @property
    def workers(self) -> list[str]:
        return [f"w{i}" for i in range(1, self.size.workers + 1)]

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


@contextmanager
def world(size: Size, seed: int) -> Iterator[World]:
    handler = _Sink()
    port = _free_port()
    smtp = Controller(handler, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False)
    smtp.start()
    try:
        with private_redis() as (redis_url, restart_redis), private_postgres() as (pg_url, restart_pg):
            env = {**os.environ, "CALSYNC_DATABASE_URL": pg_url, "CALSYNC_REDIS_URL": redis_url}
            for cmd in (["db", "create"], ["db", "upgrade"]):
                subprocess.run([CALSYNC, *cmd], env=env, check=True, capture_output=True)
            with SimulatorProcess(
                mailboxes=size.operators, appointments=size.appointments, seed=seed, latency_ms=20,
                service_accounts=[EWS_ACCOUNT],
            ) as sim:  # fmt: skip
                conn = connect(pg_url)
                for key, value in (
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
                        "CALSYNC_REDIS_URL": redis_url,
                        "CALSYNC_EWS_USERNAME": EWS_ACCOUNT[0],
                        "CALSYNC_EWS_PASSWORD": EWS_ACCOUNT[1],
                        "CALSYNC_SMTP_URL": f"smtp://{SMTP_USER}:{SMTP_PASSWORD.replace('!', '%21')}@127.0.0.1:{port}",
                        "CALSYNC_SMTP_FROM": "calsync@example.com",
                        "CALSYNC_LEASE_SECONDS": "15",
                        "CALSYNC_VISIBILITY_TIMEOUT": "30",
                        "CALSYNC_DISPATCH_TICK_SECONDS": "2",
                        "CALSYNC_REDBEAT_LOCK_TIMEOUT": "8",
                        "CALSYNC_NOTIFY_DIGEST_SECONDS": "2",
                    }
                )
                w = World(size, sim, stack, pg_url, redis_url, restart_redis, restart_pg, handler,
                          random.Random(seed), operators)  # fmt: skip
                try:
                    for name in w.workers:
                        stack.worker(name, concurrency=size.threads, supervised=True)
                    for name in w.beats:
                        stack.beat(name, supervised=True)
                    yield w
                finally:
                    stack.stop_all()
    finally:
        smtp.stop()
