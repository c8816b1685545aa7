"""Graph change notifications end to end: the simulator's Graph front-end subscribing and
notifying like Graph, the real listener process, workers, a beat, Postgres and Redis.

Polling is set to a day, so only push (or a lifecycle event) can explain a change reaching
the mirror. Time is scaled on both sides (CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS and
CALSYNC_PUSH_MINUTE_SECONDS). Scenarios are combined so that each file starts one fleet:

- the default-suite test (one fleet, MINUTE = 0.05 s: a subscription lives 3.5 min, an
  hour lasts 3 s): a failed handshake leaves no subscription; push alone explains changes;
  duplicates and late notifications leave the mirror exact; reauthorizationRequired renews;
  missed and subscriptionRemoved converge; the listener down for a scaled hour loses nothing;
  a disabled operator's subscription is deleted at Graph.
- the slow test (MINUTE = 0.002 s: 10 days in 29 s): no subscription lapses and no 10-minute
  window holds more than its share of renewals; a subscription Graph forgot (404 on renewal)
  is made again and the gap caught up.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from calsync import celery_procs
from calsync.push import renewal
from calsync.simulator import SimulatorClient, SimulatorProcess
from calsync.simulator.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from tests.distributed.stack import Stack, connect, free_port, insert_operators, wait_for
from tests.integration.truth import diff, expected_rows, mirror_rows

GRAPH_PREFIX = "AQMk"  # the simulator's Graph ids are its EWS ids behind this prefix
CALSYNC = str(Path(sys.executable).parent / "calsync")


@dataclass
class GraphStack:
    stack: Stack
    sim: SimulatorProcess
    client: SimulatorClient
    operators: dict[str, int]
    database_url: str
    minute: float
    port: int = 0
    notes: list[str] = field(default_factory=list)

    def listener(self) -> None:
        self.stack.procs["listener"] = celery_procs.start_listener(
            self.stack.env, self.port, log_file=self.stack.logs / "listener.log"
        )
        wait_for(lambda: _healthy(self.port), 30, "the listener", interval=0.2)

    def stop_listener(self) -> None:
        celery_procs.stop(self.stack.procs["listener"], timeout=5)

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with connect(self.database_url) as conn:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]

    def active(self) -> dict[int, str]:
        rows = self.query(
            "SELECT operator_id, subscription_id FROM push_subscriptions WHERE state = 'active' AND mode = 'graph'"
        )
        return {r["operator_id"]: r["subscription_id"] for r in rows}

    def graph_subs(self) -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in self.client.graph_subscriptions()}

    def wait_subscribed(self, emails: list[str], timeout: float = 90) -> dict[int, str]:
        ops = {self.operators[e] for e in emails}

        def done() -> bool:
            active = self.active()
            sim = self.graph_subs()
            return ops <= set(active) and all(sim.get(active[o], {}).get("state") == "active" for o in ops)

        try:
            wait_for(done, timeout, f"{len(ops)} operator(s) subscribed at Graph", 0.2)
        except AssertionError as exc:
            why = self.query("SELECT operator_id, last_error, subscribe_attempts, next_subscribe_at FROM push_status")
            subs = self.query("SELECT operator_id, state, end_reason FROM push_subscriptions ORDER BY id")
            polls = self.query("SELECT operator_id, status, stage, last_success_at FROM sync_state")
            raise AssertionError(f"{exc}: push_status {why}; subscriptions {subs}; sync_state {polls}") from exc
        return {o: s for o, s in self.active().items() if o in ops}

    def mirrored_item(self, email: str) -> str:
        rows = self.query(
            "SELECT item_id FROM appointments WHERE operator_id = %s AND kind = 'single' AND NOT details_withheld "
            "ORDER BY item_id LIMIT 1",
            self.operators[email],
        )
        assert rows, f"{email} has no single, non-private appointment in the mirror"
        return str(rows[0]["item_id"])

    def subject(self, email: str, graph_id: str) -> str | None:
        rows = self.query(
            "SELECT subject FROM appointments WHERE operator_id = %s AND item_id = %s", self.operators[email], graph_id
        )
        return rows[0]["subject"] if rows else None

    def exact(self, email: str) -> list[str]:
        """Differences between the mirror and the simulator's truth (empty: exact)."""
        now = dt.datetime.now(dt.UTC)
        expected = expected_rows(self.client.list_items(email), now)
        horizon = now + dt.timedelta(days=365)
        for row in expected.values():  # Graph's instances stop at the window
            if row.get("kind") == "exception" and row["original_start"] >= horizon - dt.timedelta(days=1):
                row["_edge"] = True
        with connect(self.database_url) as conn:
            actual = {}
            for item_id, row in mirror_rows(conn, self.operators[email]).items():
                row = dict(row)
                if row["series_item_id"]:
                    row["series_item_id"] = row["series_item_id"].removeprefix(GRAPH_PREFIX)
                actual[item_id.removeprefix(GRAPH_PREFIX)] = row
        return diff(expected, actual)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CALSYNC, *args], env={**os.environ, **self.stack.env}, capture_output=True, text=True)

    def polls_a_day_ahead(self) -> bool:
        rows = self.query("SELECT next_poll_at, in_flight FROM sync_state")
        return all(
            not r["in_flight"] and r["next_poll_at"] > dt.datetime.now(dt.UTC) + dt.timedelta(hours=20) for r in rows
        )


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def graph_stack(db: Any, clean_redis: Any, database_url: str, redis_url: str) -> Iterator[Callable[..., GraphStack]]:
    made: list[GraphStack] = []

    def _make(mailboxes: int, minute: float, before_operators: Callable[[SimulatorClient], None] | None = None,
              sweep: float = 0.5) -> GraphStack:  # fmt: skip
        sim = SimulatorProcess(
            mailboxes=mailboxes, appointments=4, seed=17, validate=True,
            env={"CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS": str(minute)},
        )  # fmt: skip
        sim.start()
        stack = Stack(
            {
                "CALSYNC_DATABASE_URL": database_url,
                "CALSYNC_REDIS_URL": redis_url,
                "CALSYNC_GRAPH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
                "CALSYNC_DISPATCH_TICK_SECONDS": "1",
                "CALSYNC_PUSH_SWEEP_SECONDS": str(sweep),
                "CALSYNC_PUSH_MINUTE_SECONDS": str(minute),
                "CALSYNC_LEASE_SECONDS": "20",
            }
        )
        client = sim.client()
        gs = GraphStack(stack, sim, client, {}, database_url, minute, free_port())
        made.append(gs)
        if before_operators:
            before_operators(client)
        with transaction() as conn:
            for key, value in (
                ("exchange_url", sim.ews_url),
                ("graph_tenant_id", DEFAULT_TENANT),
                ("graph_client_id", DEFAULT_CLIENT_ID),
                ("graph_authority_url", sim.base_url),
                ("graph_base_url", sim.base_url + "/v1.0"),
                ("source", "graph"),
                ("notification_url", f"http://127.0.0.1:{gs.port}/crm/push"),
                ("notification_frequency_minutes", 30),
                ("poll_interval_minutes", 1440),
                ("push_safety_poll_minutes", 1440),
            ):
                settings_store.set_value(conn, key, value)
        emails = [m["email"] for m in client.list_mailboxes()]
        with connect(database_url) as conn:
            gs.operators = insert_operators(conn, emails)
        gs.listener()
        stack.worker("w1", concurrency=6)
        stack.beat("beat")
        return gs

    yield _make
    for gs in made:
        try:
            stats = gs.client.stats()
            print("logs in", gs.stack.logs, "\n", gs.stack.dump_logs())
        finally:
            gs.stack.stop_all()
            gs.sim.stop()
        assert stats["schema_violations"] == 0, stats["schema_errors"]


