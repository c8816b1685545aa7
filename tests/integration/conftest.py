"""Fixtures for sync tests: an in-process simulator (schema-validated) and operators on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from calsync.runner.batch import BatchOutcome, run_batch
from calsync.simulator import Simulator, SimulatorServer, generate
from calsync.source.ews.connection import EwsEndpoint
from calsync.source.ews.source import EwsSource
from calsync.store import settings as settings_store
from calsync.store.db import transaction


@pytest.fixture
def sim() -> Simulator:
    return generate(3, 300, seed=7, validate=True)


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as srv:
        yield srv
    violations = sim.get_stats().get("schema_violations")
    assert not violations, f"simulator sent or received schema-invalid XML: {violations}"


@pytest.fixture
def source(server: SimulatorServer) -> EwsSource:
    return EwsSource(EwsEndpoint(server.ews_url, "Exchange2013", server.user, server.password))


@pytest.fixture
def configure(db: psycopg.Connection[Any], server: SimulatorServer) -> Callable[..., None]:
    def _configure(**values: Any) -> None:
        with transaction() as conn:
            settings_store.set_value(conn, "exchange_url", server.ews_url)
            for key, value in values.items():
                settings_store.set_value(conn, key, value)

    _configure()
    return _configure


@pytest.fixture
def add_operator(db: psycopg.Connection[Any]) -> Callable[[str], int]:
    def _add(email: str) -> int:
        row = db.execute(
            "INSERT INTO operators (email, display_name, calendar_sync) VALUES (%s, %s, true) RETURNING id",
            (email, email.split("@")[0]),
        ).fetchone()
        assert row is not None
        return int(row["id"])

    return _add


def sync_to_end(source: EwsSource, operator_id: int, max_batches: int = 10_000) -> list[BatchOutcome]:
    """Run batches the way the task chain does, until Exchange says the mailbox is in sync."""
    outcomes: list[BatchOutcome] = []
    token: int | None = None
    for _ in range(max_batches):
        outcome = run_batch(source, operator_id, token, "test")
        outcomes.append(outcome)
        if not outcome.more:
            return outcomes
        token = outcome.token
    raise AssertionError("sync did not finish")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
