"""Issue 8: `calsync status` reports what the database holds; disable and settings act on the next tick."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from calsync.simulator import SimulatorServer, generate
from tests.cli.conftest import Run


def _operator(db: Any, email: str, status: str, code: str | None = None) -> int:
    op = db.execute(
        "INSERT INTO operators (email, display_name, calendar_sync) VALUES (%s, %s, %s) RETURNING id",
        (email, email, status != "disabled"),
    ).fetchone()["id"]
    db.execute(
        "UPDATE sync_state SET status = %s, last_error_code = %s, failing_since = CASE WHEN %s::text IS NULL "
        "THEN NULL ELSE now() END, attempts = CASE WHEN %s::text IS NULL THEN 0 ELSE 7 END WHERE operator_id = %s",
        (status, code, code, code, op),
    )
    return int(op)


def test_status_json_matches_the_database_and_fails_on_failed(db: Any, run: Run) -> None:
    for i, status in enumerate(["active", "active", "retrying", "not_synced", "disabled"]):
        _operator(db, f"op{i}@example.com", status)
    ok = run("status", "--json", "--no-broker")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    expected = {r["status"]: r["n"] for r in db.execute("SELECT status, count(*) AS n FROM sync_state GROUP BY status")}
    assert {k: v for k, v in report["by_status"].items() if v} == expected
    assert report["operators"] == 5 and report["failures"] == []

    _operator(db, "gone@example.com", "failed", "ErrorNonExistentMailbox")
    bad = run("status", "--json", "--no-broker")
    assert bad.returncode == 1, "monitoring sees a nonzero exit when something failed"
    failure = json.loads(bad.stdout)["failures"][0]
    assert failure["email"] == "gone@example.com" and failure["code"] == "ErrorNonExistentMailbox"
    assert failure["attempts"] == 7 and failure["message"] and failure["fix"]
    human = run("status", "--no-broker")
    assert "FAILED gone@example.com: ErrorNonExistentMailbox" in human.stdout
    one = json.loads(run("status", "op2@example.com", "--json", "--no-broker").stdout)
    assert [r["status"] for r in one["operators_detail"]] == ["retrying"]
    assert run("status", "nobody@example.com", "--no-broker").returncode == 2


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(generate(2, 40, seed=2)) as server:
        yield server


def test_disable_stops_polling_at_the_next_tick(db: Any, run: Run) -> None:
    from calsync.store import lifecycle

    keep = _operator(db, "keep@example.com", "active")
    stop = _operator(db, "stop@example.com", "active")
    assert run("operators", "disable", "stop@example.com").returncode == 0
    with db.transaction():
        claimed = {c.operator_id for c in lifecycle.claim_due(db, slack_seconds=0, lease_seconds=60, limit=100)}
    assert keep in claimed and stop not in claimed
    row = db.execute("SELECT status, in_flight FROM sync_state WHERE operator_id = %s", (stop,)).fetchone()
    assert row == {"status": "disabled", "in_flight": False}


def test_settings_take_effect_on_the_next_batch(db: Any, run: Run, simulator: SimulatorServer) -> None:
    from calsync.runner.batch import run_batch
    from calsync.source.ews.connection import EwsEndpoint
    from calsync.source.ews.source import EwsSource

    email = "user0001@example.com"
    op = _operator(db, email, "not_synced")
    db.execute("UPDATE sync_state SET status = 'not_synced' WHERE operator_id = %s", (op,))
    assert run("settings", "set", "exchange_url", simulator.ews_url).returncode == 0
    assert run("settings", "set", "batch_size", "7").returncode == 0
    source = EwsSource(EwsEndpoint(simulator.ews_url, "Exchange2013", simulator.user, simulator.password))
    token = None
    pages = 0
    while True:
        outcome = run_batch(source, op, token, "test")
        pages += 1
        if not outcome.more:
            break
        token = outcome.token
    items = len(simulator.simulator.list_items(email))
    assert pages == -(-items // 7), "each batch asked Exchange for 7 changes, as just set"
