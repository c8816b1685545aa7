"""Graph subscriptions in calsync.store.push against real Postgres: the life of one
subscription (validation, activation, notifications, renewals, lifecycle events, lapse,
cleanup at Graph) and what the listener's checks accept and refuse.

The listener's functions are async (it runs on one event loop); they run here on an
AsyncConnection of the same database, autocommit as in the listener.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.rows import dict_row

from calsync.push.callback import secret_hash
from calsync.store import lifecycle, push
from calsync.store.push import Verdict

Conn = psycopg.Connection[Any]
R = TypeVar("R")
URL = "https://crm.example.com/push"
S1, CS1 = secret_hash("secret-one-aaaaaaaaaaaa"), secret_hash("client-state-one")
S2, CS2 = secret_hash("secret-two-bbbbbbbbbbbb"), secret_hash("client-state-two")


@pytest.fixture
def db(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("DELETE FROM operators")
        conn.execute("DELETE FROM settings WHERE key = 'source'")
        yield conn


def run(database_url: str, fn: Any, *args: Any) -> Any:
    async def go() -> Any:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            return await fn(conn, *args)

    return asyncio.run(go())


def add_graph_operator(db: Conn, email: str) -> int:
    row = db.execute(
        "INSERT INTO operators (email, display_name, calendar_sync, source) VALUES (%s, %s, true, 'graph') RETURNING id",
        (email, email),
    ).fetchone()
    assert row is not None
    db.execute("UPDATE sync_state SET last_success_at = now() WHERE operator_id = %s", (row["id"],))
    return int(row["id"])


def sub(db: Conn, op: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT * FROM push_subscriptions WHERE operator_id = %s ORDER BY id DESC LIMIT 1", (op,)
    ).fetchone()
    assert row is not None
    return dict(row)


def status(db: Conn, op: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM push_status WHERE operator_id = %s", (op,)).fetchone()
    assert row is not None
    return dict(row)


def subscribe(db: Conn, op: int, secret: bytes, state: bytes, sub_id: str, minutes: float = 60) -> int:
    with db.transaction():
        row = push.begin_graph(db, op, "g@example.com", URL, secret, state)
    assert row is not None
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(minutes=minutes)
    with db.transaction():
        assert push.activate_graph(db, row, sub_id, expires, now + (expires - now) * 0.75)
    return row


def test_a_graph_subscription_from_validation_to_cleanup(db: Conn, database_url: str) -> None:
    op = add_graph_operator(db, "g@example.com")
    assert push.needing_graph_subscription(db, URL, 10) == [op]
    assert push.needing_graph_subscription(db, URL, 10) == []  # held while its subscribe waits
    # Validation: answered while the row is being made, not for another secret.
    with db.transaction():
        row = push.begin_graph(db, op, "g@example.com", URL, S1, CS1)
    assert row is not None
    assert run(database_url, push.graph_validation_allowed, S1)
    assert not run(database_url, push.graph_validation_allowed, S2)
    now = dt.datetime.now(dt.UTC)
    with db.transaction():
        assert push.activate_graph(db, row, "sub-1", now + dt.timedelta(hours=1), now + dt.timedelta(minutes=45))
    assert sub(db, op)["state"] == "active" and sub(db, op)["status_frequency_minutes"] is None

    # Change notifications: the right secret, clientState and id are recorded and owe a sync.
    heard = run(database_url, push.hear_graph, S1, "sub-1", CS1, 3)
    assert heard.verdict is Verdict.OK and heard.operator_id == op
    assert sub(db, op)["notifications"] == 1 and sub(db, op)["events"] == 3
    assert status(db, op)["last_event_at"] is not None
    # Forged: wrong clientState, unknown subscription id, unknown secret: nothing recorded.
    for args in ((S1, "sub-1", CS2), (S1, "sub-other", CS1), (S2, "sub-1", CS1)):
        assert run(database_url, push.hear_graph, *args, 1).verdict is Verdict.FORGED
    assert sub(db, op)["notifications"] == 1

    # Renewals: none due yet; due ones are handed out once (held), with their delay.
    assert push.renewals_due(db, 1.0, 10.0) == []
    db.execute("UPDATE push_subscriptions SET renew_at = now() + interval '0.5 second' WHERE id = %s", (row,))
    due = push.renewals_due(db, 1.0, 10.0)
    assert [r.row_id for r in due] == [row] and 0 < due[0].due_in <= 0.5
    assert push.renewals_due(db, 1.0, 10.0) == []
    later = now + dt.timedelta(hours=2)
    with db.transaction():
        assert push.renewed(db, row, later, later - dt.timedelta(minutes=20))
    assert sub(db, op)["renewals"] == 1 and sub(db, op)["expires_at"] == later

    # reauthorizationRequired: the renewal is due now and reauthorizes first.
    heard = run(database_url, push.graph_lifecycle, S1, "sub-1", CS1, "reauthorizationRequired")
    assert heard.verdict is Verdict.OK and heard.operator_id is None
    assert sub(db, op)["reauthorize"] and sub(db, op)["renew_at"] <= dt.datetime.now(dt.UTC)
    assert [r.row_id for r in push.renewals_due(db, 1.0, 10.0)] == [row]
    assert push.renewal_target(db, row)["reauthorize"] is True  # type: ignore[index]

    # A change of notification_url: a new subscription supersedes this one, which is deleted at Graph.
    assert push.needing_graph_subscription(db, URL + "/new", 10, hold_seconds=0) == [op]
    db.execute("UPDATE push_status SET next_subscribe_at = NULL")
    row2 = subscribe(db, op, S2, CS2, "sub-2")
    old = db.execute("SELECT * FROM push_subscriptions WHERE id = %s", (row,)).fetchone()
    assert old is not None and old["state"] == "superseded" and old["cleanup_at"] is not None
    assert push.cleanups_due(db, 10.0) == [row]
    assert push.cleanup_target(db, row)["subscription_id"] == "sub-1"  # type: ignore[index]
    push.cleaned(db, row)
    assert push.cleanups_due(db, 10.0) == []
    # The superseded subscription's late notifications: 202, nothing owed.
    heard = run(database_url, push.hear_graph, S1, "sub-1", CS1, 1)
    assert heard.verdict is Verdict.UNSUBSCRIBE
    assert run(database_url, push.graph_validation_allowed, S2) and not run(
        database_url, push.graph_validation_allowed, S1
    )

    # subscriptionRemoved: push is dead, the operator owes a sync, and is subscribed again at once.
    heard = run(database_url, push.graph_lifecycle, S2, "sub-2", CS2, "subscriptionRemoved")
    assert heard.verdict is Verdict.OK and heard.operator_id == op
    assert sub(db, op)["state"] == "dead" and sub(db, op)["end_reason"] == "subscriptionRemoved"
    assert status(db, op)["dead_since"] is not None
    assert push.needing_graph_subscription(db, URL, 10) == [op]
    assert push.fleet(db, 60.0)["by_mode"]["graph"]["dead"] == 1
    # The new subscription ends the dead episode (no keep-alive would).
    db.execute("UPDATE push_status SET next_subscribe_at = NULL")
    subscribe(db, op, secret_hash("secret-three-ccccccccc"), CS1, "sub-3")
    assert status(db, op)["dead_since"] is None
    assert row2 != sub(db, op)["id"]

    # Disabled: the subscription ends and is deleted at Graph.
    db.execute("UPDATE operators SET calendar_sync = false WHERE id = %s", (op,))
    assert push.end_disabled(db) == 1
    assert sub(db, op)["state"] == "ended" and sub(db, op)["cleanup_at"] is not None


def test_lapse_missed_and_health(db: Conn, database_url: str) -> None:
    op = add_graph_operator(db, "g@example.com")
    row = subscribe(db, op, S1, CS1, "sub-1")
    fleet = push.fleet(db, 60.0)
    assert fleet["by_mode"]["graph"] == {**fleet["by_mode"]["graph"], "subscribed": 1, "healthy": 1}
    assert fleet["healthy"] == 1  # Graph: active and not expired, with nothing ever heard
    # A healthy Graph subscription stretches the operator's polls to the safety interval.
    db.execute("UPDATE sync_state SET last_poll_at = now(), next_poll_at = now() + interval '5 minutes'")
    with db.transaction():
        lifecycle.push_after_finish(db, [op], 60.0, 60.0)
    nxt = db.execute("SELECT next_poll_at - last_poll_at AS d FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert nxt is not None and nxt["d"] >= dt.timedelta(minutes=59)

    # missed: a sync is owed now.
    db.execute("UPDATE push_status SET last_event_at = NULL")
    heard = run(database_url, push.graph_lifecycle, S1, "sub-1", CS1, "missed")
    assert heard.verdict is Verdict.OK and heard.operator_id == op and status(db, op)["last_event_at"] is not None
    # A lifecycle notification with a wrong clientState changes nothing.
    assert run(database_url, push.graph_lifecycle, S1, "sub-1", CS2, "subscriptionRemoved").verdict is Verdict.FORGED
    assert sub(db, op)["state"] == "active"

    # Expired without a renewal: lapsed, dead, no longer healthy; polls at the normal interval.
    db.execute("UPDATE push_subscriptions SET expires_at = now() - interval '1 second' WHERE id = %s", (row,))
    assert push.fleet(db, 60.0)["healthy"] == 0
    assert push.find_lapsed(db) == [op]
    assert sub(db, op)["end_reason"] == "lapsed" and status(db, op)["dead_since"] is not None
    db.execute("UPDATE sync_state SET last_poll_at = now(), next_poll_at = now() + interval '5 minutes'")
    with db.transaction():
        lifecycle.push_after_finish(db, [op], 60.0, 60.0)
    nxt = db.execute("SELECT next_poll_at - last_poll_at AS d FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert nxt is not None and nxt["d"] <= dt.timedelta(minutes=6)
    # One email per episode, after the notification frequency.
    db.execute("UPDATE push_status SET dead_since = now() - interval '1 hour'")
    assert len(push.dead_too_long(db, 30, 60.0)) == 1
    assert push.dead_too_long(db, 30, 60.0) == []


def test_a_failed_renewal_is_retried_and_a_404_kills(db: Conn) -> None:
    op = add_graph_operator(db, "g@example.com")
    row = subscribe(db, op, S1, CS1, "sub-1")
    push.renew_failed(db, row, "GraphUnavailable", 30.0)
    s = sub(db, op)
    assert s["renew_failures"] == 1 and s["state"] == "active"
    assert status(db, op)["last_error"] == "GraphUnavailable"
    assert push.graph_gone(db, row, "not found at renewal") == op
    assert sub(db, op)["state"] == "dead" and status(db, op)["dead_since"] is not None
    assert push.graph_gone(db, row, "again") is None
    # A new subscription after a change of the operator's email, too.
    db.execute("UPDATE push_status SET next_subscribe_at = NULL")
    subscribe(db, op, S2, CS2, "sub-2")
    assert push.needing_graph_subscription(db, URL, 10) == []
    db.execute("UPDATE operators SET email = 'renamed@example.com' WHERE id = %s", (op,))
    assert push.needing_graph_subscription(db, URL, 10) == [op]
    db.execute("UPDATE operators SET email = 'g@example.com' WHERE id = %s", (op,))
    db.execute("UPDATE push_status SET next_subscribe_at = NULL")
    # EWS push's subscription query leaves Graph operators alone, and the other way round.
    assert push.needing_subscription(db, URL, 5, 10) == []
    assert push.needing_graph_subscription(db, URL + "/other", 10) == [op]
