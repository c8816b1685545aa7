"""Quiet polls in chunks (calsync.tasks.poll): cheap when nothing changed, exact when something did.

`run_chunk` is driven in this process against the in-process simulator (its request log is
Exchange's own account of what was asked), real Postgres and real Redis; the last test
sends the dispatcher's chunk messages to real worker processes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis

from calsync.runner import chunk as chunk_runner
from calsync.runner.batch import run_batch
from calsync.runner.chunk import ChunkOutcome
from calsync.runtime import current_settings, reset_process_state, source_for
from calsync.simulator import Simulator, SimulatorServer, generate, mailbox_email
from calsync.store import lifecycle
from calsync.store.db import transaction
from calsync.tasks.dispatch import chunked, enqueue_chains
from tests.integration.conftest import sync_to_end
from tests.integration.truth import expected_rows, mirror_rows

from .conftest import Fleet, RequestLog, Smtp, add_operators, configure, instrument, purge_queues, wait_for

pytestmark = [pytest.mark.usefixtures("clean_failures", "service_env", "clean_redis"), pytest.mark.timeout(180)]

MAILBOXES = 6
NEW_ITEM = {
    "subject": "Found by a chunk",
    "start": "2030-03-04T09:00:00+00:00",
    "end": "2030-03-04T10:00:00+00:00",
    "timezone": "UTC",
}


def in_sync(db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer], n: int = MAILBOXES) -> tuple[
    Simulator, RequestLog, dict[int, int]
]:  # fmt: skip
    """n operators brought through their first sync (as chains would), then made due."""
    sim = generate(n, 8, seed=21)
    log = instrument(sim)
    server = serve(sim)
    configure(server.ews_url, poll_interval_minutes=60, batch_size=50)
    ops = add_operators(db, [mailbox_email(i) for i in range(1, n + 1)])
    source = source_for(current_settings())
    for op in ops:
        sync_to_end(source, op)  # type: ignore[arg-type]
    db.execute("UPDATE sync_state SET next_poll_at = now()")
    return sim, log, {i: op for i, op in enumerate(ops, start=1)}


def run_chunk(claims: list[tuple[int, int]], owner: str) -> ChunkOutcome:
    """The chunk as the task runs it, with this process's settings and source (no Celery)."""
    settings = current_settings()
    return chunk_runner.run_chunk(claims, owner, settings, source_for(settings))


def claim(db: psycopg.Connection[Any]) -> list[tuple[int, int]]:
    with transaction() as conn:
        claims = lifecycle.claim_due(conn, slack_seconds=0.0, lease_seconds=600.0, limit=1000)
    assert claims and all(c.quiet for c in claims), "operators in sync and healthy go into chunks"
    return sorted((c.operator_id, c.token) for c in claims)


def state(db: psycopg.Connection[Any], op: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT status, stage, in_flight, polls_total, ews_sync_state, last_success_at, next_poll_at, last_error_code "
        "FROM sync_state WHERE operator_id = %s",
        (op,),
    ).fetchone()
    assert row is not None
    return dict(row)


