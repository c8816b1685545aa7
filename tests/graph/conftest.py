"""Fixtures for the Graph source: the simulator's Graph front-end (schema-checked), the adapter
configured as calsync configures it, and a mailbox with every case the contract must carry."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from calsync.runner.batch import BatchOutcome, run_batch
from calsync.simulator import Simulator, SimulatorServer, generate
from calsync.simulator.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT
from calsync.source.ews.connection import EwsEndpoint
from calsync.source.ews.source import EwsSource
from calsync.source.graph.auth import TokenProvider
from calsync.source.graph.client import GraphClient
from calsync.source.graph.source import GraphSource
from calsync.source.port import CalendarSource
from calsync.store import settings as settings_store
from calsync.store.db import transaction

REPO = Path(__file__).resolve().parents[2]
GRAPH_SCHEMA = Path(os.environ.get("CALSYNC_GRAPH_SCHEMA_DIR") or REPO.parent / "shared" / "graph-schema")
MAILBOX = "user0001@example.com"


@pytest.fixture(autouse=True)
def graph_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Schema checks on in the simulator; the app's secret in this process's environment, as a worker has it."""
    if not (GRAPH_SCHEMA / "graph-calendar.schema.json").is_file():
        pytest.skip(f"Graph schema not found at {GRAPH_SCHEMA} (set CALSYNC_GRAPH_SCHEMA_DIR)")
    monkeypatch.setenv("CALSYNC_GRAPH_SCHEMA_DIR", str(GRAPH_SCHEMA))
    monkeypatch.setenv("CALSYNC_GRAPH_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    from calsync.config import env

    env.cache_clear()
    yield GRAPH_SCHEMA
    env.cache_clear()


def add_edge_cases(sim: Simulator, email: str = MAILBOX) -> dict[str, str]:
    """The cases the issue names, on top of the generated ones: a weekly series across both DST
    changes with an exception and a deleted occurrence, all-day events in far-apart zones,
    a private meeting, a cancelled one, attendees with every response."""
    today = dt.date.today()
    first_monday = today - dt.timedelta(days=today.weekday() + 7 * 20)
    series = sim.create_item(
        email,
        {
            "subject": "Weekly across DST",
            "start": f"{first_monday.isoformat()}T09:30:00",
            "end": f"{first_monday.isoformat()}T10:15:00",
            "timezone": "Europe/Berlin",
            "recurrence": {
                "pattern": {"type": "Weekly", "interval": 1, "days_of_week": ["Monday"], "first_day_of_week": "Monday"},
                "range": {"type": "NoEnd", "start_date": first_monday.isoformat()},
            },
            "required_attendees": [
                {"email": "ann@example.net", "name": "Ann", "response": "Accept"},
                {"email": "bob@example.net", "name": "Bob", "response": "Decline"},
                {"email": "cy@example.net", "name": "Cy", "response": "Tentative"},
            ],
            "optional_attendees": [{"email": "dee@example.net", "name": "Dee", "response": "NoResponseReceived"}],
        },
    )
    occurrences = [first_monday + dt.timedelta(weeks=w) for w in (3, 5, 30)]
    sim.update_occurrence(email, series["id"], f"{occurrences[0].isoformat()}T09:30:00", {"subject": "Moved one", "start": f"{occurrences[0].isoformat()}T14:00:00", "end": f"{occurrences[0].isoformat()}T15:00:00"})  # fmt: skip
    sim.delete_occurrence(email, series["id"], f"{occurrences[1].isoformat()}T09:30:00")
    sim.update_occurrence(email, series["id"], f"{occurrences[2].isoformat()}T09:30:00", {"location": "Room 7"})
    allday_sydney = sim.create_item(
        email,
        {"subject": "Holiday Sydney", "start": (today + dt.timedelta(days=10)).isoformat(),
         "end": (today + dt.timedelta(days=12)).isoformat(), "timezone": "Australia/Sydney", "is_all_day": True},
    )  # fmt: skip
    allday_la = sim.create_item(
        email,
        {"subject": "Offsite LA", "start": (today + dt.timedelta(days=3)).isoformat(),
         "end": (today + dt.timedelta(days=4)).isoformat(), "timezone": "America/Los_Angeles", "is_all_day": True},
    )  # fmt: skip
    private = sim.create_item(
        email,
        {"subject": "Doctor", "start": f"{(today + dt.timedelta(days=2)).isoformat()}T08:00:00",
         "end": f"{(today + dt.timedelta(days=2)).isoformat()}T09:00:00", "timezone": "Asia/Kolkata",
         "sensitivity": "Private", "location": "Clinic"},
    )  # fmt: skip
    cancelled = sim.create_item(
        email,
        {"subject": "Called off", "start": f"{(today + dt.timedelta(days=5)).isoformat()}T16:00:00",
         "end": f"{(today + dt.timedelta(days=5)).isoformat()}T17:00:00", "timezone": "America/New_York"},
    )  # fmt: skip
    sim.cancel_item(email, cancelled["id"])
    return {
        "series": series["id"],
        "allday_sydney": allday_sydney["id"],
        "allday_la": allday_la["id"],
        "private": private["id"],
        "cancelled": cancelled["id"],
    }


@pytest.fixture
def sim() -> Simulator:
    simulator = generate(2, 120, seed=11, validate=True)
    add_edge_cases(simulator)
    return simulator


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as srv:
        yield srv
    stats = sim.get_stats()
    assert stats["schema_violations"] == 0, stats["schema_errors"]


def make_graph_source(server: SimulatorServer, past_days: int = 180, future_days: int = 365) -> GraphSource:
    base = server.base_url
    tokens = TokenProvider(base, DEFAULT_TENANT, DEFAULT_CLIENT_ID, lambda: DEFAULT_CLIENT_SECRET, base + "/v1.0")
    return GraphSource(GraphClient(base + "/v1.0", tokens), past_days, future_days)


@pytest.fixture
def graph_source(server: SimulatorServer) -> GraphSource:
    return make_graph_source(server)


@pytest.fixture
def ews_source(server: SimulatorServer) -> EwsSource:
    return EwsSource(EwsEndpoint(server.ews_url, "Exchange2013", server.user, server.password))


@pytest.fixture
def configure(db: psycopg.Connection[Any], server: SimulatorServer) -> Callable[..., None]:
    """Settings for both sources on this simulator (the secret comes from the environment)."""

    def _configure(**values: Any) -> None:
        with transaction() as conn:
            for key, value in {
                "exchange_url": server.ews_url,
                "graph_tenant_id": DEFAULT_TENANT,
                "graph_client_id": DEFAULT_CLIENT_ID,
                "graph_authority_url": server.base_url,
                "graph_base_url": server.base_url + "/v1.0",
                **values,
            }.items():
                settings_store.set_value(conn, key, value)

    _configure()
    return _configure


@pytest.fixture
def add_operator(db: psycopg.Connection[Any]) -> Callable[..., int]:
    def _add(email: str, source: str | None = None) -> int:
        row = db.execute(
            "INSERT INTO operators (email, display_name, calendar_sync, source) VALUES (%s, %s, true, %s) RETURNING id",
            (email, email.split("@")[0], source),
        ).fetchone()
        assert row is not None
        return int(row["id"])

    return _add


def sync_to_end(source: CalendarSource, operator_id: int, max_batches: int = 1000) -> list[BatchOutcome]:
    outcomes: list[BatchOutcome] = []
    token: int | None = None
    for _ in range(max_batches):
        outcome = run_batch(source, operator_id, token, "test")
        outcomes.append(outcome)
        if not outcome.more:
            return outcomes
        token = outcome.token
    raise AssertionError("sync did not finish")


CONTRACT = (
    "kind, uid, original_start, subject, body, body_type, location, start_at, end_at, timezone, is_all_day, "
    "start_date, end_date, is_cancelled, sensitivity, details_withheld, show_as, organizer_email, organizer_name, "
    "is_organizer, recurrence, exchange_created_at, exchange_modified_at"
)


def mirror(db: psycopg.Connection[Any], operator_id: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every contract column of an operator's rows but Exchange's own ids and change keys, keyed by
    meeting (UID, original start, row kind), with the attendees."""
    rows = db.execute(
        f"""
        SELECT a.id, {CONTRACT},
               (SELECT coalesce(json_agg(json_build_array(t.email, t.name, t.role, t.response) ORDER BY t.position), '[]')
                  FROM appointment_attendees t WHERE t.appointment_id = a.id) AS attendees
          FROM appointments a WHERE a.operator_id = %s
        """,
        (operator_id,),
    ).fetchall()
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["uid"], r["original_start"], r["kind"] in ("occurrence", "exception"))
        assert key not in out, f"two rows for one meeting: {key}"
        out[key] = dict(r)
    return out
