"""A mailbox failing past the timeout, and a lost sync state, driven through the task core in-process.

`run_step` is exactly what the `calsync.sync_batch` task runs; Celery would add only the
countdown between attempts, which here is replaced by moving the start of the failure
into the past in the database. Emails go to a real SMTP server.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from calsync.notify.catalogue import CATALOGUE
from calsync.runner.step import Step, enter, run_step
from calsync.runtime import current_settings, source_for
from calsync.simulator import Simulator, SimulatorServer, generate, mailbox_email
from calsync.tasks.notify import send_pending

from .conftest import Smtp, add_operators, configure

pytestmark = pytest.mark.usefixtures("clean_failures", "service_env", "clean_redis")


def lease(db: psycopg.Connection[Any], op: int) -> int:
    """What the dispatcher does for a due operator: a fresh fencing token."""
    row = db.execute(
        """
        UPDATE sync_state SET in_flight = true, prev_lease_token = NULL, lease_token = nextval('lease_token_seq'),
               lease_owner = 'dispatcher', lease_expires_at = now() + interval '10 minutes', next_poll_at = now()
         WHERE operator_id = %s RETURNING lease_token
        """,
        (op,),
    ).fetchone()
    assert row is not None
    return int(row["lease_token"])


def step_once(op: int, token: int | None) -> Step:
    """One chain step as the task runs it: the pause gate, then the batch (no Celery)."""
    settings = current_settings()
    return run_step(enter(settings, source_for(settings), "test", op, token), op, token)


def drive(db: psycopg.Connection[Any], op: int, token: int | None = None) -> Step:
    """Run a chain like the task does, until it ends, fails, waits or must retry."""
    token = lease(db, op) if token is None else token
    for _ in range(1000):
        step = step_once(op, token)
        if step.next_token is None:
            return step
        token = step.next_token
    raise AssertionError("chain did not end")


def state(db: psycopg.Connection[Any], op: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert row is not None
    return dict(row)


@pytest.fixture
def sim() -> Simulator:
    return generate(3, 25, seed=21)


@pytest.fixture
def server(sim: Simulator, serve: Any) -> SimulatorServer:
    srv: SimulatorServer = serve(sim)
    return srv


def test_failing_past_the_timeout_one_email_each_then_recovery(
    db: psycopg.Connection[Any], sim: Simulator, server: SimulatorServer, smtp: Smtp
) -> None:
    configure(server.ews_url, notification_frequency_minutes=1)
    ops = add_operators(db, [mailbox_email(n) for n in (1, 2, 3)])
    for op in ops:
        assert drive(db, op).outcome == "done"
    failing = ops[0]
    sim.add_fault({"kind": "http_503", "retry_after": 0, "mailbox": mailbox_email(1)})

    step = drive(db, failing)
    assert step.outcome == "retry" and step.retry_in is not None
    st = state(db, failing)
    assert (st["status"], st["last_error_code"], st["attempts"]) == ("retrying", "HttpUnavailable", 1)
    assert send_pending() == {"failures": 0, "recoveries": 0}, "no email before the timeout"

    # The first failure was two minutes ago: the timeout (1 minute) has passed.
    db.execute("UPDATE sync_state SET failing_since = now() - interval '2 minutes' WHERE operator_id = %s", (failing,))
    step = step_once(failing, step.retry_token)
    assert step.outcome == "failed"
    st = state(db, failing)
    assert (st["status"], st["last_error_code"], st["in_flight"]) == ("failed", "HttpUnavailable", False)

    assert send_pending()["failures"] == 1
    # Re-checked later and still failing: the same episode, no second email.
    assert drive(db, failing).outcome == "failed"
    assert send_pending() == {"failures": 0, "recoveries": 0}
    assert len(smtp.mails) == 1
    mail = smtp.mails[0]
    for address in ("ops@example.com", "crm-admin@example.com"):
        assert len(smtp.to(address)) == 1, f"exactly one email to {address}"
    entry = CATALOGUE["HttpUnavailable"]
    assert mail.sender == "calsync@example.com"
    assert mailbox_email(1) in mail.subject and "HttpUnavailable" in mail.subject
    for text in (entry.message, entry.fix, mailbox_email(1), "Since:", "Attempts:"):
        assert text in mail.body, text
    for op in ops[1:]:
        assert state(db, op)["status"] == "active", "the other operators are untouched"

    sim.clear_faults()
    assert drive(db, failing).outcome == "done"
    st = state(db, failing)
    assert (st["status"], st["last_error_code"], st["failing_since"], st["attempts"]) == ("active", None, None, 0)
    assert send_pending() == {"failures": 0, "recoveries": 1}
    assert len(smtp.mails) == 2
    recovery = smtp.mails[1]
    assert "working again" in recovery.subject and mailbox_email(1) in recovery.body
    assert sorted(recovery.recipients) == ["crm-admin@example.com", "ops@example.com"]
    assert send_pending() == {"failures": 0, "recoveries": 0}


def test_blip_healing_before_the_timeout_sends_nothing(
    db: psycopg.Connection[Any], sim: Simulator, server: SimulatorServer, smtp: Smtp
) -> None:
    configure(server.ews_url, notification_frequency_minutes=30)
    (op,) = add_operators(db, [mailbox_email(2)])
    sim.add_fault({"kind": "server_busy_fault", "back_off_ms": 1, "count": 1, "mailbox": mailbox_email(2)})
    step = drive(db, op)
    assert step.outcome == "retry" and state(db, op)["status"] == "retrying"
    step = step_once(op, step.retry_token)
    while step.next_token is not None:
        step = step_once(op, step.next_token)
    assert step.outcome == "done" and state(db, op)["status"] == "active"
    assert send_pending() == {"failures": 0, "recoveries": 0}
    assert smtp.mails == []


def test_invalid_sync_state_resyncs_without_duplicates_and_removes_deleted(
    db: psycopg.Connection[Any], sim: Simulator, server: SimulatorServer, smtp: Smtp
) -> None:
    configure(server.ews_url, batch_size=7)
    email = mailbox_email(3)
    (op,) = add_operators(db, [email])
    assert drive(db, op).outcome == "done"
    singles = [
        r["item_id"]
        for r in db.execute(
            "SELECT item_id FROM appointments WHERE operator_id = %s AND kind = 'single' ORDER BY item_id", (op,)
        ).fetchall()
    ]
    before = db.execute("SELECT count(*) AS n FROM appointments WHERE operator_id = %s", (op,)).fetchone()
    deleted = singles[:3]
    for item_id in deleted:
        sim.delete_item(email, item_id)
    sim.add_fault({"kind": "invalid_sync_state", "count": 1, "mailbox": email})

    assert drive(db, op).outcome == "done"
    assert sim.get_stats()["faults_injected"].get("invalid_sync_state") == 1
    st = state(db, op)
    assert (st["status"], st["stage"], st["generation"]) == ("active", "incremental", 1), "a resync ran"
    dupes = db.execute(
        "SELECT count(*) AS n FROM (SELECT uid, original_start FROM appointments WHERE operator_id = %s "
        "GROUP BY uid, original_start HAVING count(*) > 1) d",
        (op,),
    ).fetchone()
    assert dupes == {"n": 0}
    after = db.execute("SELECT count(*) AS n FROM appointments WHERE operator_id = %s", (op,)).fetchone()
    assert before is not None and after is not None and after["n"] == before["n"] - 3
    gone = db.execute("SELECT count(*) AS n FROM appointments WHERE item_id = ANY(%s)", (deleted,)).fetchone()
    assert gone == {"n": 0}, "items deleted while the state was lost are removed by the resync"
    assert send_pending() == {"failures": 0, "recoveries": 0} and smtp.mails == [], "a resync is no failure"
