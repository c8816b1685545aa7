"""Every transition of calsync.store.lifecycle against real Postgres, one test each.

Each test arranges a sync_state row, runs one transition, and checks the status, stage and
lease columns before and after. Every function that takes a lease token also gets a stale
token (one the dispatcher's re-claim or a renewal replaced): it must write nothing, which
is checked by comparing the whole row (and the run row) before and after.

The `db` connection is autocommit: each lifecycle call is its own transaction, except where
a test opens one to see what the callers (calsync.runner.batch) see.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from calsync.store import lifecycle as lc
from calsync.store.lifecycle import LeaseLost, PageCounts, QuietPoll, Stage, Status

Conn = psycopg.Connection[Any]
LEASE = 600.0
SECOND = dt.timedelta(seconds=1)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def db(database_url: str) -> Iterator[Conn]:
    """tests/conftest.py's `db`, cleaned more cheaply: these tests write only operators and
    what cascades from them (sync_state, sync_runs, appointments, resync_seen), and a DELETE
    of a few rows costs milliseconds where a TRUNCATE of every table costs a good part of
    a second on a busy machine."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("DELETE FROM operators")
        yield conn


def add_operator(db: Conn, email: str, calendar_sync: bool = True, due: bool = False) -> int:
    """An operator as the CRM adds it (the insert trigger creates its sync_state row, due now).

    Not due unless asked: `claim` claims one operator at a time, and claim_due takes every
    due one.
    """
    row = db.execute(
        "INSERT INTO operators (email, display_name, calendar_sync) VALUES (%s, %s, %s) RETURNING id",
        (email, email.split("@")[0], calendar_sync),
    ).fetchone()
    assert row is not None
    op = int(row["id"])
    if not due:
        arrange(db, op, next_poll_at=now(db) + dt.timedelta(days=1))
    return op


