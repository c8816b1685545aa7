"""Every error in a batch ends classified, recorded and shown; a time limit gives the lease back.

Before issue 13 an exception raised outside the EWS adapter (planning, conversion, the write)
left the operator in flight with no code until its lease expired, again and again, with no
email and `calsync status` exiting 0. Now it is an UnexpectedError: retried like a transient
failure, visible at once, failed with one email after the notification frequency.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from calsync import celery_procs
from calsync.cli.status import status
from calsync.notify.catalogue import CATALOGUE
from calsync.runner import batch as batch_module
from calsync.simulator import Simulator, SimulatorServer, generate, mailbox_email
from calsync.tasks.notify import send_pending

from .conftest import Smtp, add_operators, configure, purge_queues, wait_for
from .test_timeout_and_resync import drive, state, step_once

pytestmark = pytest.mark.usefixtures("clean_failures", "service_env", "clean_redis")


def test_a_bug_outside_the_adapter_is_classified_shown_and_emailed(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer], smtp: Smtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = generate(2, 12, seed=5)
    server = serve(sim)
    configure(server.ews_url, notification_frequency_minutes=1, poll_interval_minutes=60)
    broken_op, healthy_op = add_operators(db, [mailbox_email(1), mailbox_email(2)])
    real = batch_module.plan_batch

    def planning_bug(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("'<' not supported between instances of 'NoneType' and 'datetime.datetime'")

    monkeypatch.setattr(batch_module, "plan_batch", planning_bug)
    step = drive(db, broken_op)
    assert step.outcome == "retry" and step.retry_token is not None
    st = state(db, broken_op)
    assert (st["status"], st["last_error_code"]) == ("retrying", "UnexpectedError")
    assert "TypeError" in st["last_error_message"] and st["in_flight"] is True
    assert st["last_success_at"] is None

    report = json.loads(CliRunner().invoke(status, ["--json", "--no-broker"]).output)
    [shown] = report["retrying"]
    assert (shown["email"], shown["code"]) == (mailbox_email(1), "UnexpectedError")
    assert shown["fix"] == CATALOGUE["UnexpectedError"].fix and "TypeError" in shown["detail"]
    assert "RETRYING " + mailbox_email(1) in CliRunner().invoke(status, ["--no-broker"]).output

    monkeypatch.setattr(batch_module, "plan_batch", real)
    assert drive(db, healthy_op).outcome == "done", "the other operator is not affected"

    monkeypatch.setattr(batch_module, "plan_batch", planning_bug)
    db.execute(
        "UPDATE sync_state SET failing_since = now() - interval '2 minutes' WHERE operator_id = %s", (broken_op,)
    )
    assert step_once(broken_op, step.retry_token).outcome == "failed"
    assert state(db, broken_op)["status"] == "failed" and state(db, broken_op)["in_flight"] is False
    assert send_pending()["failures"] == 1
    [mail] = smtp.wait(1)
    assert "UnexpectedError" in mail.subject and CATALOGUE["UnexpectedError"].fix in mail.body
    result = CliRunner().invoke(status, ["--no-broker"])
    assert result.exit_code == 1 and "FAILED " + mailbox_email(1) in result.output

    monkeypatch.setattr(batch_module, "plan_batch", real)
    assert drive(db, broken_op).outcome == "done", "once the bug is gone the operator syncs and recovers"
    assert state(db, broken_op)["status"] == "active"


def test_a_soft_time_limit_gives_the_lease_back_with_a_code(
    db: psycopg.Connection[Any],
    serve: Callable[..., SimulatorServer],
    tmp_path: Path,
    database_url: str,
    redis_url: str,
) -> None:
    """A real prefork worker (Celery enforces time limits with signals there): the batch stuck
    on a slow Exchange is stopped by the soft limit and releases its lease at once, instead of
    holding the operator until the lease expires."""
    sim: Simulator = generate(2, 10, seed=8)
    server = serve(sim)
    configure(server.ews_url, notification_frequency_minutes=30, poll_interval_minutes=60)
    slow_op, fast_op = add_operators(db, [mailbox_email(1), mailbox_email(2)])
    sim.add_fault(
        {"kind": "latency", "latency_ms": 90_000, "mailbox": mailbox_email(1), "operation": "SyncFolderItems"}
    )
    purge_queues()
    env = {
        "CALSYNC_DATABASE_URL": database_url,
        "CALSYNC_REDIS_URL": redis_url,
        "CALSYNC_EWS_USERNAME": "svc-calsync",
        "CALSYNC_EWS_PASSWORD": "Simulat0r!",
    }
    log = tmp_path / "worker.log"
    worker = celery_procs.start_worker(
        f"prefork-{os.getpid()}", env, concurrency=1, pool="prefork", log_file=log, loglevel="INFO"
    )
    try:
        from calsync.tasks.sync import sync_batch

        sync_batch.apply_async((slow_op, None), soft_time_limit=3, time_limit=30)
        wait_for(
            lambda: state(db, slow_op)["last_error_code"] == "TaskTimeLimit", 60, "the soft time limit to strike"
        )  # well before the 90 s answer could have arrived
        st = state(db, slow_op)
        assert st["in_flight"] is False and st["lease_owner"] is None, "the lease is given back at once"
        assert st["status"] == "retrying" and st["attempts"] == 1
        assert st["next_poll_at"] is not None
        sync_batch.apply_async((fast_op, None))
        wait_for(lambda: state(db, fast_op)["status"] == "active", 60, "the worker to go on with the next operator")
    finally:
        celery_procs.stop(worker)


def test_an_item_without_readable_times_is_set_aside_and_the_rest_syncs(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    """exchangelib leaves a Start or End it cannot parse empty (here: valid xs:dateTime with
    milliseconds). The adapter refuses that item alone with ItemWithoutTimes; the mailbox's
    other items are mirrored, the operator ends in sync, `calsync status` names the item,
    and the item is synced at its next change."""
    sim = generate(2, 16, seed=5)
    server = serve(sim)
    configure(server.ews_url, poll_interval_minutes=60, batch_size=4)
    op, other = add_operators(db, [mailbox_email(1), mailbox_email(2)])
    sim.add_fault({"kind": "fractional_seconds", "mailbox": mailbox_email(1), "operation": "GetItem", "count": 1})

    assert drive(db, op).outcome == "done"
    assert drive(db, other).outcome == "done"
    assert state(db, op)["status"] == "active" and state(db, op)["last_error_code"] is None
    refused = db.execute(
        "SELECT item_id, code, reason FROM refused_items WHERE operator_id = %s ORDER BY item_id", (op,)
    ).fetchall()
    assert refused, "the first GetItem's items were set aside"
    assert {r["code"] for r in refused} == {"ItemWithoutTimes"} and "Start" in refused[0]["reason"]
    mirrored = {r["item_id"] for r in db.execute("SELECT item_id FROM appointments WHERE operator_id = %s", (op,))}
    assert mirrored, "the rest of the mailbox is mirrored"
    assert not mirrored & {r["item_id"] for r in refused}
    assert db.execute("SELECT count(*) AS n FROM refused_items WHERE operator_id = %s", (other,)).fetchone() == {"n": 0}

    result = CliRunner().invoke(status, ["--no-broker", mailbox_email(1)])
    assert result.exit_code == 0, "an item set aside is no failure of the operator"
    assert f"SET ASIDE {mailbox_email(1)} item {refused[0]['item_id']}: ItemWithoutTimes" in result.output
    assert CATALOGUE["ItemWithoutTimes"].fix in result.output

    # The user saves the item again: its next change brings it in, readable this time.
    again = refused[0]["item_id"]
    sim.update_item(mailbox_email(1), again, {"subject": "Saved again"})
    db.execute("UPDATE sync_state SET next_poll_at = now() WHERE operator_id = %s", (op,))
    assert drive(db, op).outcome == "done"
    row = db.execute("SELECT subject FROM appointments WHERE operator_id = %s AND item_id = %s", (op, again)).fetchone()
    assert row == {"subject": "Saved again"}
    left = {r["item_id"] for r in db.execute("SELECT item_id FROM refused_items WHERE operator_id = %s", (op,))}
    assert again not in left and left == {r["item_id"] for r in refused} - {again}
