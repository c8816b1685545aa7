"""Failures across a fleet: real `celery worker` processes, the in-process simulator, real SMTP.

The simulator records when each request arrived and when each fault fired, so "nobody
called Exchange during the back-off" is read from Exchange's side, not from calsync's logs.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from prometheus_client import CollectorRegistry, multiprocess

from calsync.simulator import SimulatorServer, generate, mailbox_email
from calsync.store import lifecycle
from calsync.store.db import transaction
from calsync.tasks.dispatch import enqueue_chains
from calsync.tasks.sync import global_pause_active
from tests.integration.truth import expected_rows, mirror_rows

from .conftest import Fleet, Smtp, add_operators, configure, free_port, instrument, purge_queues, wait_for

pytestmark = [pytest.mark.usefixtures("clean_failures", "service_env"), pytest.mark.timeout(180)]


def tick() -> int:
    """One dispatcher tick as calsync.dispatch runs it (minus the slot bookkeeping), honouring the pause."""
    if global_pause_active():
        return 0
    with transaction() as conn:
        claimed = lifecycle.claim_due(conn, slack_seconds=0.0, lease_seconds=600.0, limit=100_000)
    enqueue_chains(claimed)
    return len(claimed)


def statuses(db: psycopg.Connection[Any]) -> dict[str, int]:
    rows = db.execute("SELECT status, count(*) AS n FROM sync_state GROUP BY status").fetchall()
    return {r["status"]: r["n"] for r in rows}


def ews_requests(fleet: Fleet, status: str | None = None) -> float:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(fleet.metrics_dir))
    total = 0.0
    for metric in registry.collect():
        if metric.name == "calsync_ews_requests":
            for sample in metric.samples:
                if sample.name.endswith("_total") and (status is None or sample.labels["status"] == status):
                    total += sample.value
    return total


def handled_batches(log: Path) -> int:
    return log.read_text(errors="replace").count("calsync.sync_batch[") if log.exists() else 0


def test_server_busy_back_off_holds_every_worker(
    db: psycopg.Connection[Any], clean_redis: redis.Redis, smtp: Smtp, fleet: Callable[..., Fleet],
    serve: Callable[..., SimulatorServer],
) -> None:  # fmt: skip
    sim = generate(10, 40, seed=3)
    log = instrument(sim)
    server = serve(sim)
    configure(server.ews_url, notification_frequency_minutes=30, poll_interval_minutes=60, batch_size=3)
    ops = add_operators(db, [mailbox_email(n) for n in range(1, 11)])
    purge_queues()
    workers = fleet(2, 4)
    sim.add_fault(
        {"kind": "server_busy_fault", "back_off_ms": 2000, "count": 1, "mailbox": mailbox_email(1),
         "operation": "SyncFolderItems"}
    )  # fmt: skip
    db.execute("UPDATE sync_state SET next_poll_at = now() + interval '1 day' WHERE operator_id <> %s", (ops[0],))
    assert tick() == 1
    wait_for(lambda: log.faults, 60, "the ErrorServerBusy fault")
    fault_at = log.faults[0][0]
    key = "calsync:ews:notbefore:svc-calsync"
    wait_for(lambda: clean_redis.get(key), 10, "the fleet-wide back-off")
    # Now every other operator's chain starts, on both workers, while the back-off runs.
    db.execute("UPDATE sync_state SET next_poll_at = now() WHERE operator_id <> %s", (ops[0],))
    assert tick() == 9
    wait_for(lambda: statuses(db).get("active") == 10, 90, "all ten mailboxes in sync")

    early = [r for r in log.requests if fault_at < r[0] < fault_at + 2.0]
    assert early == [], f"{len(early)} request(s) reached Exchange within 2 s of ErrorServerBusy: {early[:5]}"
    assert len(log.after(fault_at + 2.0)) >= 20, "the syncs ran after the back-off"
    assert all(handled_batches(p) > 0 for p in workers.logs), "both worker processes synced batches"
    assert smtp.mails == []


def test_one_nonexistent_mailbox_among_100(
    db: psycopg.Connection[Any], clean_redis: redis.Redis, smtp: Smtp, fleet: Callable[..., Fleet],
    serve: Callable[..., SimulatorServer], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    sim = generate(99, 5, seed=8)
    server = serve(sim)
    configure(server.ews_url, notification_frequency_minutes=30, poll_interval_minutes=60)
    emails = [mailbox_email(n) for n in range(1, 100)]
    emails.insert(random.Random(4).randrange(100), "ghost@example.com")
    ops = dict(zip(emails, add_operators(db, emails), strict=True))
    purge_queues()
    workers = fleet(2, 8)
    assert tick() == 100
    wait_for(lambda: statuses(db) == {"active": 99, "failed": 1}, 120, "99 active and 1 failed")
    ghost = db.execute(
        "SELECT status, last_error_code, in_flight, next_poll_at > now() + interval '30 minutes' AS later "
        "FROM sync_state WHERE operator_id = %s",
        (ops["ghost@example.com"],),
    ).fetchone()
    assert ghost == {"status": "failed", "last_error_code": "ErrorNonExistentMailbox", "in_flight": False,
                     "later": True}  # fmt: skip

    moment = dt.datetime.now(dt.UTC)
    for email in emails:
        if email != "ghost@example.com":
            expected = expected_rows(sim.list_items(email), moment)
            must = {k for k, row in expected.items() if not row.get("_edge")}
            have = set(mirror_rows(db, ops[email]))
            assert must <= have <= set(expected), f"{email}: missing {must - have}, extra {have - set(expected)}"

    smtp.wait(1)
    time.sleep(2.5)  # a second digest window: nothing more may arrive
    assert len(smtp.mails) == 1
    mail = smtp.mails[0]
    assert "ghost@example.com" in mail.subject and "ErrorNonExistentMailbox" in mail.body
    assert sorted(mail.recipients) == ["crm-admin@example.com", "ops@example.com"]

    # The exporter aggregates every worker's samples and reads the statuses from Postgres.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(workers.metrics_dir))
    from prometheus_client import start_http_server

    from calsync.metrics import exporter_registry

    port = free_port()
    httpd, _thread = start_http_server(port, addr="127.0.0.1", registry=exporter_registry())
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        httpd.shutdown()
    assert 'calsync_operators{status="active"} 99.0' in text
    assert 'calsync_operators{status="failed"} 1.0' in text
    assert 'calsync_sync_errors_total{code="ErrorNonExistentMailbox",disposition="operator"} 1.0' in text
    assert 'calsync_ews_requests_total{operation="SyncFolderItems",status="200"}' in text
    assert "calsync_sync_run_duration_seconds_count" in text and 'calsync_items_total{change="created"}' in text


def test_exchange_unreachable_for_everyone_one_digest_bounded_requests(
    db: psycopg.Connection[Any], clean_redis: redis.Redis, smtp: Smtp, fleet: Callable[..., Fleet],
    serve: Callable[..., SimulatorServer],
) -> None:  # fmt: skip
    sim = generate(20, 60, seed=12)
    server = serve(sim)
    port = server.port
    configure(server.ews_url, notification_frequency_minutes=1, poll_interval_minutes=0.02)
    ops = add_operators(db, [mailbox_email(n) for n in range(1, 21)])
    purge_queues()
    workers = fleet(2, 4)
    assert tick() == 20
    wait_for(lambda: statuses(db) == {"active": 20}, 60, "first sync of all")

    server.stop()  # Exchange is gone: connection refused for everyone
    before = ews_requests(workers)
    db.execute("UPDATE sync_state SET next_poll_at = now()")
    assert tick() == 20
    pause = wait_for(lambda: db.execute("SELECT * FROM global_pause").fetchone(), 30, "the global pause")
    assert pause["code"] == "ExchangeUnreachable"
    wait_for(
        lambda: db.execute("SELECT count(*) AS n FROM sync_state WHERE NOT in_flight").fetchone() == {"n": 20},
        60, "every lease given back",
    )  # fmt: skip
    # The outage began two minutes ago (notification timeout: one minute).
    db.execute("UPDATE failure_episodes SET started_at = started_at - interval '2 minutes' WHERE operator_id IS NULL")
    db.execute("UPDATE global_pause SET since = since - interval '2 minutes'")
    deadline = time.monotonic() + 60
    while not smtp.mails and time.monotonic() < deadline:
        tick()
        time.sleep(0.3)
    smtp.wait(1)
    for _ in range(10):  # more ticks and probes: still one email
        tick()
        time.sleep(0.3)
    assert len(smtp.mails) == 1, [m.subject for m in smtp.mails]
    digest = smtp.mails[0]
    assert "paused for everyone" in digest.subject and "ExchangeUnreachable" in digest.subject
    assert "ALL operators (20 with Calendar Sync on)" in digest.body
    assert sorted(digest.recipients) == ["crm-admin@example.com", "ops@example.com"]
    assert statuses(db) == {"failed": 20}
    row = db.execute("SELECT probes FROM global_pause").fetchone()
    assert row is not None, "still paused while Exchange is down"
    probes = int(row["probes"])
    failed_requests = ews_requests(workers) - before
    # One request per operator at most in the first wave (batches already running), then one per probe.
    assert failed_requests <= len(ops) + probes, (failed_requests, probes)
    assert probes <= 6

    serve(sim, port=port)  # Exchange is back
    deadline = time.monotonic() + 60
    while statuses(db) != {"active": 20} and time.monotonic() < deadline:
        tick()
        time.sleep(0.3)
    assert statuses(db) == {"active": 20}
    smtp.wait(2)
    time.sleep(1.5)
    assert len(smtp.mails) == 2
    assert "working again" in smtp.mails[1].subject
    assert db.execute("SELECT count(*) AS n FROM global_pause").fetchone() == {"n": 0}
