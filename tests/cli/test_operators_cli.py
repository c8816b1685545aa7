"""`calsync operators add/update/enable/disable/list`, checked in the database."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.cli.conftest import Run


def operator(db: psycopg.Connection[Any], email: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = db.execute(
        "SELECT o.id, o.email, o.display_name, o.calendar_sync, o.updated_at, s.status, s.in_flight, "
        "s.ews_sync_state, s.stage, s.generation, s.lease_token "
        "FROM operators o JOIN sync_state s ON s.operator_id = o.id WHERE lower(o.email) = lower(%s)",
        (email,),
    ).fetchone()
    return row


def synced(db: psycopg.Connection[Any], email: str, appointments: int = 2) -> int:
    """Make an operator look like one a worker has synced and is syncing right now."""
    row = operator(db, email)
    assert row is not None
    db.execute(
        "UPDATE sync_state SET status = 'active', stage = 'incremental', ews_sync_state = 'opaque', "
        "last_success_at = now(), in_flight = true, lease_token = nextval('lease_token_seq'), "
        "lease_owner = 'worker-1', lease_expires_at = now() + interval '5 minutes' WHERE operator_id = %s",
        (row["id"],),
    )
    for n in range(appointments):
        appointment = db.execute(
            "INSERT INTO appointments (operator_id, item_id, change_key, kind, start_at, end_at) "
            "VALUES (%s, %s, 'ck', 'single', now(), now() + interval '1 hour') RETURNING id",
            (row["id"], f"item-{n}"),
        ).fetchone()
        assert appointment is not None
        db.execute(
            "INSERT INTO appointment_attendees (appointment_id, position, email, role) "
            "VALUES (%s, 0, 'guest@example.com', 'required')",
            (appointment["id"],),
        )
    return int(row["id"])


def count(db: psycopg.Connection[Any], table: str, operator_id: int) -> int:
    column = "a.operator_id"
    query = {
        "appointments": f"SELECT count(*) AS n FROM appointments a WHERE {column} = %s",
        "attendees": "SELECT count(*) AS n FROM appointment_attendees t JOIN appointments a "
        f"ON a.id = t.appointment_id WHERE {column} = %s",
    }[table]
    row = db.execute(query, (operator_id,)).fetchone()
    assert row is not None
    return int(row["n"])


def test_add_enables_by_default(run: Run, db: psycopg.Connection[Any]) -> None:
    result = run("operators", "add", "Ann@Example.com", "--name", "Ann")
    assert result.returncode == 0, result.stderr
    row = operator(db, "ann@example.com")
    assert row is not None
    assert (row["email"], row["display_name"], row["calendar_sync"], row["status"]) == (
        "Ann@Example.com",
        "Ann",
        True,
        "not_synced",
    )
    run("operators", "add", "bob@example.com", "--no-sync")
    bob = operator(db, "bob@example.com")
    assert bob is not None
    assert (bob["calendar_sync"], bob["status"]) == (False, "disabled")


def test_add_refuses_duplicates_and_bad_addresses(run: Run, db: psycopg.Connection[Any]) -> None:
    run("operators", "add", "ann@example.com")
    duplicate = run("operators", "add", "ANN@example.com", "--name", "Other")
    assert duplicate.returncode == 2
    assert "already exists as ann@example.com" in duplicate.stderr
    bad = run("operators", "add", "ann.example.com")
    assert bad.returncode == 2
    assert "not an email address" in bad.stderr
    rows = db.execute("SELECT email, display_name FROM operators").fetchall()
    assert rows == [{"email": "ann@example.com", "display_name": ""}]


def test_update_name_and_email(run: Run, db: psycopg.Connection[Any]) -> None:
    run("operators", "add", "ann@example.com", "--name", "Ann")
    run("operators", "add", "bob@example.com")
    ann_id = synced(db, "ann@example.com")
    before = operator(db, "ann@example.com")
    assert before is not None

    assert run("operators", "update", "ann@example.com", "--name", "Ann Smith").returncode == 0
    renamed = operator(db, "ann@example.com")
    assert renamed is not None
    assert renamed["display_name"] == "Ann Smith"
    assert renamed["ews_sync_state"] == "opaque"  # a rename keeps the sync going

    conflict = run("operators", "update", "ann@example.com", "--email", "BOB@example.com")
    assert conflict.returncode == 2
    assert "already exists as bob@example.com" in conflict.stderr

    unknown = run("operators", "update", "zed@example.com", "--name", "Zed")
    assert unknown.returncode == 2
    assert "no operator with email zed@example.com" in unknown.stderr

    # A new mailbox: full resync that will drop what the new mailbox does not have.
    assert run("operators", "update", "ann@example.com", "--email", "ann.smith@example.com").returncode == 0
    moved = operator(db, "ann.smith@example.com")
    assert moved is not None and moved["id"] == ann_id
    assert (moved["ews_sync_state"], moved["stage"], moved["status"]) == (None, "resync", "not_synced")
    assert moved["generation"] == before["generation"] + 1
    assert operator(db, "ann@example.com") is None
    assert count(db, "appointments", ann_id) == 2  # kept until the resync replaces them


def test_disable_stops_at_once_and_keeps_the_mirror(run: Run, db: psycopg.Connection[Any]) -> None:
    run("operators", "add", "ann@example.com")
    ann_id = synced(db, "ann@example.com")
    result = run("operators", "disable", "ann@example.com")
    assert result.returncode == 0, result.stderr
    row = operator(db, "ann@example.com")
    assert row is not None
    assert (row["calendar_sync"], row["status"], row["in_flight"], row["lease_token"]) == (
        False,
        "disabled",
        False,
        None,
    )
    assert row["ews_sync_state"] == "opaque"
    assert count(db, "appointments", ann_id) == 2
    # Enabled again, it resumes from its sync state.
    assert run("operators", "enable", "ann@example.com").returncode == 0
    again = operator(db, "ann@example.com")
    assert again is not None
    assert (again["calendar_sync"], again["status"]) == (True, "active")


def test_disable_purge_deletes_the_mirror_and_resets_the_state(run: Run, db: psycopg.Connection[Any]) -> None:
    run("operators", "add", "ann@example.com")
    run("operators", "add", "bob@example.com")
    ann_id = synced(db, "ann@example.com")
    bob_id = synced(db, "bob@example.com", appointments=3)
    before = operator(db, "ann@example.com")
    assert before is not None
    result = run("operators", "disable", "--purge", "ann@example.com")
    assert result.returncode == 0, result.stderr
    assert "purged 2 appointment(s)" in result.stdout
    row = operator(db, "ann@example.com")
    assert row is not None
    assert (row["status"], row["in_flight"], row["ews_sync_state"], row["stage"]) == (
        "disabled",
        False,
        None,
        "initial",
    )
    assert row["generation"] == before["generation"] + 1
    assert count(db, "appointments", ann_id) == 0
    assert count(db, "attendees", ann_id) == 0
    assert (count(db, "appointments", bob_id), count(db, "attendees", bob_id)) == (3, 3)
    # Enabled again after a purge, it starts with a first full sync.
    run("operators", "enable", "ann@example.com")
    again = operator(db, "ann@example.com")
    assert again is not None
    assert again["status"] == "not_synced"


def test_enable_disable_are_all_or_nothing(run: Run, db: psycopg.Connection[Any]) -> None:
    run("operators", "add", "ann@example.com", "--no-sync")
    run("operators", "add", "bob@example.com")
    result = run("operators", "enable", "ann@example.com", "nobody@example.com")
    assert result.returncode == 2
    assert "no operator with email nobody@example.com" in result.stderr
    ann = operator(db, "ann@example.com")
    assert ann is not None and ann["calendar_sync"] is False
    result = run("operators", "disable", "bob@example.com", "ghost@example.com", "--purge")
    assert result.returncode == 2
    bob = operator(db, "bob@example.com")
    assert bob is not None and bob["calendar_sync"] is True
    both = run("operators", "enable", "ANN@example.com", "bob@example.com")
    assert "enabled 1 operator(s); 1 already enabled" in both.stdout


def test_list_json_and_status_filter(run: Run, db: psycopg.Connection[Any]) -> None:
    run("operators", "add", "ann@example.com", "--name", "Ann")
    run("operators", "add", "bob@example.com", "--no-sync")
    everyone = json.loads(run("operators", "list", "--json").stdout)
    assert [(o["email"], o["calendar_sync"], o["status"]) for o in everyone] == [
        ("ann@example.com", True, "not_synced"),
        ("bob@example.com", False, "disabled"),
    ]
    disabled = json.loads(run("operators", "list", "--json", "--status", "disabled").stdout)
    assert [o["email"] for o in disabled] == ["bob@example.com"]
    text = run("operators", "list")
    assert "ann@example.com" in text.stdout and "Ann" in text.stdout
    assert run("operators", "list", "--status", "sleeping").returncode == 2
