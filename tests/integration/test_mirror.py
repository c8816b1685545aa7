"""Issue 3: one operator's mirror in Postgres equals Exchange, first in full then change by change.

Real Postgres, the simulator over HTTP (schema-validated) and the real exchangelib.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from calsync.runner.batch import run_batch
from calsync.simulator import Simulator
from calsync.source.ews.source import EwsSource
from tests.conftest import CALSYNC
from tests.integration.conftest import now_utc, sync_to_end
from tests.integration.truth import diff, expected_rows, mirror_rows


def mailbox(sim: Simulator, index: int = 0) -> str:
    return str(sorted(m["email"] for m in sim.list_mailboxes())[index])


def assert_mirror_exact(db: psycopg.Connection[Any], sim: Simulator, email: str, op: int) -> None:
    expected = expected_rows(sim.list_items(email), now_utc())
    problems = diff(expected, mirror_rows(db, op))
    assert not problems, f"{len(problems)} differences, first: {problems[:10]}"


def test_first_sync_equals_truth_field_by_field(
    db: psycopg.Connection[Any], sim: Simulator, source: EwsSource, configure: Callable[..., None],
    add_operator: Callable[[str], int],
) -> None:  # fmt: skip
    configure(batch_size=100)
    email = mailbox(sim)
    op = add_operator(email)
    outcomes = sync_to_end(source, op)
    assert len(outcomes) > 1, "a 300-item mailbox at batch size 100 takes several batches"
    assert_mirror_exact(db, sim, email, op)
    rows = mirror_rows(db, op)
    # The generated calendar has what the window must cut, and what it must keep.
    assert any(r["is_all_day"] for r in rows.values())
    assert any(r["details_withheld"] for r in rows.values())
    assert any(r["kind"] == "series" for r in rows.values())
    assert any(r["kind"] == "occurrence" for r in rows.values())
    items = [r for r in rows.values() if r["kind"] in ("single", "series")]
    assert len(items) < len(sim.list_items(email)), "items older than the past window must be left out"
    state = db.execute("SELECT stage, status, ews_sync_state FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert state is not None
    assert (state["stage"], state["status"]) == ("incremental", "active")
    assert state["ews_sync_state"]
    runs = db.execute("SELECT status, batches FROM sync_runs WHERE operator_id = %s", (op,)).fetchall()
    assert runs == [{"status": "succeeded", "batches": len(outcomes)}], "one audit row per run, all batches in it"


def test_incremental_changes_appear_and_nothing_else_changes(
    db: psycopg.Connection[Any], sim: Simulator, source: EwsSource, configure: Callable[..., None],
    add_operator: Callable[[str], int],
) -> None:  # fmt: skip
    email = mailbox(sim)
    op = add_operator(email)
    sync_to_end(source, op)
    before = {r["item_id"]: r["synced_at"] for r in db.execute("SELECT item_id, synced_at FROM appointments")}
    future = [
        it for it in sim.list_items(email)
        if it["recurrence"] is None and dt.datetime.fromisoformat(it["start"]) > now_utc() and not it["is_cancelled"]
    ]  # fmt: skip
    updated, cancelled, deleted = future[0], future[1], future[2]
    sim.update_item(email, updated["id"], {"subject": "Moved to Thursday", "location": "Room 7"})
    sim.cancel_item(email, cancelled["id"])
    sim.delete_item(email, deleted["id"])
    start = (now_utc() + dt.timedelta(days=3)).replace(microsecond=0)
    created = sim.create_item(
        email,
        {
            "subject": "New customer call",
            "start": start.isoformat(),
            "end": (start + dt.timedelta(minutes=45)).isoformat(),
            "timezone": "Europe/Berlin",
            "required_attendees": [{"email": "buyer@customer.example", "name": "Buyer", "response": "Unknown"}],
        },
    )
    outcomes = sync_to_end(source, op)
    assert sum(o.created for o in outcomes) == 1
    assert sum(o.updated for o in outcomes) == 2
    assert sum(o.deleted for o in outcomes) == 1
    assert_mirror_exact(db, sim, email, op)
    after = {r["item_id"]: r["synced_at"] for r in db.execute("SELECT item_id, synced_at FROM appointments")}
    touched = {updated["id"], cancelled["id"], deleted["id"], created["id"]}
    assert {k: v for k, v in after.items() if k not in touched} == {
        k: v for k, v in before.items() if k not in touched
    }, "rows that did not change in Exchange must not be written"
    row = db.execute("SELECT is_cancelled FROM appointments WHERE item_id = %s", (cancelled["id"],)).fetchone()
    assert row is not None and row["is_cancelled"] is True, "a cancelled meeting stays, flagged cancelled"


def test_a_batch_run_twice_or_replayed_after_commit_changes_nothing(
    db: psycopg.Connection[Any], sim: Simulator, source: EwsSource, configure: Callable[..., None],
    add_operator: Callable[[str], int],
) -> None:  # fmt: skip
    configure(batch_size=50)
    email = mailbox(sim)
    op = add_operator(email)
    first = run_batch(source, op, None, "worker-a")
    snapshot = db.execute("SELECT item_id, change_key, synced_at FROM appointments ORDER BY item_id").fetchall()
    # The worker died after its commit and before handing on: the same message comes back.
    db.execute("UPDATE sync_state SET ews_sync_state = NULL, stage = 'initial' WHERE operator_id = %s", (op,))
    replay = run_batch(source, op, first.token, "worker-b")
    assert replay.created == 0 and replay.updated == 0
    assert db.execute("SELECT item_id, change_key, synced_at FROM appointments ORDER BY item_id").fetchall() == snapshot
    token = replay.token
    while True:
        outcome = run_batch(source, op, token, "worker-b")
        written = {r["item_id"]: r for r in db.execute("SELECT item_id, change_key, synced_at FROM appointments")}
        # The same message delivered again after its commit: it may go on with the next page,
        # but nothing already written is written again.
        again = run_batch(source, op, token, "worker-c")
        now = {r["item_id"]: r for r in db.execute("SELECT item_id, change_key, synced_at FROM appointments")}
        assert {k: now[k] for k in written} == written
        token = again.token if again.skipped_reason is None else outcome.token
        if not (outcome.more and again.more):
            break
    sync_to_end(source, op)
    assert_mirror_exact(db, sim, email, op)
    dupes = db.execute("SELECT item_id FROM appointments GROUP BY operator_id, item_id HAVING count(*) > 1").fetchall()
    assert dupes == []


def test_stale_lease_token_cannot_write(
    db: psycopg.Connection[Any], sim: Simulator, source: EwsSource, configure: Callable[..., None],
    add_operator: Callable[[str], int],
) -> None:  # fmt: skip
    configure(batch_size=50)
    op = add_operator(mailbox(sim))
    first = run_batch(source, op, None, "a")
    second = run_batch(source, op, first.token, "a")
    stale = run_batch(source, op, first.token - 1 if first.token else None, "zombie")
    assert stale.skipped_reason and stale.created == 0
    assert second.token is not None


@pytest.mark.parametrize("size", [1, 7, 512])
def test_batch_sizes_give_identical_mirrors(
    size: int, db: psycopg.Connection[Any], sim: Simulator, source: EwsSource, configure: Callable[..., None],
    add_operator: Callable[[str], int],
) -> None:  # fmt: skip
    configure(batch_size=size)
    email = mailbox(sim, 1)
    op = add_operator(email)
    outcomes = sync_to_end(source, op)
    items = len(sim.list_items(email))
    assert len(outcomes) == max(1, -(-items // size)) or size == 512
    assert_mirror_exact(db, sim, email, op)


@pytest.mark.parametrize("bad", ["0", "513"])
def test_batch_size_outside_range_is_refused(bad: str, db: psycopg.Connection[Any]) -> None:
    proc = subprocess.run([CALSYNC, "settings", "set", "batch_size", bad], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "batch_size" in proc.stderr and "1 to 512" in proc.stderr
    assert db.execute("SELECT count(*) AS n FROM settings WHERE key = 'batch_size'").fetchone() == {"n": 0}


def test_invalid_sync_state_mid_life_converges_without_duplicates(
    db: psycopg.Connection[Any], sim: Simulator, source: EwsSource, configure: Callable[..., None],
    add_operator: Callable[[str], int],
) -> None:  # fmt: skip
    configure(batch_size=40)
    email = mailbox(sim, 2)
    op = add_operator(email)
    sync_to_end(source, op)
    future = [it for it in sim.list_items(email) if dt.datetime.fromisoformat(it["end"]) > now_utc()]
    for it in future[:5]:
        sim.delete_item(email, it["id"])
    sim.update_item(email, future[5]["id"], {"subject": "Changed while the state was lost"})
    sim.reset_sync_states(email)  # as a mailbox move does: every earlier SyncState is now invalid
    token: int | None = None
    resynced = False
    for _ in range(1000):
        outcome = run_batch(source, op, token, "test")
        resynced |= outcome.resync_started
        dupes = db.execute(
            "SELECT count(*) AS n FROM (SELECT uid FROM appointments WHERE operator_id = %s AND kind = 'single' "
            "GROUP BY uid HAVING count(*) > 1) d",
            (op,),
        ).fetchone()
        assert dupes == {"n": 0}, "a reader must never see an appointment twice"
        if not outcome.more:
            break
        token = outcome.token
    assert resynced
    assert_mirror_exact(db, sim, email, op)
    gone = db.execute(
        "SELECT count(*) AS n FROM appointments WHERE item_id = ANY(%s)", ([it["id"] for it in future[:5]],)
    ).fetchone()
    assert gone == {"n": 0}, "items deleted while the state was invalid are removed by the resync"


def test_truncated_answer_is_refused_and_nothing_is_lost(
    db: psycopg.Connection[Any], sim: Simulator, source: EwsSource, configure: Callable[..., None],
    add_operator: Callable[[str], int],
) -> None:  # fmt: skip
    from calsync.runner.batch import BatchFailed

    configure(batch_size=100)
    email = mailbox(sim)
    op = add_operator(email)
    first = run_batch(source, op, None, "w")
    cursor = db.execute("SELECT ews_sync_state FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    sim.add_fault({"kind": "truncated_body", "count": 1, "operation": "SyncFolderItems"})
    with pytest.raises(BatchFailed) as failed:
        run_batch(source, op, first.token, "w")
    assert failed.value.error.code == "TruncatedResponse"
    after = db.execute("SELECT ews_sync_state FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert after == cursor, "a partial page never advances the SyncState"
    token = failed.value.token
    while True:
        outcome = run_batch(source, op, token, "w")
        if not outcome.more:
            break
        token = outcome.token
    assert_mirror_exact(db, sim, email, op)
