"""Fixtures for recurrence tests: one schema-validated simulator over HTTP for the whole module
(hypothesis examples each take a fresh mailbox and operator), the real exchangelib, Postgres.

Batches run with a fixed "now" so that the mirror and the oracle cut the same window.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from calsync.runner.batch import BatchOutcome, run_batch
from calsync.simulator import Simulator, SimulatorServer
from calsync.source.ews.connection import EwsEndpoint
from calsync.source.ews.source import EwsSource
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from tests.integration.truth import diff, expected_rows, mirror_rows

NOW = dt.datetime(2027, 1, 11, 10, 0, tzinfo=dt.UTC)
_counter = itertools.count(1)


@pytest.fixture(scope="module")
def rec_server() -> Iterator[SimulatorServer]:
    sim = Simulator(validate=True)
    with SimulatorServer(sim) as srv:
        yield srv
    violations = sim.get_stats().get("schema_violations")
    assert not violations, f"simulator sent or received schema-invalid XML: {violations}"


@pytest.fixture
def rec_sim(rec_server: SimulatorServer) -> Simulator:
    return rec_server.simulator


@pytest.fixture(scope="module")
def rec_source(rec_server: SimulatorServer) -> EwsSource:
    return EwsSource(EwsEndpoint(rec_server.ews_url, "Exchange2013", rec_server.user, rec_server.password))


@pytest.fixture
def rec_db(db: psycopg.Connection[Any], rec_server: SimulatorServer) -> psycopg.Connection[Any]:
    with transaction() as conn:
        settings_store.set_value(conn, "exchange_url", rec_server.ews_url)
        settings_store.set_value(conn, "batch_size", 5)
    return db


@pytest.fixture
def new_mailbox(rec_sim: Simulator, rec_db: psycopg.Connection[Any]) -> Callable[[], tuple[str, int]]:
    """A fresh mailbox in the shared simulator and its operator: (email, operator id)."""

    def _new() -> tuple[str, int]:
        email = f"rec{next(_counter):05d}@example.com"
        rec_sim.add_mailbox(email)
        row = rec_db.execute(
            "INSERT INTO operators (email, display_name, calendar_sync) VALUES (%s, %s, true) RETURNING id",
            (email, email.split("@")[0]),
        ).fetchone()
        assert row is not None
        return email, int(row["id"])

    return _new


def sync_all(source: EwsSource, operator_id: int, now: dt.datetime = NOW) -> list[BatchOutcome]:
    outcomes: list[BatchOutcome] = []
    token: int | None = None
    for _ in range(1000):
        outcome = run_batch(source, operator_id, token, "recurrence-test", now=now)
        outcomes.append(outcome)
        if not outcome.more:
            return outcomes
        token = outcome.token
    raise AssertionError("sync did not finish")


def assert_mirror_matches(
    db: psycopg.Connection[Any],
    sim: Simulator,
    email: str,
    op: int,
    now: dt.datetime = NOW,
    known: frozenset[str] = frozenset(),
) -> dict[str, dict[str, Any]]:
    expected = expected_rows(sim.list_items(email), now, known=known)
    actual = mirror_rows(db, op)
    problems = diff(expected, actual)
    assert not problems, f"{len(problems)} differences, first: {problems[:8]}"
    return actual
