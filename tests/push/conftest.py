"""A real push deployment in miniature: the simulator pushing, listener processes, a worker, a beat.

Time is scaled so that the tests stay short: one StatusFrequency minute lasts MINUTE seconds
on both sides (the simulator's CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS and calsync's
CALSYNC_PUSH_MINUTE_SECONDS), so StatusFrequency 10 is 5 s, its retries run 0, 0.25, 0.5,
1, 2 s, and a subscription silent for 10 s is dead. Polling is set to a day, so that only
push can explain a change reaching the mirror within the test.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from calsync import celery_procs
from calsync.simulator import SimulatorClient, SimulatorProcess
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from tests.distributed.stack import Stack, connect, free_port, insert_operators, wait_for

MINUTE = 0.5
FREQUENCY = 10  # notification_frequency_minutes = StatusFrequency: 5 s on the scaled clock


@dataclass
class PushStack:
    stack: Stack
    sim: SimulatorProcess
    client: SimulatorClient
    operators: dict[str, int]
    database_url: str
    listener_ports: dict[str, int] = field(default_factory=dict)
    notification_path: str = "/ews/push"

    def listener(self, name: str = "listener", port: int | None = None) -> int:
        port = port or self.listener_ports.get(name) or free_port()
        self.listener_ports[name] = port
        self.stack.procs[name] = celery_procs.start_listener(
            self.stack.env, port, log_file=self.stack.logs / f"{name}.log"
        )
        wait_for(lambda: _healthy(port), 30, f"{name} on port {port}", interval=0.2)
        return port

    def stop(self, name: str = "listener") -> None:
        celery_procs.stop(self.stack.procs[name], timeout=5)

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with connect(self.database_url) as conn:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]

    def active_subscriptions(self) -> dict[int, str]:
        rows = self.query("SELECT operator_id, subscription_id FROM push_subscriptions WHERE state = 'active'")
        return {r["operator_id"]: r["subscription_id"] for r in rows}

    def wait_subscribed(self, timeout: float = 60) -> dict[int, str]:
        wait_for(
            lambda: (
                len(self.active_subscriptions()) == len(self.operators)
                and len(self.client.list_subscriptions()["subscriptions"]) >= len(self.operators)
            ),
            timeout,
            "every operator subscribed",
        )
        return self.active_subscriptions()

    def mirrored_item(self, email: str) -> str:
        """A single appointment of `email` that the mirror holds with its details (not private)."""
        rows = self.query(
            "SELECT item_id FROM appointments WHERE operator_id = %s AND kind = 'single' AND NOT details_withheld "
            "ORDER BY item_id LIMIT 1",
            self.operators[email],
        )
        assert rows, f"{email} has no single, non-private appointment in the mirror"
        return str(rows[0]["item_id"])

    def mirror_subject(self, email: str, item_id: str) -> str | None:
        rows = self.query(
            "SELECT subject FROM appointments WHERE operator_id = %s AND item_id = %s", self.operators[email], item_id
        )
        return rows[0]["subject"] if rows else None

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        calsync = str(Path(sys.executable).parent / "calsync")
        return subprocess.run([calsync, *args], capture_output=True, text=True, env={**os.environ, **self.stack.env})

    def schema_violations(self) -> tuple[int, list[str]]:
        stats = self.client.stats()
        return int(stats["schema_violations"]), list(stats["schema_errors"])


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def push_stack(db: Any, clean_redis: Any, database_url: str, redis_url: str) -> Iterator[Callable[..., PushStack]]:
    made: list[PushStack] = []

    def _make(
        mailboxes: int = 3,
        appointments: int = 5,
        listeners: int = 1,
        proxy_port: int | None = None,
        frequency: int = FREQUENCY,
    ) -> PushStack:
        sim = SimulatorProcess(
            mailboxes=mailboxes, appointments=appointments, seed=15, validate=True,
            env={"CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS": str(MINUTE)},
        )  # fmt: skip
        sim.start()
        stack = Stack(
            {
                "CALSYNC_DATABASE_URL": database_url,
                "CALSYNC_REDIS_URL": redis_url,
                "CALSYNC_EWS_USERNAME": sim.user,
                "CALSYNC_EWS_PASSWORD": sim.password,
                "CALSYNC_DISPATCH_TICK_SECONDS": "1",
                "CALSYNC_PUSH_SWEEP_SECONDS": "0.5",
                "CALSYNC_PUSH_MINUTE_SECONDS": str(MINUTE),
                "CALSYNC_LEASE_SECONDS": "20",
            }
        )
        client = sim.client()
        emails = [m["email"] for m in client.list_mailboxes()]
        ps = PushStack(stack, sim, client, {}, database_url)
        made.append(ps)
        port = proxy_port or free_port()
        if proxy_port is None:
            ps.listener_ports["listener"] = port
        with transaction() as conn:
            for key, value in (
                ("exchange_url", sim.ews_url),
                ("notification_url", f"http://127.0.0.1:{port}{ps.notification_path}"),
                ("notification_frequency_minutes", frequency),
                ("poll_interval_minutes", 1440),
                ("push_safety_poll_minutes", 1440),
            ):
                settings_store.set_value(conn, key, value)
        with connect(database_url) as conn:
            ps.operators = insert_operators(conn, emails)
        for i in range(listeners):
            name = "listener" if i == 0 else f"listener{i + 1}"
            ps.listener(name, port if (i == 0 and proxy_port is None) else None)
        stack.worker("w1", concurrency=6)
        stack.beat("beat")
        return ps

    yield _make
    for ps in made:
        try:
            violations, errors = ps.schema_violations()
            print("logs in", ps.stack.logs, "\n", ps.stack.dump_logs())  # shown by pytest when the test failed
        finally:
            ps.stack.stop_all()
            ps.sim.stop()
        assert violations == 0, f"schema violations: {errors}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)
