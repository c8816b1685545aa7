"""Fixtures for tests that run real celery worker and beat processes against the simulator."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from calsync.simulator import SimulatorProcess
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from tests.distributed.stack import Stack


@pytest.fixture
def set_settings() -> Callable[..., None]:
    def _set(**values: Any) -> None:
        with transaction() as conn:
            for key, value in values.items():
                settings_store.set_value(conn, key, value)

    return _set


@pytest.fixture
def stack_factory(
    db: Any, clean_redis: Any, database_url: str, redis_url: str
) -> Iterator[Callable[..., tuple[Stack, SimulatorProcess]]]:
    started: list[tuple[Stack, SimulatorProcess]] = []

    def _make(mailboxes: int, appointments: int, latency_ms: int = 0, **env: str) -> tuple[Stack, SimulatorProcess]:
        sim = SimulatorProcess(mailboxes=mailboxes, appointments=appointments, seed=11, latency_ms=latency_ms)
        sim.start()
        stack = Stack(
            {
                "CALSYNC_DATABASE_URL": database_url,
                "CALSYNC_REDIS_URL": redis_url,
                "CALSYNC_EWS_USERNAME": sim.user,
                "CALSYNC_EWS_PASSWORD": sim.password,
                **env,
            }
        )
        started.append((stack, sim))
        with transaction() as conn:
            settings_store.set_value(conn, "exchange_url", sim.ews_url)
        return stack, sim

    yield _make
    for stack, sim in started:
        stack.stop_all()
        sim.stop()


def dispatch_now() -> None:
    """Send one dispatcher tick with a slot of its own, as the beat leader would."""
    from calsync.celery import app

    slot = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(microseconds=uuid.uuid4().int % 999_999)
    app.send_task("calsync.dispatch", kwargs={"slot": slot.isoformat()}, queue="dispatch")