def runs(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT count(*) AS n FROM sync_runs").fetchone()["n"])  # type: ignore[index]


def calls(log: RequestLog, since: float, operation: str) -> list[str | None]:
    return [mailbox for _, op, mailbox in log.after(since) if op == operation]


def test_quiet_polls_are_settled_together_and_leave_no_run_rows(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    _, log, ops = in_sync(db, serve)
    before = {op: state(db, op) for op in ops.values()}
    runs_before = runs(db)
    claims = claim(db)
    t0 = time.time()

    out = run_chunk(claims, "test")

    assert (out.quiet, out.lost, out.skipped, out.steps, out.deferred) == (MAILBOXES, 0, 0, [], [])
    assert sorted(calls(log, t0, "SyncFolderItems")) == sorted(mailbox_email(i) for i in ops)
    assert calls(log, t0, "GetItem") == []
    assert runs(db) == runs_before, "an empty poll is counted, not recorded as a run"
    for op in ops.values():
        after = state(db, op)
        assert after["in_flight"] is False and after["status"] == "active"
        assert after["polls_total"] == before[op]["polls_total"] + 1
        assert after["last_success_at"] > before[op]["last_success_at"]
        assert after["next_poll_at"] > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)
        assert after["ews_sync_state"], "the cursor Exchange returned is kept"


def test_changes_found_by_a_poll_are_mirrored_from_the_page_already_read(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    sim, log, ops = in_sync(db, serve)
    created = sim.create_item(mailbox_email(2), NEW_ITEM)
    now = dt.datetime.now(dt.UTC)
    victim = next(
        it for it in sim.list_items(mailbox_email(3))
        if dt.datetime.fromisoformat(it["end"]) > now
    )  # fmt: skip
    sim.update_item(mailbox_email(3), victim["id"], {"subject": "Renamed by its owner"})
    sim.delete_item(mailbox_email(4), sim.list_items(mailbox_email(4))[0]["id"])
    runs_before = runs(db)
    claims = claim(db)
    t0 = time.time()

    out = run_chunk(claims, "test")

    assert out.quiet == MAILBOXES - 3
    assert sorted(op for op, _ in out.steps) == [ops[2], ops[3], ops[4]]
    assert {step.outcome for _, step in out.steps} == {"done"}
    # One SyncFolderItems per mailbox: the batch used the page the poll had read.
    assert sorted(calls(log, t0, "SyncFolderItems")) == sorted(mailbox_email(i) for i in ops)
    assert set(calls(log, t0, "GetItem")) == {mailbox_email(2), mailbox_email(3)}
    assert runs(db) == runs_before + 3, "a poll that wrote something is a run"
    moment = dt.datetime.now(dt.UTC)
    for i, op in ops.items():
        expected = expected_rows(sim.list_items(mailbox_email(i)), moment)
        must = {k for k, row in expected.items() if not row.get("_edge")}
        have = set(mirror_rows(db, op))
        assert must <= have <= set(expected), f"mailbox {i}: missing {must - have}, extra {have - set(expected)}"
        assert state(db, op)["in_flight"] is False
    assert created["id"] in set(mirror_rows(db, ops[2]))


def test_a_mailbox_gone_from_exchange_fails_alone(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    sim, _, ops = in_sync(db, serve)
    rows_before = {op: set(mirror_rows(db, op)) for op in ops.values()}
    sim.delete_mailbox(mailbox_email(3))

    out = run_chunk(claim(db), "test")

    assert out.quiet == MAILBOXES - 1
    assert [(op, step.outcome) for op, step in out.steps] == [(ops[3], "failed")]
    gone = state(db, ops[3])
    assert (gone["status"], gone["last_error_code"], gone["in_flight"]) == ("failed", "ErrorNonExistentMailbox", False)
    assert set(mirror_rows(db, ops[3])) == rows_before[ops[3]], "nothing already synced is lost"
    episodes = db.execute("SELECT operator_id, code FROM failure_episodes WHERE recovered_at IS NULL").fetchall()
    assert episodes == [{"operator_id": ops[3], "code": "ErrorNonExistentMailbox"}]
    assert all(state(db, op)["status"] == "active" for i, op in ops.items() if i != 3)


def test_a_sync_state_exchange_no_longer_knows_starts_a_resync(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    sim, _, ops = in_sync(db, serve)
    generation = db.execute("SELECT generation FROM sync_state WHERE operator_id = %s", (ops[4],)).fetchone()
    sim.reset_sync_states(mailbox_email(4))
    sim.create_item(mailbox_email(4), NEW_ITEM)

    out = run_chunk(claim(db), "test")

    assert out.quiet == MAILBOXES - 1
    [(op, step)] = out.steps
    assert op == ops[4] and step.outcome == "more" and step.next_token is not None
    row = db.execute("SELECT stage, generation FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert row == {"stage": "resync", "generation": generation["generation"] + 1}  # type: ignore[index]
    token: int | None = step.next_token
    while token is not None:  # the chain the task layer would run
        outcome = run_batch(source_for(current_settings()), op, token, "test")
        token = outcome.token if outcome.more else None
    expected = expected_rows(sim.list_items(mailbox_email(4)), dt.datetime.now(dt.UTC))
    have = set(mirror_rows(db, op))
    assert {k for k, r in expected.items() if not r.get("_edge")} <= have <= set(expected)
    assert state(db, op)["stage"] == "incremental"


def test_an_unexpected_error_in_one_operators_batch_does_not_stall_its_chunk(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug met in one mailbox is classified (UnexpectedError), recorded and retried like a
    transient failure; the others of the chunk go on. (Before issue 13 it was swallowed and
    left to the lease's expiry, with no code anywhere.)"""
    from calsync.runner import step as step_module

    sim, _, ops = in_sync(db, serve)
    for i in (2, 3):
        sim.create_item(mailbox_email(i), NEW_ITEM)
    real = step_module.run_batch

    def bug_in_mailbox_2(source: Any, op: int, *args: Any, **kwargs: Any) -> Any:
        if op == ops[2]:
            raise KeyError("a bug that only this mailbox's data reaches")
        return real(source, op, *args, **kwargs)

    monkeypatch.setattr(step_module, "run_batch", bug_in_mailbox_2)

    out = run_chunk(claim(db), "test")

    assert [(op, step.outcome) for op, step in out.steps] == [(ops[2], "retry"), (ops[3], "done")]
    assert out.quiet == MAILBOXES - 2 and out.deferred == []
    failing = state(db, ops[2])
    assert failing["last_error_code"] == "UnexpectedError" and failing["status"] == "retrying"
    assert failing["in_flight"] is True, "the lease is kept for the retry the task enqueues"
    assert NEW_ITEM["subject"] in {r["subject"] for r in db.execute(
        "SELECT subject FROM appointments WHERE operator_id = %s", (ops[3],)
    ).fetchall()}  # fmt: skip


def test_server_busy_defers_the_rest_of_the_chunk_past_the_back_off(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    sim, log, ops = in_sync(db, serve)
    sim.add_fault(
        {"kind": "server_busy_fault", "back_off_ms": 1500, "count": 1, "mailbox": mailbox_email(2),
         "operation": "SyncFolderItems"}
    )  # fmt: skip
    claims = claim(db)
    t0 = time.time()

    out = run_chunk(claims, "test")

    assert out.quiet == 1  # mailbox 1, polled before the fault
    [(op, step)] = out.steps
    assert op == ops[2] and step.outcome == "retry" and step.retry_in is not None and step.retry_in >= 1.5
    assert [op for op, _ in out.deferred] == [ops[i] for i in range(3, MAILBOXES + 1)]
    assert 0.0 < out.defer_seconds <= 1.5  # what is left of the back-off when mailbox 3 came up
    fired = log.faults[-1][0]
    assert [r for r in log.after(fired)] == [], "nobody called Exchange after it asked for a back-off"

    time.sleep(out.defer_seconds + 0.1)  # the task layer's countdown
    again = run_chunk(out.deferred, "test")
    assert again.quiet == MAILBOXES - 2 and again.deferred == []
    assert min(t for t, _, _ in log.after(fired)) >= fired + 1.5 - 0.05
    assert [state(db, ops[i])["in_flight"] for i in range(3, MAILBOXES + 1)] == [False] * (MAILBOXES - 2)
    assert state(db, ops[2])["in_flight"] is True, "mailbox 2 waits for its own retry, still leased"
    assert t0 < fired


def test_a_chunk_delivered_twice_polls_nothing_the_second_time(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    _, log, _ = in_sync(db, serve)
    claims = claim(db)
    assert run_chunk(claims, "test").quiet == MAILBOXES
    t0 = time.time()

    twice = run_chunk(claims, "test")

    assert (twice.quiet, twice.skipped, twice.steps, twice.deferred) == (0, MAILBOXES, [], [])
    assert log.after(t0) == []


def test_an_operator_claimed_again_is_left_to_its_new_lease(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    _, log, ops = in_sync(db, serve)
    claims = claim(db)
    # The chunk sat in the queue past the lease: the dispatcher handed operator 1 out again.
    db.execute("UPDATE sync_state SET lease_expires_at = now() - interval '1 second' WHERE operator_id = %s", (ops[1],))
    with transaction() as conn:
        [again] = lifecycle.claim_due(conn, slack_seconds=0.0, lease_seconds=600.0, limit=10)
    assert again.operator_id == ops[1]
    t0 = time.time()

    out = run_chunk(claims, "test")

    assert (out.quiet, out.skipped) == (MAILBOXES - 1, 1)
    assert mailbox_email(1) not in calls(log, t0, "SyncFolderItems")
    row = state(db, ops[1])
    assert row["in_flight"] is True, "still leased to the new claim"
    token = db.execute("SELECT lease_token FROM sync_state WHERE operator_id = %s", (ops[1],)).fetchone()
    assert token == {"lease_token": again.token}


def test_a_global_failure_stops_the_chunk_after_one_request(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from calsync.config import env

    sim, log, ops = in_sync(db, serve)
    claims = claim(db)
    refused = sim.stats.responses["http_401"]
    monkeypatch.setenv("CALSYNC_EWS_PASSWORD", "rotated-and-wrong")
    env.cache_clear()
    reset_process_state()
    t0 = time.time()

    out = run_chunk(claims, "test")

    assert [(op, step.outcome) for op, step in out.steps] == [(ops[1], "paused")]
    assert out.handed_off == claims[1:], "the others meet the pause gate as single batches"
    assert sim.stats.responses["http_401"] - refused == 1, "one 401, not one per operator"
    assert log.after(t0) == []
    assert db.execute("SELECT code FROM global_pause").fetchone() == {"code": "Unauthorized"}
    # A chunk that starts while the pause lasts polls nobody.
    assert run_chunk(claims[1:], "test").handed_off == claims[1:]
    assert sim.stats.responses["http_401"] - refused == 1 and log.after(t0) == []


def test_workers_run_the_dispatchers_chunks(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer], fleet: Callable[..., Fleet], smtp: Smtp,
    clean_redis: redis.Redis,
) -> None:  # fmt: skip
    n = 130  # above MIN_CHUNKS: chunks of 3
    sim, _, ops = in_sync(db, serve, n)
    sim.create_item(mailbox_email(7), NEW_ITEM)
    purge_queues()
    with transaction() as conn:
        claims = lifecycle.claim_due(conn, slack_seconds=0.0, lease_seconds=600.0, limit=1000)
    enqueue_chains(claims)
    assert clean_redis.llen("sync") == len(chunked(claims, 25)) < n, "one message per chunk, not per operator"
    workers = fleet(2, 4)
    wait_for(
        lambda: db.execute("SELECT count(*) AS n FROM sync_state WHERE in_flight").fetchone()["n"] == 0,  # type: ignore[index]
        60,
        "every chunk settled",
    )
    totals = db.execute("SELECT min(polls_total) AS lo, max(polls_total) AS hi FROM sync_state").fetchone()
    assert totals == {"lo": 2, "hi": 2}, "first sync + exactly one poll each"
    moment = dt.datetime.now(dt.UTC)
    expected = expected_rows(sim.list_items(mailbox_email(7)), moment)
    assert set(expected) - set(mirror_rows(db, ops[7])) <= {k for k, r in expected.items() if r.get("_edge")}
    handled = sum(log.read_text(errors="replace").count("calsync.poll_chunk[") for log in workers.logs)
    assert handled >= len(chunked(claims, 25))