def test_graph_push_end_to_end(graph_stack: Callable[..., GraphStack]) -> None:
    refused: list[str] = []

    def handshake_fails_for_the_last(client: SimulatorClient) -> None:
        email = client.list_mailboxes()[-1]["email"]
        refused.append(email)
        client.add_fault(kind="graph_handshake_fail", mailbox=email)

    gs = graph_stack(mailboxes=4, minute=0.05, before_operators=handshake_fails_for_the_last)
    emails = [e for e in gs.operators if e not in refused]
    subs = gs.wait_subscribed(emails)

    # A wrong handshake: Graph refused the subscription, calsync says why and holds none.
    bad = gs.operators[refused[0]]
    wait_for(
        lambda: any(
            r["last_error"] == "GraphSubscriptionValidationFailed"
            for r in gs.query("SELECT last_error FROM push_status WHERE operator_id = %s", bad)
        ),
        30, "the refused subscription recorded",
    )  # fmt: skip
    assert bad not in gs.active()
    assert (
        "last subscribe error GraphSubscriptionValidationFailed" in gs.cli("status", "--no-broker", refused[0]).stdout
    )
    assert not [s for s in gs.graph_subs().values() if s["mailbox"] == refused[0] and s["state"] == "active"]
    # Once the handshake is answered right, the retry (backing off) subscribes it.
    gs.client.clear_faults()
    subs.update(gs.wait_subscribed([refused[0]]))

    # Push alone explains a change: every poll is a day away.
    wait_for(gs.polls_a_day_ahead, 30, "polls scheduled a day ahead")
    first, second, third = emails
    item = gs.mirrored_item(first)
    sim_id = item.removeprefix(GRAPH_PREFIX)
    gs.client.update_item(first, sim_id, {"subject": "moved by Graph push"})
    wait_for(lambda: gs.subject(first, item) == "moved by Graph push", 20, "the change in the mirror", 0.1)
    assert gs.active()[gs.operators[first]] == subs[gs.operators[first]]  # same subscription, nothing recreated
    assert gs.graph_subs()[subs[gs.operators[first]]]["delivered"] >= 1

    # Duplicates and late (out-of-order) notifications leave the mirror exact.
    gs.client.add_fault(kind="graph_duplicate", mailbox=second, rate=1.0)
    gs.client.add_fault(kind="graph_late", mailbox=second, rate=0.5)
    target = gs.mirrored_item(second).removeprefix(GRAPH_PREFIX)
    for n in range(4):
        gs.client.update_item(second, target, {"subject": f"edit {n}"})
    made = gs.client.create_item(
        second, {"subject": "new by push", "start": (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime(
            "%Y-%m-%dT10:00:00"), "end": (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%dT11:00:00"),
            "timezone": "UTC"},
    )  # fmt: skip
    wait_for(lambda: gs.subject(second, GRAPH_PREFIX + made["id"]) == "new by push", 20, "the created item", 0.1)
    wait_for(lambda: not gs.exact(second), 20, "the mirror exact after duplicates and late ones", 0.3)
    sub2 = gs.graph_subs()[subs[gs.operators[second]]]
    assert sub2["duplicated"] >= 1
    gs.client.clear_faults()

    # reauthorizationRequired: calsync reauthorizes and renews the subscription.
    sub_id = subs[gs.operators[third]]
    gs.client.graph_lifecycle(sub_id, "reauthorizationRequired")
    wait_for(lambda: gs.graph_subs()[sub_id]["reauthorizations"] and gs.graph_subs()[sub_id]["renewals"],
             20, "reauthorized and renewed", 0.2)  # fmt: skip
    assert gs.query("SELECT renewals FROM push_subscriptions WHERE subscription_id = %s", sub_id)[0]["renewals"] >= 1

    # missed: notifications were lost (here held back for a scaled week); calsync syncs by delta.
    gs.client.graph_options(late_minutes=10_080)
    gs.client.add_fault(kind="graph_late", mailbox=third, rate=1.0)
    item3 = gs.mirrored_item(third)
    gs.client.update_item(third, item3.removeprefix(GRAPH_PREFIX), {"subject": "seen through missed"})
    time.sleep(1.0)
    assert gs.subject(third, item3) != "seen through missed"  # the notification is held back
    gs.client.graph_lifecycle(sub_id, "missed")
    wait_for(lambda: gs.subject(third, item3) == "seen through missed", 20, "missed -> delta sync", 0.1)
    gs.client.clear_faults()

    # subscriptionRemoved: a new subscription, and a change made meanwhile is caught up.
    gs.client.graph_lifecycle(sub_id, "subscriptionRemoved")
    gs.client.update_item(third, item3.removeprefix(GRAPH_PREFIX), {"subject": "after removal"})
    wait_for(lambda: gs.active().get(gs.operators[third], sub_id) != sub_id, 30, "subscribed again", 0.2)
    new_id = gs.active()[gs.operators[third]]
    assert gs.graph_subs()[sub_id]["state"] == "removed" and gs.graph_subs()[new_id]["state"] == "active"
    wait_for(lambda: gs.subject(third, item3) == "after removal", 20, "the gap caught up", 0.1)
    wait_for(lambda: not gs.query("SELECT 1 FROM push_status WHERE dead_since IS NOT NULL"), 20, "push healthy again")

    # The listener down for a scaled hour (3 s here; Graph retries for 4 hours), then back: nothing lost.
    gs.stop_listener()
    during = {e: gs.mirrored_item(e) for e in (first, second)}
    for e, graph_id in during.items():
        gs.client.update_item(e, graph_id.removeprefix(GRAPH_PREFIX), {"subject": f"outage {e}"})
    time.sleep(60 * gs.minute)
    assert all(gs.subject(e, i) != f"outage {e}" for e, i in during.items())  # nothing else brings it
    gs.listener()
    for e, graph_id in during.items():
        wait_for(lambda e=e, i=graph_id: gs.subject(e, i) == f"outage {e}", 30, f"{e}'s change after the outage", 0.2)
        wait_for(lambda e=e: not gs.exact(e), 20, f"{e} exact after the outage", 0.3)
    assert any(gs.graph_subs()[subs[gs.operators[e]]]["retried"] for e in during)
    assert gs.active()[gs.operators[first]] == subs[gs.operators[first]]  # the same subscription throughout

    # calsync status shows the Graph subscriptions like EWS ones.
    report = json.loads(gs.cli("status", "--json", "--no-broker").stdout)
    graph = report["push"]["by_mode"]["graph"]
    assert graph["subscribed"] == 4 and graph["healthy"] == 4 and graph["dead"] == 0
    assert "graph: 4 subscribed (4 healthy)" in gs.cli("status", "--no-broker").stdout

    # A disabled operator's subscription is deleted at Graph.
    first_sub = gs.active()[gs.operators[first]]
    assert gs.cli("operators", "disable", first).returncode == 0
    wait_for(lambda: gs.graph_subs()[first_sub]["state"] == "deleted", 30, "deleted at Graph", 0.2)
    assert gs.operators[first] not in gs.active()


@pytest.mark.slow
def test_ten_days_of_renewals_without_a_lapse_or_a_burst(graph_stack: Callable[..., GraphStack]) -> None:
    minute = 0.002  # 10 days = 28.8 s; a subscription lives 8.4 s and is renewed after 5.5-7.1 s
    gs = graph_stack(mailboxes=8, minute=minute, sweep=0.2)
    emails = list(gs.operators)
    subs = gs.wait_subscribed(emails)
    start = dt.datetime.now(dt.UTC)
    end = start + dt.timedelta(seconds=14_400 * minute)

    # A subscription Graph forgot silently: the change made meanwhile is not notified; the
    # renewal's 404 makes calsync subscribe again and catch the gap up.
    lost_email = emails[0]
    lost = subs[gs.operators[lost_email]]
    gs.client.kill_graph_subscription(lost)
    item = gs.mirrored_item(lost_email)
    gs.client.update_item(lost_email, item.removeprefix(GRAPH_PREFIX), {"subject": "while forgotten"})
    wait_for(lambda: gs.subject(lost_email, item) == "while forgotten", 30, "the gap caught up after the 404", 0.2)
    assert gs.query("SELECT end_reason FROM push_subscriptions WHERE subscription_id = %s", lost)[0]["end_reason"] == (
        "not found at renewal"
    )

    while dt.datetime.now(dt.UTC) < end:
        time.sleep(1.0)
    sim = gs.graph_subs()
    # No lapse: Graph expired none of them, and calsync found none lapsed.
    assert not [s for s in sim.values() if s["state"] == "expired"], sim
    assert not gs.query("SELECT 1 FROM push_subscriptions WHERE end_reason = 'lapsed'")
    assert len(gs.active()) == len(emails)
    assert all(sim[s]["state"] == "active" for s in gs.active().values())
    # No burst: renewals per 10-minute window, against a generation's share of the 20% band.
    instants = [renewal.parse_expiration(t) for s in sim.values() for t in s["renewals"]]
    instants = [t for t in instants if start <= t < end]
    assert len(instants) >= 3 * (len(emails) - 1)
    window = dt.timedelta(seconds=10 * minute)
    busiest = max(collections.Counter((t - start) // window for t in instants).values())
    share = math.ceil(len(emails) * 10 / ((renewal.SPREAD_HIGH - renewal.SPREAD_LOW) * renewal.LIFETIME_MINUTES))
    print(f"renewals in 10 simulated days: {len(instants)}, busiest 10-minute window: {busiest}, share: {share}")
    assert busiest <= share + 1, (busiest, share, sorted(instants))