def state(db: Conn, op: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert row is not None
    return dict(row)


def run_row(db: Conn, run_id: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM sync_runs WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    return dict(row)


def arrange(db: Conn, op: int, **cols: Any) -> None:
    """Put a row into a state the test needs (a test fixture's write, not a transition)."""
    sets = ", ".join(f"{k} = %({k})s" for k in cols)
    db.execute(f"UPDATE sync_state SET {sets} WHERE operator_id = %(op)s", {**cols, "op": op})


def now(db: Conn) -> dt.datetime:
    row = db.execute("SELECT now() AS t").fetchone()
    assert row is not None
    return row["t"]


def claim(db: Conn, op: int) -> int:
    """The dispatcher's claim of this one operator; returns its token."""
    arrange(db, op, next_poll_at=now(db) - SECOND)
    claims = {c.operator_id: c for c in lc.claim_due(db, 0.0, LEASE, 1000)}
    assert op in claims
    return claims[op].token


def renewed(db: Conn, op: int, token: int | None, owner: str = "worker") -> lc.OperatorState:
    got = lc.renew(db, op, token, owner, LEASE)
    assert got is not None
    return got


def in_sync(db: Conn, op: int, cursor: str = "cursor-1") -> None:
    """An operator that completed its first sync: incremental, active, with a cursor."""
    arrange(
        db, op, stage=Stage.INCREMENTAL, status=Status.ACTIVE, ews_sync_state=cursor,
        last_success_at=now(db) - dt.timedelta(minutes=5),
    )  # fmt: skip


def leased_run(db: Conn, op: int) -> tuple[int, int]:
    """Claimed, renewed by a first batch, run row created: (token, run id)."""
    token = claim(db, op)
    st = renewed(db, op, token)
    run_id = lc.start_run(db, st)
    return st.lease_token, run_id


def add_appointment(db: Conn, op: int, item_id: str = "item-1") -> None:
    db.execute(
        "INSERT INTO appointments (operator_id, item_id, change_key, kind, start_at, end_at) "
        "VALUES (%s, %s, 'ck', 'single', now(), now() + interval '1 hour')",
        (op, item_id),
    )


def seen(db: Conn, op: int, generation: int, *items: str) -> None:
    for item in items:
        db.execute(
            "INSERT INTO resync_seen (operator_id, generation, item_id) VALUES (%s, %s, %s)", (op, generation, item)
        )


def seen_count(db: Conn, op: int) -> int:
    row = db.execute("SELECT count(*) AS n FROM resync_seen WHERE operator_id = %s", (op,)).fetchone()
    assert row is not None
    return int(row["n"])


def runs(db: Conn) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute("SELECT * FROM sync_runs ORDER BY id")]


def row_locked(database_url: str, op: int) -> bool:
    """True when another transaction holds the row lock of this operator's sync_state."""
    with psycopg.connect(database_url, row_factory=dict_row) as other:
        try:
            other.execute("SELECT 1 FROM sync_state WHERE operator_id = %s FOR UPDATE NOWAIT", (op,))
        except psycopg.errors.LockNotAvailable:
            return True
        return False


# ---------------------------------------------------------------------------------------------
# claim_due
# ---------------------------------------------------------------------------------------------


def test_claim_due_takes_a_due_operator(db: Conn) -> None:
    op = add_operator(db, "a@example.com", due=True)
    before = state(db, op)
    assert (before["status"], before["stage"], before["in_flight"], before["lease_token"]) == (
        Status.NOT_SYNCED, Stage.INITIAL, False, None,
    )  # fmt: skip
    t0 = now(db)
    [c] = lc.claim_due(db, 0.0, LEASE, 10)
    after = state(db, op)
    assert c == lc.Claim(op, after["lease_token"], False)
    assert after["in_flight"] and after["lease_owner"] == "dispatcher" and after["prev_lease_token"] is None
    assert t0 + dt.timedelta(seconds=LEASE) <= after["lease_expires_at"] <= now(db) + dt.timedelta(seconds=LEASE)
    assert after["last_poll_at"] >= t0
    # The claim does not change what the administrator sees: the first batch does.
    assert (after["status"], after["stage"]) == (Status.NOT_SYNCED, Stage.INITIAL)


def test_claim_due_marks_only_healthy_incremental_operators_quiet(db: Conn) -> None:
    quiet, failing, first = (add_operator(db, f"{n}@example.com", due=True) for n in ("quiet", "failing", "first"))
    in_sync(db, quiet)
    in_sync(db, failing)
    arrange(db, failing, failing_since=now(db))
    claims = {c.operator_id: c.quiet for c in lc.claim_due(db, 0.0, LEASE, 10)}
    assert claims == {quiet: True, failing: False, first: False}


def test_claim_due_leaves_operators_not_due(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    arrange(db, op, next_poll_at=now(db) + dt.timedelta(seconds=20))
    before = state(db, op)
    assert lc.claim_due(db, 0.0, LEASE, 10) == []
    assert state(db, op) == before
    # Within the slack it is due.
    assert [c.operator_id for c in lc.claim_due(db, 30.0, LEASE, 10)] == [op]


def test_claim_due_leaves_disabled_operators(db: Conn) -> None:
    op = add_operator(db, "a@example.com", calendar_sync=False, due=True)
    before = state(db, op)
    assert before["status"] == Status.DISABLED
    assert lc.claim_due(db, 0.0, LEASE, 10) == []
    assert state(db, op) == before


def test_claim_due_leaves_a_live_lease(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    claim(db, op)
    before = state(db, op)
    assert lc.claim_due(db, 3600.0, LEASE, 10) == []
    assert state(db, op) == before


def test_claim_due_takes_over_an_expired_lease_and_forgets_older_tokens(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    old = claim(db, op)
    newer = renewed(db, op, old).lease_token  # prev = old, lease = newer
    arrange(db, op, lease_expires_at=now(db) - SECOND)
    [c] = lc.claim_due(db, 0.0, LEASE, 10)
    after = state(db, op)
    assert c.token == after["lease_token"] > newer
    assert after["prev_lease_token"] is None and after["in_flight"]
    # Neither token of the expired holder may continue.
    for stale in (old, newer):
        frozen = state(db, op)
        assert lc.renew(db, op, stale, "zombie", LEASE) is None
        assert state(db, op) == frozen


def test_claim_due_says_which_claims_take_over_an_expired_lease(db: Conn) -> None:
    """The dispatcher counts these: each is a message that outlived its lease (backpressure)."""
    stale = add_operator(db, "stale@example.com")
    claim(db, stale)
    fresh = add_operator(db, "fresh@example.com", due=True)
    arrange(db, stale, lease_expires_at=now(db) - SECOND, next_poll_at=now(db) - SECOND)
    claims = {c.operator_id: c.reclaimed for c in lc.claim_due(db, 0.0, LEASE, 10)}
    assert claims == {fresh: False, stale: True}


def test_claim_due_respects_limit_in_due_order(db: Conn) -> None:
    ops = [add_operator(db, f"{n}@example.com") for n in range(3)]
    t = now(db)
    for i, op in enumerate(ops):
        arrange(db, op, next_poll_at=t - dt.timedelta(minutes=10 - i))
    assert [c.operator_id for c in lc.claim_due(db, 0.0, LEASE, 2)] == ops[:2]
    assert not state(db, ops[2])["in_flight"]


# ---------------------------------------------------------------------------------------------
# renew
# ---------------------------------------------------------------------------------------------


def test_renew_without_token_takes_a_free_lease_and_starts_the_first_sync(db: Conn) -> None:
    op = add_operator(db, "A@example.com")
    before = state(db, op)
    assert (before["status"], before["in_flight"], before["last_poll_at"]) == (Status.NOT_SYNCED, False, None)
    st = renewed(db, op, None, owner="worker-1")
    after = state(db, op)
    assert st == lc.OperatorState(op, "A@example.com", None, Stage.INITIAL, Status.INITIAL_SYNC, 0,
                                  after["lease_token"], None)  # fmt: skip
    assert (after["status"], after["stage"]) == (Status.INITIAL_SYNC, Stage.INITIAL)
    assert after["in_flight"] and after["lease_owner"] == "worker-1" and after["lease_expires_at"] > now(db)
    assert after["last_poll_at"] is not None


def test_renew_without_token_refuses_a_live_lease(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    claim(db, op)
    before = state(db, op)
    assert lc.renew(db, op, None, "intruder", LEASE) is None
    assert state(db, op) == before


def test_renew_without_token_takes_an_expired_lease(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    old = claim(db, op)
    arrange(db, op, lease_expires_at=now(db) - SECOND)
    st = renewed(db, op, None, owner="rescuer")
    after = state(db, op)
    assert st.lease_token == after["lease_token"] > old
    assert after["lease_owner"] == "rescuer" and after["lease_expires_at"] > now(db)


def test_renew_without_token_refuses_the_expired_holders_token_afterwards(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    old = claim(db, op)
    arrange(db, op, lease_expires_at=now(db) - SECOND)
    renewed(db, op, None, owner="rescuer")
    before = state(db, op)
    assert lc.renew(db, op, old, "zombie", LEASE) is None
    assert state(db, op) == before


def test_renew_with_the_current_token_hands_out_a_new_one(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    before = state(db, op)
    arrange(db, op, lease_expires_at=now(db) + SECOND)
    st = renewed(db, op, token, owner="worker-2")
    after = state(db, op)
    assert st.lease_token == after["lease_token"] > token
    assert after["prev_lease_token"] == token
    assert after["lease_owner"] == "worker-2"
    assert after["lease_expires_at"] > now(db) + dt.timedelta(seconds=LEASE - 60)
    assert (after["status"], after["stage"]) == (Status.INITIAL_SYNC, Stage.INITIAL)
    # Only a batch taking a free lease counts as a poll; a renewal keeps the claim's time.
    assert after["last_poll_at"] == before["last_poll_at"]


def test_renew_keeps_the_status_of_a_synced_or_failing_operator(db: Conn) -> None:
    active, retrying = add_operator(db, "a@example.com"), add_operator(db, "r@example.com")
    in_sync(db, active)
    arrange(db, retrying, status=Status.RETRYING)
    assert renewed(db, active, claim(db, active)).status == Status.ACTIVE
    st = renewed(db, retrying, claim(db, retrying))
    assert (st.status, st.stage) == (Status.RETRYING, Stage.INITIAL)


def test_renew_accepts_the_previous_token(db: Conn) -> None:
    """A batch delivered again after it committed continues with the token it was given."""
    op = add_operator(db, "a@example.com")
    t1 = claim(db, op)
    t2 = renewed(db, op, t1).lease_token
    st = renewed(db, op, t1, owner="redelivered")
    after = state(db, op)
    assert st.lease_token == after["lease_token"] > t2
    assert after["prev_lease_token"] == t2  # and t1 is now older: refused from here on
    assert lc.renew(db, op, t1, "again", LEASE) is None


def test_renew_refuses_an_older_token(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    t1 = claim(db, op)
    t2 = renewed(db, op, t1).lease_token
    renewed(db, op, t2)
    before = state(db, op)
    assert lc.renew(db, op, t1, "zombie", LEASE) is None
    assert state(db, op) == before


def test_renew_refuses_a_token_from_before_a_reclaim(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    old = claim(db, op)
    arrange(db, op, lease_expires_at=now(db) - SECOND)
    claim(db, op)
    before = state(db, op)
    assert lc.renew(db, op, old, "zombie", LEASE) is None
    assert state(db, op) == before


def test_renew_refuses_a_disabled_operator(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    # The CRM switched the flag off; reconcile has not run yet: the flag alone refuses.
    db.execute("UPDATE operators SET calendar_sync = false WHERE id = %s", (op,))
    before = state(db, op)
    assert lc.renew(db, op, token, "worker", LEASE) is None
    assert lc.renew(db, op, None, "worker", LEASE) is None
    assert state(db, op) == before


# ---------------------------------------------------------------------------------------------
# leased
# ---------------------------------------------------------------------------------------------


def test_leased_returns_the_claims_in_order_with_current_flag(db: Conn) -> None:
    a, b = add_operator(db, "a@example.com"), add_operator(db, "b@example.com")
    in_sync(db, a, "ca")
    in_sync(db, b, "cb")
    ta, tb = claim(db, a), claim(db, b)
    tb2 = renewed(db, b, tb).lease_token  # the chunk's token for b is now the previous one
    assert lc.leased(db, [(b, tb), (a, ta)]) == [
        lc.PollTarget(b, "b@example.com", "cb", tb, current=False),
        lc.PollTarget(a, "a@example.com", "ca", ta, current=True),
    ]
    assert lc.leased(db, [(b, tb2)])[0].current
    assert lc.leased(db, []) == []


def test_leased_leaves_out_claims_no_longer_pollable(db: Conn) -> None:
    names = ("older", "reclaimed", "disabled", "settled", "resync", "ok")
    ops = {n: add_operator(db, f"{n}@example.com") for n in names}
    for op in ops.values():
        in_sync(db, op)
    tokens = {n: claim(db, op) for n, op in ops.items()}
    # older: renewed twice since the chunk got its token
    renewed(db, ops["older"], renewed(db, ops["older"], tokens["older"]).lease_token)
    # reclaimed: the lease expired and the dispatcher claimed again
    arrange(db, ops["reclaimed"], lease_expires_at=now(db) - SECOND)
    claim(db, ops["reclaimed"])
    # disabled since the claim (the flag alone is enough)
    db.execute("UPDATE operators SET calendar_sync = false WHERE id = %s", (ops["disabled"],))
    # settled: a chunk delivered twice finds it no longer in flight
    assert lc.settle_quiet(db, [QuietPoll(ops["settled"], tokens["settled"], "c2")], 5.0) == 1
    # resync: a batch under the same token started a full resync
    lc.start_resync(db, ops["resync"], tokens["resync"])
    before = {n: state(db, op) for n, op in ops.items()}
    got = lc.leased(db, [(ops[n], tokens[n]) for n in names])
    assert [t.operator_id for t in got] == [ops["ok"]]
    assert {n: state(db, op) for n, op in ops.items()} == before  # a read


# ---------------------------------------------------------------------------------------------
# fence and lock
# ---------------------------------------------------------------------------------------------


def test_fence_holds_the_row_under_the_current_token(db: Conn, database_url: str) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    before = state(db, op)
    with db.transaction():
        lc.fence(db, op, token)
        assert row_locked(database_url, op)
    assert not row_locked(database_url, op)
    assert state(db, op) == before


def test_fence_raises_on_a_stale_token(db: Conn, database_url: str) -> None:
    op = add_operator(db, "a@example.com")
    t1 = claim(db, op)
    t2 = renewed(db, op, t1).lease_token
    renewed(db, op, t2)
    before = state(db, op)
    # Also the previous token: only the current one may write.
    for stale in (t1, t2):
        with pytest.raises(LeaseLost), db.transaction():
            lc.fence(db, op, stale)
    assert state(db, op) == before
    assert not row_locked(database_url, op)


def test_lock_holds_the_rows_without_writing(db: Conn, database_url: str) -> None:
    a, b = add_operator(db, "a@example.com"), add_operator(db, "b@example.com")
    before = [state(db, a), state(db, b)]
    with db.transaction():
        lc.lock(db, [b, a])
        assert row_locked(database_url, a) and row_locked(database_url, b)
    assert [state(db, a), state(db, b)] == before
    lc.lock(db, [])  # nothing to lock is no error


# ---------------------------------------------------------------------------------------------
# release
# ---------------------------------------------------------------------------------------------


def test_release_gives_the_lease_back_as_a_failure(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = renewed(db, op, claim(db, op)).lease_token
    before = state(db, op)
    assert (before["status"], before["in_flight"], before["attempts"]) == (Status.INITIAL_SYNC, True, 0)
    t0 = now(db)
    assert lc.release(db, op, token, "time_limit", "x" * 3000, 120.0)
    after = state(db, op)
    assert (after["status"], after["stage"]) == (Status.RETRYING, Stage.INITIAL)
    assert not after["in_flight"] and after["lease_expires_at"] is None and after["lease_owner"] is None
    assert after["attempts"] == 1 and after["failing_since"] >= t0
    assert after["last_error_code"] == "time_limit" and len(after["last_error_message"]) == lc.MESSAGE_LIMIT
    assert t0 + dt.timedelta(seconds=120) <= after["next_poll_at"] <= now(db) + dt.timedelta(seconds=120)


def test_release_keeps_failed_status_and_failing_since(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    since = now(db) - dt.timedelta(hours=1)
    arrange(db, op, status=Status.FAILED, failing_since=since, attempts=3)
    assert lc.release(db, op, token, "time_limit", "slow", 60.0)
    after = state(db, op)
    assert (after["status"], after["failing_since"], after["attempts"]) == (Status.FAILED, since, 4)


def test_release_with_a_stale_token_changes_nothing(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    t1 = claim(db, op)
    renewed(db, op, t1)
    before = state(db, op)
    assert lc.release(db, op, t1, "time_limit", "late", 60.0) is False
    assert state(db, op) == before


def test_release_in_flight_frees_every_lease_taken_before_and_the_next_claim_takes_them(db: Conn) -> None:
    """The broker lost its data: every lease in flight is given back, uncounted, and claimed again."""
    chain = add_operator(db, "chain@example.com")
    chain_token = renewed(db, chain, claim(db, chain)).lease_token  # a chain mid-way (worker owner)
    quiet = add_operator(db, "quiet@example.com")
    in_sync(db, quiet)
    claim(db, quiet)  # a chunk's claim (dispatcher owner)
    failing = add_operator(db, "failing@example.com")
    failing_token = renewed(db, failing, claim(db, failing)).lease_token
    assert lc.fail_transient(db, failing, failing_token, "HttpUnavailable", "503", 1200.0) is not None
    idle = add_operator(db, "idle@example.com")  # not in flight: untouched
    before = {op: state(db, op) for op in (chain, quiet, failing, idle)}

    assert lc.release_in_flight(db) == sorted([chain, quiet, failing])

    for op in (chain, quiet, failing):
        after = state(db, op)
        assert not after["in_flight"] and after["lease_expires_at"] is None and after["lease_owner"] is None
        # Not a failure: status, counters, error and schedule are what they were.
        for col in ("status", "stage", "attempts", "failing_since", "last_error_code", "next_poll_at", "lease_token"):
            assert after[col] == before[op][col], (op, col)
    assert state(db, idle) == before[idle]
    # The old holder's token is worthless once the dispatcher claims again (same tick).
    claims = {c.operator_id: c for c in lc.claim_due(db, 0.0, LEASE, 1000)}
    assert {chain, quiet, failing} <= set(claims)
    assert claims[quiet].quiet and not claims[chain].quiet
    assert lc.renew(db, chain, chain_token, "late worker", LEASE) is None
    with pytest.raises(LeaseLost):
        lc.fence(db, chain, chain_token)


def test_release_in_flight_leaves_leases_taken_after_the_cut(db: Conn) -> None:
    old = add_operator(db, "old@example.com")
    claim(db, old)
    cut = now(db)
    young = add_operator(db, "young@example.com")
    token = claim(db, young)
    assert lc.release_in_flight(db, claimed_before=cut) == [old]
    after = state(db, young)
    assert after["in_flight"] and after["lease_token"] == token and after["lease_expires_at"] is not None


def test_release_in_flight_in_the_claiming_transaction_spares_that_transactions_claims(db: Conn) -> None:
    """The dispatcher releases and claims in one transaction; its own fresh claims stay leased."""
    op = add_operator(db, "a@example.com")
    claim(db, op)
    arrange(db, op, next_poll_at=now(db) - SECOND)
    with db.transaction():
        assert lc.release_in_flight(db) == [op]
        claims = lc.claim_due(db, 0.0, LEASE, 1000)
        assert [c.operator_id for c in claims] == [op]
        assert lc.release_in_flight(db) == []
    assert state(db, op)["in_flight"]


# ---------------------------------------------------------------------------------------------
# start_run and commit_page
# ---------------------------------------------------------------------------------------------


def test_start_run_creates_the_run_once_and_reuses_it(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    st = renewed(db, op, claim(db, op))
    assert state(db, op)["current_run_id"] is None
    run_id = lc.start_run(db, st)
    assert state(db, op)["current_run_id"] == run_id
    run = run_row(db, run_id)
    assert (run["operator_id"], run["stage"], run["status"], run["batches"]) == (op, Stage.INITIAL, "running", 0)
    # The next batch of the chain renews and finds the run.
    st2 = renewed(db, op, st.lease_token)
    assert st2.run_id == run_id
    assert lc.start_run(db, st2) == run_id
    assert [r["id"] for r in runs(db)] == [run_id]


def test_start_run_with_a_stale_token_raises_and_creates_no_run(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    st = renewed(db, op, claim(db, op))
    renewed(db, op, st.lease_token)
    renewed(db, op, renewed(db, op, st.lease_token).lease_token)  # st's token is now older than previous
    before = state(db, op)
    # In a transaction, as calsync.runner.batch calls it: the LeaseLost rolls the run back.
    with pytest.raises(LeaseLost), db.transaction():
        lc.start_run(db, st)
    assert state(db, op) == before
    assert runs(db) == []


def test_commit_page_stores_cursor_and_counts(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token, run_id = leased_run(db, op)
    lc.commit_page(db, op, token, run_id, "c1", PageCounts(created=3, updated=2, deleted=1, unchanged=4))
    lc.commit_page(db, op, token, run_id, "c2", PageCounts(created=1, unchanged=1))
    after = state(db, op)
    assert after["ews_sync_state"] == "c2"
    assert (after["batches_total"], after["items_created"], after["items_updated"], after["items_deleted"]) == (
        2, 4, 2, 1,
    )  # fmt: skip
    # A page is no transition: still the first sync, still leased.
    assert (after["status"], after["stage"], after["in_flight"]) == (Status.INITIAL_SYNC, Stage.INITIAL, True)
    assert after["lease_token"] == token
    run = run_row(db, run_id)
    assert (run["batches"], run["created"], run["updated"], run["deleted"], run["unchanged"]) == (2, 4, 2, 1, 5)
    assert run["status"] == "running"


def test_commit_page_with_a_stale_token_raises_and_writes_nothing(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token, run_id = leased_run(db, op)
    renewed(db, op, token)
    before, run_before = state(db, op), run_row(db, run_id)
    with pytest.raises(LeaseLost), db.transaction():
        lc.commit_page(db, op, token, run_id, "stale", PageCounts(created=9))
    assert state(db, op) == before
    assert run_row(db, run_id) == run_before


# ---------------------------------------------------------------------------------------------
# finish and settle_quiet
# ---------------------------------------------------------------------------------------------


def test_finish_ends_the_first_sync(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token, run_id = leased_run(db, op)
    claimed_at = now(db) - dt.timedelta(minutes=2)
    arrange(db, op, last_poll_at=claimed_at, failing_since=now(db), attempts=2, status=Status.RETRYING,
            last_error_code="x", last_error_message="y")  # fmt: skip
    before = state(db, op)
    assert (before["status"], before["stage"], before["in_flight"]) == (Status.RETRYING, Stage.INITIAL, True)
    secs = lc.finish(db, op, token, run_id, poll_interval_minutes=5.0)
    after = state(db, op)
    assert (after["status"], after["stage"]) == (Status.ACTIVE, Stage.INCREMENTAL)
    assert not after["in_flight"] and after["lease_expires_at"] is None and after["lease_owner"] is None
    assert after["current_run_id"] is None and after["last_success_at"] is not None
    assert (after["attempts"], after["failing_since"], after["last_error_code"], after["last_error_message"]) == (
        0, None, None, None,
    )  # fmt: skip
    assert after["polls_total"] == before["polls_total"] + 1
    # The interval counts from the claim, not from the end of the run.
    assert after["next_poll_at"] == claimed_at + dt.timedelta(minutes=5)
    run = run_row(db, run_id)
    assert run["status"] == "succeeded" and run["finished_at"] is not None
    assert secs is not None and secs >= 0


def test_finish_ends_a_resync_and_never_schedules_in_the_past(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    in_sync(db, op)
    token, run_id = leased_run(db, op)
    lc.start_resync(db, op, token)
    arrange(db, op, last_poll_at=now(db) - dt.timedelta(hours=1))
    t0 = now(db)
    lc.finish(db, op, token, run_id, poll_interval_minutes=5.0)
    after = state(db, op)
    assert (after["status"], after["stage"]) == (Status.ACTIVE, Stage.INCREMENTAL)
    assert t0 <= after["next_poll_at"] <= now(db)


def test_finish_with_a_stale_token_raises_and_writes_nothing(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token, run_id = leased_run(db, op)
    renewed(db, op, token)  # token is now only the previous one: not enough to commit
    before, run_before = state(db, op), run_row(db, run_id)
    with pytest.raises(LeaseLost), db.transaction():
        lc.finish(db, op, token, run_id, 5.0)
    assert state(db, op) == before
    assert run_row(db, run_id) == run_before


def test_settle_quiet_settles_only_polls_still_leased(db: Conn) -> None:
    ops = {n: add_operator(db, f"{n}@example.com") for n in ("quiet", "lost", "settled")}
    for op in ops.values():
        in_sync(db, op, "old")
    tokens = {n: claim(db, op) for n, op in ops.items()}
    claimed_at = now(db) - dt.timedelta(minutes=1)
    arrange(db, ops["quiet"], last_poll_at=claimed_at)
    renewed(db, ops["lost"], tokens["lost"])  # a batch took it on meanwhile
    assert lc.settle_quiet(db, [QuietPoll(ops["settled"], tokens["settled"], "new")], 5.0) == 1
    before = {n: state(db, op) for n, op in ops.items()}
    assert before["quiet"]["in_flight"]
    polls = [QuietPoll(ops[n], tokens[n], f"new-{n}") for n in ("quiet", "lost", "settled")]
    assert lc.settle_quiet(db, polls, 5.0) == 1
    after = state(db, ops["quiet"])
    assert after["ews_sync_state"] == "new-quiet"
    assert (after["status"], after["stage"]) == (Status.ACTIVE, Stage.INCREMENTAL)
    assert not after["in_flight"] and after["lease_expires_at"] is None and after["lease_owner"] is None
    assert after["polls_total"] == before["quiet"]["polls_total"] + 1
    assert after["last_success_at"] > before["quiet"]["last_success_at"]
    assert after["next_poll_at"] == claimed_at + dt.timedelta(minutes=5)
    # A quiet poll writes no run row.
    assert runs(db) == []
    # The lost and the already settled rows are left as they were.
    assert state(db, ops["lost"]) == before["lost"]
    assert state(db, ops["settled"]) == before["settled"]
    assert lc.settle_quiet(db, [], 5.0) == 0


# ---------------------------------------------------------------------------------------------
# start_resync
# ---------------------------------------------------------------------------------------------


def test_start_resync_starts_a_new_generation(db: Conn) -> None:
    op, other = add_operator(db, "a@example.com"), add_operator(db, "b@example.com")
    in_sync(db, op)
    arrange(db, op, generation=3)
    seen(db, op, 3, "i1", "i2")
    seen(db, other, 0, "i1")
    token, _ = leased_run(db, op)
    lc.start_resync(db, op, token)
    after = state(db, op)
    assert (after["stage"], after["generation"], after["ews_sync_state"]) == (Stage.RESYNC, 4, None)
    assert after["status"] == Status.ACTIVE and after["in_flight"] and after["lease_token"] == token
    assert seen_count(db, op) == 0 and seen_count(db, other) == 1


def test_start_resync_with_a_stale_token_raises_and_writes_nothing(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    in_sync(db, op)
    seen(db, op, 0, "i1")
    token, _ = leased_run(db, op)
    renewed(db, op, token)
    before = state(db, op)
    with pytest.raises(LeaseLost), db.transaction():
        lc.start_resync(db, op, token)
    assert state(db, op) == before
    assert seen_count(db, op) == 1


# ---------------------------------------------------------------------------------------------
# Failures: fail_transient, fail, stand_back, fail_paused, resume_paused
# ---------------------------------------------------------------------------------------------


def test_fail_transient_keeps_the_lease_and_the_episode_start(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    in_sync(db, op)
    token, _ = leased_run(db, op)
    t0 = now(db)
    first = lc.fail_transient(db, op, token, "server_busy", "busy", hold_seconds=900.0)
    assert first is not None
    since, attempts = first
    assert attempts == 1 and since >= t0
    after = state(db, op)
    assert (after["status"], after["stage"]) == (Status.RETRYING, Stage.INCREMENTAL)
    assert after["in_flight"] and after["lease_token"] == token
    assert t0 + dt.timedelta(seconds=900) <= after["lease_expires_at"] <= now(db) + dt.timedelta(seconds=900)
    assert (after["last_error_code"], after["last_error_message"]) == ("server_busy", "busy")
    second = lc.fail_transient(db, op, token, "timeout", "slow", hold_seconds=900.0)
    assert second == (since, 2)
    assert state(db, op)["last_error_code"] == "timeout"


def test_fail_transient_with_a_stale_token_returns_none(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token, _ = leased_run(db, op)
    renewed(db, op, token)
    before = state(db, op)
    assert lc.fail_transient(db, op, token, "server_busy", "busy", 900.0) is None
    assert state(db, op) == before


def test_fail_gives_up_and_closes_the_run(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token, run_id = leased_run(db, op)
    lc.fail_transient(db, op, token, "server_busy", "busy", 900.0)
    since = state(db, op)["failing_since"]
    t0 = now(db)
    assert lc.fail(db, op, token, "mailbox_not_found", "no such mailbox", recheck_minutes=60.0)
    after = state(db, op)
    assert (after["status"], after["stage"]) == (Status.FAILED, Stage.INITIAL)
    assert not after["in_flight"] and after["lease_expires_at"] is None and after["lease_owner"] is None
    assert after["current_run_id"] is None
    assert (after["attempts"], after["failing_since"], after["last_error_code"]) == (2, since, "mailbox_not_found")
    assert t0 + dt.timedelta(hours=1) <= after["next_poll_at"] <= now(db) + dt.timedelta(hours=1)
    run = run_row(db, run_id)
    assert (run["status"], run["error_code"], run["error_message"]) == (
        "failed",
        "mailbox_not_found",
        "no such mailbox",
    )
    assert run["finished_at"] is not None


def test_fail_without_a_run(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = renewed(db, op, claim(db, op)).lease_token
    assert lc.fail(db, op, token, "access_denied", "denied", 60.0)
    assert state(db, op)["status"] == Status.FAILED
    assert runs(db) == []


def test_fail_with_a_stale_token_changes_nothing(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token, run_id = leased_run(db, op)
    renewed(db, op, token)
    before, run_before = state(db, op), run_row(db, run_id)
    assert lc.fail(db, op, token, "access_denied", "denied", 60.0) is False
    assert state(db, op) == before
    assert run_row(db, run_id) == run_before


def test_stand_back_gives_the_lease_back_until_the_pause_ends(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    in_sync(db, op)
    token, run_id = leased_run(db, op)
    until, since = now(db) + dt.timedelta(minutes=3), now(db) - dt.timedelta(minutes=1)
    assert lc.stand_back(db, op, token, until, since, "auth_failed", "401", attempted=True)
    after = state(db, op)
    assert (after["status"], after["stage"]) == (Status.RETRYING, Stage.INCREMENTAL)
    assert not after["in_flight"] and after["lease_expires_at"] is None and after["lease_owner"] is None
    assert (after["next_poll_at"], after["failing_since"], after["attempts"]) == (until, since, 1)
    assert (after["last_error_code"], after["last_error_message"]) == ("auth_failed", "401")
    assert after["current_run_id"] == run_id  # the run goes on after the pause


def test_stand_back_not_attempted_keeps_attempts_and_an_earlier_failure(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    earlier = now(db) - dt.timedelta(hours=2)
    arrange(db, op, status=Status.RETRYING, failing_since=earlier, attempts=4)
    assert lc.stand_back(db, op, token, now(db), now(db), "auth_failed", "401", attempted=False)
    after = state(db, op)
    assert (after["status"], after["failing_since"], after["attempts"]) == (Status.RETRYING, earlier, 4)


def test_stand_back_keeps_a_failed_operator_failed_with_its_own_error(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    arrange(db, op, status=Status.FAILED, last_error_code="mailbox_not_found", last_error_message="gone")
    until = now(db) + dt.timedelta(minutes=1)
    assert lc.stand_back(db, op, token, until, now(db), "auth_failed", "401", attempted=False)
    after = state(db, op)
    assert (after["status"], after["last_error_code"], after["last_error_message"]) == (
        Status.FAILED, "mailbox_not_found", "gone",
    )  # fmt: skip
    assert after["next_poll_at"] == until and not after["in_flight"]


def test_stand_back_with_a_stale_or_no_token_changes_nothing(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    renewed(db, op, token)
    before = state(db, op)
    t = now(db)
    assert lc.stand_back(db, op, token, t, t, "auth_failed", "401", attempted=True) is False
    assert lc.stand_back(db, op, None, t, t, "auth_failed", "401", attempted=True) is False
    assert state(db, op) == before


def test_fail_paused_fails_the_operators_the_pause_stopped(db: Conn) -> None:
    paused, other, healthy = (add_operator(db, f"{n}@example.com") for n in ("p", "o", "h"))
    arrange(db, paused, status=Status.RETRYING, last_error_code="auth_failed")
    arrange(db, other, status=Status.RETRYING, last_error_code="server_busy")
    in_sync(db, healthy)
    before = {op: state(db, op) for op in (other, healthy)}
    assert lc.fail_paused(db, "auth_failed") == 1
    after = state(db, paused)
    assert (after["status"], after["last_error_code"]) == (Status.FAILED, "auth_failed")
    assert {op: state(db, op) for op in (other, healthy)} == before
    assert lc.fail_paused(db, "auth_failed") == 0


def test_resume_paused_makes_the_stopped_operators_due(db: Conn) -> None:
    names = ("never", "synced", "failed", "in_flight", "other")
    ops = {n: add_operator(db, f"{n}@example.com") for n in names}
    later = now(db) + dt.timedelta(hours=1)
    for op in ops.values():
        arrange(db, op, status=Status.RETRYING, last_error_code="auth_failed", failing_since=now(db), attempts=3,
                next_poll_at=later)  # fmt: skip
    in_sync(db, ops["synced"])
    arrange(db, ops["synced"], status=Status.RETRYING)
    arrange(db, ops["failed"], status=Status.FAILED, last_success_at=now(db))
    arrange(db, ops["in_flight"], in_flight=True)
    arrange(db, ops["other"], last_error_code="server_busy")
    untouched = {n: state(db, ops[n]) for n in ("in_flight", "other")}
    t0 = now(db)
    assert lc.resume_paused(db, "auth_failed") == 3
    got = {n: state(db, ops[n]) for n in ("never", "synced", "failed")}
    assert {n: r["status"] for n, r in got.items()} == {
        "never": Status.NOT_SYNCED, "synced": Status.ACTIVE, "failed": Status.ACTIVE,
    }  # fmt: skip
    for r in got.values():
        assert (r["attempts"], r["failing_since"]) == (0, None)
        assert t0 <= r["next_poll_at"] <= now(db)
    assert {n: state(db, ops[n]) for n in ("in_flight", "other")} == untouched
    assert lc.resume_paused(db, "auth_failed") == 0


# ---------------------------------------------------------------------------------------------
# Administration: disable, enable, reconcile, restart_from_scratch, new_mailbox, request_sync
# ---------------------------------------------------------------------------------------------


def switch(db: Conn, op: int, on: bool) -> None:
    db.execute("UPDATE operators SET calendar_sync = %s WHERE id = %s", (on, op))


def test_disable_revokes_the_lease_and_is_idempotent(db: Conn) -> None:
    op, kept = add_operator(db, "a@example.com"), add_operator(db, "b@example.com")
    in_sync(db, op)
    token, _ = leased_run(db, op)
    kept_before = state(db, kept)
    switch(db, op, False)
    assert lc.disable(db, [op, kept]) == 1  # kept still has its flag on: untouched
    after = state(db, op)
    assert (after["status"], after["stage"], after["ews_sync_state"]) == (
        Status.DISABLED,
        Stage.INCREMENTAL,
        "cursor-1",
    )
    assert not after["in_flight"]
    assert (after["lease_token"], after["prev_lease_token"], after["lease_owner"], after["lease_expires_at"]) == (
        None, None, None, None,
    )  # fmt: skip
    assert state(db, kept) == kept_before
    # The batch in flight fails its next fenced write.
    with pytest.raises(LeaseLost), db.transaction():
        lc.fence(db, op, token)
    assert lc.fail_transient(db, op, token, "server_busy", "busy", 60.0) is None
    frozen = state(db, op)
    assert lc.disable(db, [op]) == 0
    assert state(db, op) == frozen


def test_enable_makes_an_operator_due_and_is_idempotent(db: Conn) -> None:
    fresh, synced, purged, still_off = (add_operator(db, f"{n}@example.com", False) for n in "fspo")
    in_sync(db, synced)
    in_sync(db, purged)
    arrange(db, purged, ews_sync_state=None)
    for op in (fresh, synced, purged, still_off):
        arrange(db, op, status=Status.DISABLED, attempts=2, failing_since=now(db), next_poll_at=now(db) + SECOND * 3600)
    for op in (fresh, synced, purged):
        switch(db, op, True)
    off_before = state(db, still_off)
    t0 = now(db)
    assert lc.enable(db, [fresh, synced, purged, still_off]) == 3
    got = {op: state(db, op) for op in (fresh, synced, purged)}
    assert [got[op]["status"] for op in (fresh, synced, purged)] == [
        Status.NOT_SYNCED,
        Status.ACTIVE,
        Status.NOT_SYNCED,
    ]
    assert got[synced]["stage"] == Stage.INCREMENTAL
    for r in got.values():
        assert (r["attempts"], r["failing_since"], r["in_flight"]) == (0, None, False)
        assert t0 <= r["next_poll_at"] <= now(db)
    assert state(db, still_off) == off_before
    assert lc.enable(db, [fresh, synced, purged, still_off]) == 0


def test_enable_leaves_an_operator_that_is_not_disabled(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    arrange(db, op, status=Status.FAILED, attempts=5)
    before = state(db, op)
    assert lc.enable(db, [op]) == 0
    assert state(db, op) == before


def test_reconcile_follows_the_flag_and_is_idempotent(db: Conn) -> None:
    on, off = add_operator(db, "on@example.com", False), add_operator(db, "off@example.com")
    claim(db, off)
    switch(db, on, True)
    switch(db, off, False)
    assert lc.reconcile(db, [on, off]) == (1, 1)
    assert (state(db, on)["status"], state(db, off)["status"]) == (Status.NOT_SYNCED, Status.DISABLED)
    assert not state(db, off)["in_flight"]
    before = [state(db, on), state(db, off)]
    assert lc.reconcile(db, [on, off]) == (0, 0)
    assert [state(db, on), state(db, off)] == before


def test_restart_from_scratch_forgets_the_cursor(db: Conn) -> None:
    op, other = add_operator(db, "a@example.com"), add_operator(db, "b@example.com")
    in_sync(db, op)
    arrange(db, op, generation=2, status=Status.DISABLED)
    seen(db, op, 2, "i1")
    seen(db, other, 0, "i1")
    other_before = state(db, other)
    assert lc.restart_from_scratch(db, [op]) == 1
    after = state(db, op)
    assert (after["ews_sync_state"], after["stage"], after["generation"]) == (None, Stage.INITIAL, 3)
    assert after["status"] == Status.DISABLED  # the status is the flag's business (enable decides)
    assert seen_count(db, op) == 0 and seen_count(db, other) == 1
    assert state(db, other) == other_before
    # Enabled again, it starts a first sync.
    switch(db, op, False)
    switch(db, op, True)
    assert lc.enable(db, [op]) == 1
    assert state(db, op)["status"] == Status.NOT_SYNCED


def test_new_mailbox_with_a_mirror_resyncs_and_revokes_the_lease(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    in_sync(db, op)
    add_appointment(db, op)
    token, _ = leased_run(db, op)
    lc.fail_transient(db, op, token, "server_busy", "busy", 60.0)
    generation = state(db, op)["generation"]
    t0 = now(db)
    lc.new_mailbox(db, op)
    after = state(db, op)
    assert (after["stage"], after["status"], after["ews_sync_state"]) == (Stage.RESYNC, Status.NOT_SYNCED, None)
    assert after["generation"] == generation + 1
    assert not after["in_flight"]
    assert (after["lease_token"], after["prev_lease_token"], after["lease_owner"], after["lease_expires_at"]) == (
        None, None, None, None,
    )  # fmt: skip
    assert (after["attempts"], after["failing_since"]) == (0, None)
    assert t0 <= after["next_poll_at"] <= now(db)
    with pytest.raises(LeaseLost), db.transaction():
        lc.fence(db, op, token)
    assert lc.renew(db, op, token, "old-batch", LEASE) is None


def test_new_mailbox_without_a_mirror_starts_a_first_sync(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    in_sync(db, op)
    lc.new_mailbox(db, op)
    after = state(db, op)
    assert (after["stage"], after["status"], after["generation"]) == (Stage.INITIAL, Status.NOT_SYNCED, 1)
    # The next batch starts it as a first sync.
    assert renewed(db, op, None).status == Status.INITIAL_SYNC


def test_new_mailbox_keeps_a_disabled_operator_disabled(db: Conn) -> None:
    op = add_operator(db, "a@example.com", calendar_sync=False)
    add_appointment(db, op)
    lc.new_mailbox(db, op)
    after = state(db, op)
    assert (after["status"], after["stage"]) == (Status.DISABLED, Stage.RESYNC)


def test_request_sync_makes_enabled_operators_due(db: Conn) -> None:
    a, b = add_operator(db, "A@example.com"), add_operator(db, "b@example.com")
    off = add_operator(db, "off@example.com", calendar_sync=False)
    later = now(db) + dt.timedelta(hours=1)
    for op in (a, b, off):
        arrange(db, op, next_poll_at=later)
    off_before = state(db, off)
    t0 = now(db)
    assert lc.request_sync(db, ["a@EXAMPLE.com", "off@example.com"]) == [(a, "A@example.com")]
    assert t0 <= state(db, a)["next_poll_at"] <= now(db)
    assert state(db, b)["next_poll_at"] == later
    assert sorted(lc.request_sync(db, None)) == [(a, "A@example.com"), (b, "b@example.com")]
    assert state(db, b)["next_poll_at"] <= now(db)
    assert state(db, off) == off_before


def test_request_sync_leaves_a_lease_in_flight_alone(db: Conn) -> None:
    op = add_operator(db, "a@example.com")
    token = claim(db, op)
    arrange(db, op, next_poll_at=now(db) + dt.timedelta(hours=1))
    before = state(db, op)
    assert lc.request_sync(db, ["a@example.com"]) == [(op, "a@example.com")]
    after = state(db, op)
    lease = ("in_flight", "lease_token", "prev_lease_token", "lease_owner", "lease_expires_at", "status", "stage")
    assert {k: after[k] for k in lease} == {k: before[k] for k in lease}
    assert after["lease_token"] == token and after["next_poll_at"] <= now(db)
    # Still in flight: the dispatcher does not claim it again before the lease expires.
    assert lc.claim_due(db, 0.0, LEASE, 10) == []


# ---------------------------------------------------------------------------------------------
# Rules added after the first review of the module
# ---------------------------------------------------------------------------------------------


def test_renew_refuses_a_token_whose_chain_has_ended(db: Conn) -> None:
    """A late duplicate of a chain's last message does not take the operator up again."""
    op = add_operator(db, "ended@example.com")
    token, run_id = leased_run(db, op)
    lc.finish(db, op, token, run_id, 5.0)
    before = state(db, op)
    assert lc.renew(db, op, token, "late-duplicate", LEASE) is None
    assert state(db, op) == before


def test_administrative_transitions_cancel_the_run_they_interrupt(db: Conn) -> None:
    for transition in ("disable", "new_mailbox", "restart_from_scratch"):
        op = add_operator(db, f"{transition}@example.com")
        token, run_id = leased_run(db, op)
        if transition == "disable":
            switch(db, op, on=False)
            lc.disable(db, [op])
        elif transition == "new_mailbox":
            lc.new_mailbox(db, op)
        else:
            lc.restart_from_scratch(db, [op])
        st = state(db, op)
        assert st["current_run_id"] is None and st["in_flight"] is False and st["lease_token"] is None, transition
        assert run_row(db, run_id)["status"] == "cancelled", transition
        with pytest.raises(LeaseLost):
            lc.fence(db, op, token)


def test_resume_paused_forgets_the_pauses_error(db: Conn) -> None:
    op = add_operator(db, "paused@example.com")
    in_sync(db, op)
    arrange(db, op, status=Status.RETRYING, last_error_code="Unauthorized", last_error_message="401")
    assert lc.resume_paused(db, "Unauthorized") == 1
    st = state(db, op)
    assert (st["status"], st["last_error_code"], st["last_error_message"]) == ("active", None, None)


# ---------------------------------------------------------------------------------------------
# Push: a kick claims the operator it names, when owed and idle
# ---------------------------------------------------------------------------------------------


def notified(db: Conn, op: int) -> None:
    """A change notification recorded for `op` now, as the listener records it (fixture write)."""
    db.execute(
        "INSERT INTO push_status (operator_id, last_event_at, first_pending_at) VALUES (%s, clock_timestamp(), "
        "clock_timestamp()) ON CONFLICT (operator_id) DO UPDATE SET last_event_at = EXCLUDED.last_event_at, "
        "first_pending_at = COALESCE(push_status.first_pending_at, EXCLUDED.first_pending_at)",
        (op,),
    )


def test_claim_pushed_takes_only_the_kicked_operator_when_owed_and_idle(db: Conn) -> None:
    kicked, other, busy, quiet_one, disabled = (
        add_operator(db, f"{name}@example.com", calendar_sync=name != "disabled")
        for name in ("kicked", "other", "busy", "quiet", "disabled")
    )
    for op in (kicked, other, busy, quiet_one, disabled):
        in_sync(db, op)
    notified(db, quiet_one)
    arrange(db, quiet_one, last_poll_at=now(db) + SECOND)  # claimed after its last notification
    busy_token = claim(db, busy)
    arrange(db, busy, last_poll_at=now(db) - dt.timedelta(minutes=1))
    for op in (kicked, other, busy, disabled):
        notified(db, op)

    got, why = lc.claim_pushed(db, kicked, LEASE)
    assert why == "" and got is not None and got.operator_id == kicked and got.quiet
    st = state(db, kicked)
    assert st["in_flight"] and st["lease_token"] == got.token and st["lease_owner"] == "push"
    # Another owed operator is left to its own kick (which runs its sync at once, not behind this one).
    assert not state(db, other)["in_flight"]
    other_claim, why = lc.claim_pushed(db, other, LEASE)
    assert why == "" and other_claim is not None and other_claim.operator_id == other
    assert lc.claim_pushed(db, quiet_one, LEASE) == (None, "not_owed")
    # The running sync is left alone, and its kick waits for it.
    assert lc.claim_pushed(db, busy, LEASE) == (None, "in_flight")
    assert state(db, busy)["lease_token"] == busy_token
    assert lc.claim_pushed(db, disabled, LEASE) == (None, "disabled")
    # A change heard while the kicked operator's sync runs is owed one more sync, after it.
    notified(db, kicked)
    assert lc.claim_pushed(db, kicked, LEASE) == (None, "in_flight")
