"""Fixtures for the failure tests: a simulator with a request log, a real SMTP server, real workers.

The SMTP server is aiosmtpd's, on a free port, collecting every envelope it receives. The
simulator runs in this process (so the test can read the exact time each request arrived
and each fault fired); workers are real `celery worker` processes that reach it over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from calsync import celery_procs, runtime
from calsync.config import env
from calsync.simulator import Simulator, SimulatorServer, generate
from calsync.store import settings as settings_store
from calsync.store.db import transaction

RECIPIENTS = "ops@example.com; crm-admin@example.com"
DIGEST_SECONDS = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    subject: str
    body: str


class _Collect:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        msg = message_from_bytes(envelope.content, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",))
        with self.lock:
            self.mails.append(
                Mail(
                    envelope.mail_from, list(envelope.rcpt_tos), str(msg["Subject"]), body.get_content() if body else ""
                )
            )
        return "250 OK"


@dataclass
class Smtp:
    url: str
    handler: _Collect

    @property
    def mails(self) -> list[Mail]:
        with self.handler.lock:
            return list(self.handler.mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.recipients]

    def wait(self, count: int, timeout: float = 30.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.mails) >= count:
                return self.mails
            time.sleep(0.1)
        raise AssertionError(f"expected {count} email(s), got {len(self.mails)}: {[m.subject for m in self.mails]}")


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    """Accept only the credentials in the test's CALSYNC_SMTP_URL: proves they travel, decoded."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"calsync", b"s3cret!")
    return AuthResult(success=ok)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Smtp]:
    handler = _Collect()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False
    )
    controller.start()
    url = f"smtp://calsync:s3cret%21@127.0.0.1:{port}"
    monkeypatch.setenv("CALSYNC_SMTP_URL", url)
    monkeypatch.setenv("CALSYNC_SMTP_FROM", "calsync@example.com")
    env.cache_clear()
    try:
        yield Smtp(url, handler)
    finally:
        controller.stop()
        env.cache_clear()


@dataclass
class RequestLog:
    """What reached the simulator, with arrival times (time.time()), and when faults fired."""

    requests: list[tuple[float, str, str | None]] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def after(self, t: float) -> list[tuple[float, str, str | None]]:
        with self.lock:
            return [r for r in self.requests if r[0] > t]


def instrument(sim: Simulator) -> RequestLog:
    log = RequestLog()
    original_request = sim.stats.request
    original_fired = sim.fault_fired

    def request(operation: str, mailbox: str | None) -> None:
        with log.lock:
            log.requests.append((time.time(), operation, mailbox))
        original_request(operation, mailbox)

    def fired(fault: Any) -> None:
        with log.lock:
            log.faults.append((time.time(), fault.kind))
        original_fired(fault)

    sim.stats.request = request  # type: ignore[method-assign]
    sim.fault_fired = fired  # type: ignore[method-assign]
    return log


@pytest.fixture
def clean_failures(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """No pause or episode leaks into another test (a leaked pause would stop every sync)."""
    db.execute("TRUNCATE failure_episodes, global_pause")
    yield db
    db.execute("TRUNCATE failure_episodes, global_pause")


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The simulator's service account for this process, as a worker gets it."""
    monkeypatch.setenv("CALSYNC_EWS_USERNAME", "svc-calsync")
    monkeypatch.setenv("CALSYNC_EWS_PASSWORD", "Simulat0r!")
    monkeypatch.setenv("CALSYNC_NOTIFY_DIGEST_SECONDS", DIGEST_SECONDS)
    env.cache_clear()
    runtime.reset_process_state()
    yield
    env.cache_clear()
    runtime.reset_process_state()


def configure(ews_url: str, **values: Any) -> None:
    defaults: dict[str, Any] = {
        "exchange_url": ews_url,
        "notify_sync_failure_to": RECIPIENTS,
        "notification_frequency_minutes": 1,
        "poll_interval_minutes": 0.05,
    }
    defaults.update(values)
    with transaction() as conn:
        for key, value in defaults.items():
            settings_store.set_value(conn, key, value)
    runtime.reset_process_state()


def add_operators(db: psycopg.Connection[Any], emails: list[str]) -> list[int]:
    rows = db.execute(
        "INSERT INTO operators (email, display_name, calendar_sync) "
        "SELECT e, split_part(e, '@', 1), true FROM unnest(%s::text[]) AS e RETURNING id",
        (emails,),
    ).fetchall()
    return [int(r["id"]) for r in rows]


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def simulator() -> Callable[..., Simulator]:
    def make(mailboxes: int = 3, appointments: int = 30, seed: int = 11) -> Simulator:
        return generate(mailboxes, appointments, seed=seed)

    return make


@pytest.fixture
def serve() -> Iterator[Callable[[Simulator], SimulatorServer]]:
    servers: list[SimulatorServer] = []

    def start(sim: Simulator, port: int = 0) -> SimulatorServer:
        srv = SimulatorServer(sim, port=port).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@dataclass
class Fleet:
    procs: list[subprocess.Popen[bytes]]
    metrics_dir: Path
    logs: list[Path]


@pytest.fixture
def fleet(tmp_path: Path, database_url: str, redis_url: str, smtp: Smtp) -> Iterator[Callable[[int], Fleet]]:
    """Real worker processes (threads pool), started on demand with the test's environment."""
    started: list[subprocess.Popen[bytes]] = []

    def start(workers: int = 2, concurrency: int = 4) -> Fleet:
        metrics_dir = tmp_path / "prom"
        metrics_dir.mkdir(exist_ok=True)
        worker_env = {
            "CALSYNC_DATABASE_URL": database_url,
            "CALSYNC_REDIS_URL": redis_url,
            "CALSYNC_EWS_USERNAME": "svc-calsync",
            "CALSYNC_EWS_PASSWORD": "Simulat0r!",
            "CALSYNC_SMTP_URL": smtp.url,
            "CALSYNC_SMTP_FROM": "calsync@example.com",
            "CALSYNC_NOTIFY_DIGEST_SECONDS": DIGEST_SECONDS,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        logs = []
        for i in range(workers):
            log = tmp_path / f"worker{i}.log"
            logs.append(log)
            started.append(
                celery_procs.start_worker(
                    f"failures{i}-{os.getpid()}", worker_env, concurrency=concurrency, log_file=log, loglevel="INFO"
                )
            )
        return Fleet(started[-workers:], metrics_dir, logs)

    yield start
    for proc in started:
        celery_procs.stop(proc, timeout=10)


def purge_queues() -> None:
    from calsync.celery import app

    with app.connection_for_write() as conn:
        for queue in ("sync", "dispatch", "notify"):
            conn.default_channel.queue_purge(queue)
