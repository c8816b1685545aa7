"""The Graph source under real `celery worker` processes, the in-process simulator's Graph
front-end (schema-checked), Postgres and a real SMTP server: throttling in the middle of a
paged first sync, a 410 in the middle of a run, an expired token, a revoked consent, and a
switch from EWS to Graph."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from calsync import celery_procs
from calsync import runtime as base
from calsync.config import env
from calsync.simulator import Simulator, SimulatorServer, generate, mailbox_email
from calsync.simulator.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT
from calsync.store import lifecycle
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from calsync.tasks.dispatch import enqueue_chains
from calsync.tasks.sync import global_pause_active
from tests.failures.conftest import (  # noqa: F401  (fixtures)
    DIGEST_SECONDS,
    RECIPIENTS,
    Smtp,
    clean_failures,
    instrument,
    purge_queues,
    smtp,
    wait_for,
)
from tests.graph.conftest import add_edge_cases
from tests.integration.truth import diff, expected_rows, mirror_rows

pytestmark = [pytest.mark.usefixtures("clean_failures", "graph_env"), pytest.mark.timeout(240)]
CALSYNC = str(Path(sys.executable).parent / "calsync")
GRAPH_PREFIX = "AQMk"  # the simulator's Graph ids are its EWS ids behind this prefix


@pytest.fixture
def graph_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CALSYNC_EWS_USERNAME", "svc-calsync")
    monkeypatch.setenv("CALSYNC_EWS_PASSWORD", "Simulat0r!")
    monkeypatch.setenv("CALSYNC_GRAPH_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    monkeypatch.setenv("CALSYNC_NOTIFY_DIGEST_SECONDS", DIGEST_SECONDS)
    env.cache_clear()
    base.reset_process_state()
    yield
    env.cache_clear()
    base.reset_process_state()


@pytest.fixture
def served() -> Iterator[Callable[[Simulator], SimulatorServer]]:
    servers: list[SimulatorServer] = []

    def start(sim: Simulator) -> SimulatorServer:
        srv = SimulatorServer(sim).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
        stats = srv.simulator.get_stats()
        assert stats["schema_violations"] == 0, stats["schema_errors"]


@pytest.fixture
def workers(tmp_path: Path, database_url: str, redis_url: str, smtp: Smtp) -> Iterator[Callable[..., list[Path]]]:  # noqa: F811
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int = 2, concurrency: int = 4) -> list[Path]:
        worker_env = {
            "CALSYNC_DATABASE_URL": database_url,
            "CALSYNC_REDIS_URL": redis_url,
            "CALSYNC_EWS_USERNAME": "svc-calsync",
            "CALSYNC_EWS_PASSWORD": "Simulat0r!",
            "CALSYNC_GRAPH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "CALSYNC_SMTP_URL": smtp.url,
            "CALSYNC_SMTP_FROM": "calsync@example.com",
            "CALSYNC_NOTIFY_DIGEST_SECONDS": DIGEST_SECONDS,
        }
        logs = []
        for i in range(count):
            log = tmp_path / f"graph-worker{i}.log"
            logs.append(log)
            started.append(
                celery_procs.start_worker(
                    f"graph{i}-{os.getpid()}", worker_env, concurrency=concurrency, log_file=log, loglevel="INFO"
                )
            )
        return logs

    yield start
    for proc in started:
        celery_procs.stop(proc, timeout=10)


def configure(server: SimulatorServer, **values: Any) -> None:
    settings: dict[str, Any] = {
        "exchange_url": server.ews_url,
        "graph_tenant_id": DEFAULT_TENANT,
        "graph_client_id": DEFAULT_CLIENT_ID,
        "graph_authority_url": server.base_url,
        "graph_base_url": server.base_url + "/v1.0",
        "notify_sync_failure_to": RECIPIENTS,
        "notification_frequency_minutes": 1,
        "poll_interval_minutes": 0.05,
        **values,
    }
    with transaction() as conn:
        for key, value in settings.items():
            settings_store.set_value(conn, key, value)
    base.reset_process_state()


def add_operators(db: psycopg.Connection[Any], emails: list[str], source: str | None) -> list[int]:
    rows = db.execute(
        "INSERT INTO operators (email, display_name, calendar_sync, source) "
        "SELECT e, split_part(e, '@', 1), true, %s FROM unnest(%s::text[]) AS e RETURNING id",
        (source, emails),
    ).fetchall()
    return [int(r["id"]) for r in rows]


def tick() -> int:
    if global_pause_active():
        return 0
    with transaction() as conn:
        claimed = lifecycle.claim_due(conn, slack_seconds=0.0, lease_seconds=600.0, limit=100_000)
    enqueue_chains(claimed)
    return len(claimed)


def statuses(db: psycopg.Connection[Any]) -> dict[str, int]:
    rows = db.execute("SELECT status, count(*) AS n FROM sync_state GROUP BY status").fetchall()
    return {r["status"]: r["n"] for r in rows}


def run_until(db: psycopg.Connection[Any], done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        tick()
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {statuses(db)}")


def graph_rows(db: psycopg.Connection[Any], operator_id: int) -> dict[str, dict[str, Any]]:
    """The mirror keyed as the truth oracle keys it (the simulator's EWS ids)."""
    out = {}
    for item_id, row in mirror_rows(db, operator_id).items():
        row = dict(row)
        if row["series_item_id"]:
            row["series_item_id"] = row["series_item_id"].removeprefix(GRAPH_PREFIX)
        out[item_id.removeprefix(GRAPH_PREFIX)] = row
    return out


def check_mirror(db: psycopg.Connection[Any], sim: Simulator, email: str, operator_id: int) -> None:
    now = dt.datetime.now(dt.UTC)
    expected = expected_rows(sim.list_items(email), now)
    horizon = now + dt.timedelta(days=365)
    for row in expected.values():  # Graph's instances stop at the window: later exceptions come with it
        if row.get("kind") == "exception" and row["original_start"] >= horizon - dt.timedelta(days=1):
            row["_edge"] = True
    problems = diff(expected, graph_rows(db, operator_id))
    assert not problems, problems[:10]
    dupes = db.execute(
        "SELECT uid, original_start, count(*) AS n FROM appointments WHERE operator_id = %s "
        "GROUP BY uid, original_start, series_item_id IS NULL HAVING count(*) > 1",
        (operator_id,),
    ).fetchall()
    assert not dupes, dupes


def test_throttled_paged_first_sync_resumes_without_partial_rows(
    db: psycopg.Connection[Any], clean_redis: redis.Redis, served: Any, workers: Any
) -> None:
    sim = generate(4, 80, seed=21, validate=True)
    add_edge_cases(sim, mailbox_email(1))
    log = instrument(sim)
    server = served(sim)
    configure(server, batch_size=25)
    emails = [mailbox_email(n) for n in range(1, 5)]
    ops = add_operators(db, emails, "graph")
    # Throttled in the middle of the paged first sync: delta pages, and $batch fetches of masters.
    sim.add_fault({"kind": "http_429", "operation": "graph_delta", "mailbox": emails[0], "count": 2, "retry_after": 2})
    sim.add_fault({"kind": "http_429", "operation": "graph_event", "mailbox": emails[1], "count": 2, "retry_after": 1})
    sim.add_fault({"kind": "http_503", "operation": "graph_delta", "mailbox": emails[2], "count": 1, "retry_after": 1})
    sim.add_fault({"kind": "mailbox_concurrency", "limit": 4})
    purge_queues()
    workers(2, 4)
    run_until(db, lambda: statuses(db) == {"active": 4}, 120, "first sync of all four through Graph")

    stats = sim.get_stats()
    assert stats["faults_injected"].get("http_429", 0) == 4 and stats["faults_injected"].get("http_503") == 1
    assert "mailbox_concurrency" not in stats["faults_injected"], "more than 4 concurrent requests for a mailbox"
    assert max(stats["concurrency"]["mailbox_peak"].values()) <= 4
    assert db.execute("SELECT count(*) AS n FROM sync_runs WHERE status = 'succeeded'").fetchone() == {"n": 4}
    for email, op in zip(emails, ops, strict=True):
        check_mirror(db, sim, email, op)
    # Retry-After was obeyed: the throttled delta requests of mailbox 1 (the first two) are each
    # followed by nothing for that mailbox until the two seconds asked for have passed.
    own = sorted(t for t, operation, mailbox in log.requests if mailbox == emails[0] and operation != "graph_token")
    deltas = sorted(t for t, operation, mailbox in log.requests if mailbox == emails[0] and operation == "graph_delta")
    for throttled in deltas[:2]:
        following = [t for t in own if t > throttled]
        assert following and following[0] - throttled >= 1.9, (throttled, following[:3])


def test_410_mid_run_and_expired_token_converge(
    db: psycopg.Connection[Any], clean_redis: redis.Redis, served: Any, workers: Any
) -> None:
    sim = generate(2, 80, seed=22, validate=True)
    ids = add_edge_cases(sim, mailbox_email(1))
    server = served(sim)
    configure(server, batch_size=10)
    emails = [mailbox_email(1), mailbox_email(2)]
    ops = add_operators(db, emails, "graph")
    purge_queues()
    workers(1, 4)
    run_until(db, lambda: statuses(db) == {"active": 2}, 90, "first sync")
    row_ids = {
        r["item_id"]: r["id"]
        for r in db.execute("SELECT id, item_id FROM appointments WHERE operator_id = %s", (ops[0],))
    }
    tokens_before = sim.get_stats()["requests"].get("graph_token", 0)

    # While mailbox 1 changes, its delta token is lost (410) and the app's token expires.
    victim = next(i for i in sim.list_items(emails[0]) if i["recurrence"] is None and i["id"] not in ids.values())
    sim.delete_item(emails[0], victim["id"])
    sim.update_item(emails[0], ids["private"], {"subject": "Dentist"})
    today = dt.date.today()
    created = sim.create_item(
        emails[0], {"subject": "New", "start": f"{today + dt.timedelta(days=1)}T10:00:00", "end": f"{today + dt.timedelta(days=1)}T11:00:00", "timezone": "Europe/Berlin"}
    )  # fmt: skip
    t0 = db.execute("SELECT now() AS t").fetchone()["t"]
    sim.add_fault({"kind": "delta_gone", "mailbox": emails[0], "count": 1})
    sim.add_fault({"kind": "token_expired", "mailbox": emails[1], "count": 1})
    db.execute("UPDATE sync_state SET next_poll_at = now()")
    run_until(
        db,
        lambda: (
            db.execute(
                "SELECT count(*) AS n FROM sync_state WHERE status = 'active' AND stage = 'incremental' "
                "AND last_success_at > %s AND (operator_id <> %s OR generation = 1)",
                (t0, ops[0]),
            ).fetchone()["n"]
            == 2
        ),
        90,
        "the resync after the 410",
    )
    stats = sim.get_stats()
    assert stats["faults_injected"].get("delta_gone") == 1 and stats["faults_injected"].get("token_expired") == 1
    assert stats["requests"]["graph_token"] > tokens_before, "the expired token was replaced"
    assert db.execute("SELECT count(*) AS n FROM failure_episodes").fetchone() == {"n": 0}
    assert (
        db.execute("SELECT generation FROM sync_state WHERE operator_id = %s", (ops[0],)).fetchone()["generation"] == 1
    )
    for email, op in zip(emails, ops, strict=True):
        check_mirror(db, sim, email, op)
    after = {
        r["item_id"]: r["id"]
        for r in db.execute("SELECT id, item_id FROM appointments WHERE operator_id = %s", (ops[0],))
    }
    assert GRAPH_PREFIX + victim["id"] not in after
    assert GRAPH_PREFIX + created["id"] in after
    kept = set(row_ids) & set(after)
    assert len(kept) >= len(row_ids) - 5 and all(row_ids[i] == after[i] for i in kept), "the resync kept the rows"


def test_revoked_consent_fails_every_operator_once_one_digest(
    db: psycopg.Connection[Any],
    clean_redis: redis.Redis,
    served: Any,
    workers: Any,
    smtp: Smtp,  # noqa: F811
) -> None:
    sim = generate(10, 20, seed=23)
    server = served(sim)
    configure(server)
    add_operators(db, [mailbox_email(n) for n in range(1, 11)], "graph")
    purge_queues()
    workers(2, 4)
    run_until(db, lambda: statuses(db) == {"active": 10}, 90, "first sync")

    sim.add_fault({"kind": "consent_revoked"})  # an administrator withdrew the app's admin consent
    db.execute("UPDATE sync_state SET next_poll_at = now()")
    requests_before = sim.get_stats()["requests_total"]
    run_until(db, lambda: statuses(db) == {"failed": 10}, 60, "every operator failed")
    for _ in range(10):  # more ticks: failed operators are not hammered, and still one email
        tick()
        time.sleep(0.3)
    smtp.wait(1)
    time.sleep(1.5)
    assert len(smtp.mails) == 1, [m.subject for m in smtp.mails]
    digest = smtp.mails[0]
    assert "GraphConsentMissing" in digest.body and "Grant admin consent" in digest.body
    assert all(mailbox_email(n) in digest.body for n in range(1, 11))
    assert db.execute("SELECT count(*) AS n FROM global_pause").fetchone() == {"n": 0}, "nobody else is stopped"
    stats = sim.get_stats()
    denied = stats["responses"].get("graph_403_ErrorAccessDenied", 0)
    assert denied == 10, denied  # once per operator
    assert stats["requests_total"] - requests_before <= 40  # each: its poll, the retry with a fresh token, tokens


def test_switch_from_ews_to_graph_keeps_row_ids(
    db: psycopg.Connection[Any], clean_redis: redis.Redis, served: Any, workers: Any
) -> None:
    sim = generate(3, 100, seed=24, validate=True)
    add_edge_cases(sim, mailbox_email(1))
    server = served(sim)
    configure(server, batch_size=50)
    emails = [mailbox_email(n) for n in range(1, 4)]
    ops = add_operators(db, emails, None)  # the default source: EWS
    purge_queues()
    workers(2, 4)
    run_until(db, lambda: statuses(db) == {"active": 3}, 90, "first sync through EWS")
    horizon = dt.datetime.now(dt.UTC) + dt.timedelta(days=364)
    before = {
        (r["operator_id"], r["uid"], r["original_start"]): r["id"]
        for r in db.execute(
            "SELECT id, operator_id, uid, original_start FROM appointments "
            "WHERE original_start IS NULL OR original_start < %s",
            (horizon,),
        )
    }
    assert sim.get_stats()["requests"].get("graph_delta", 0) == 0

    result = subprocess.run(
        [CALSYNC, "operators", "source", "graph", *emails[:2]], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "2 switched" in result.stdout
    base.reset_process_state()
    run_until(
        db,
        lambda: (
            statuses(db) == {"active": 3}
            and db.execute(
                "SELECT count(*) AS n FROM sync_state WHERE stage = 'incremental' AND generation = 1"
            ).fetchone()["n"]
            == 2
        ),
        90,
        "the resync through Graph",
    )
    after = {
        (r["operator_id"], r["uid"], r["original_start"]): (r["id"], r["item_id"])
        for r in db.execute("SELECT id, item_id, operator_id, uid, original_start FROM appointments")
    }
    for op, email in zip(ops[:2], emails[:2], strict=True):
        check_mirror(db, sim, email, op)
        keys = [k for k in before if k[0] == op]
        assert keys and all(after[k][0] == before[k] for k in keys if k in after), "row ids kept"
        assert all(after[k][1].startswith(GRAPH_PREFIX) for k in keys if k in after)
        assert sum(k in after for k in keys) >= len(keys) - 3  # at most edge rows of the window
    untouched = [k for k in before if k[0] == ops[2]]
    assert all(after[k][0] == before[k] and not after[k][1].startswith(GRAPH_PREFIX) for k in untouched)
    assert sim.get_stats()["requests"].get("graph_delta", 0) > 0
