"""The listener process serving Graph, against real Postgres and Redis (no simulator).

The Graph subscription row is made through calsync.store.push with secrets the test knows,
and the bodies are schema-valid changeNotificationCollections (checked against
../shared/graph-schema when it is there). One listener process serves every case below:
the validation handshake (only for a live subscription's secret), forged input refused with
nothing recorded or enqueued, a burst coalesced into one pending sync, lifecycle events.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from calsync import celery_procs
from calsync.listener.kick import kick_key
from calsync.push.callback import callback_url, graph_urls, new_secret, secret_hash
from calsync.store import push
from tests.distributed.stack import Stack, connect, free_port, insert_operators, wait_for
from tests.push.test_listener import notification

SCHEMA = Path(
    os.environ.get("CALSYNC_GRAPH_SCHEMA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "graph-schema"
)
TENANT = "c0ffee00-0000-4000-8000-000000000016"
DISPATCH = "dispatch"


def schema_errors(doc: dict[str, Any]) -> list[str]:
    path = SCHEMA / "graph-calendar.schema.json"
    if not path.is_file():
        return []
    import jsonschema

    schema = json.loads(path.read_text())
    validator = jsonschema.Draft202012Validator(
        {**schema, "$ref": "#/$defs/changeNotificationCollection"}, format_checker=jsonschema.FormatChecker()
    )
    return [e.message for e in validator.iter_errors(doc)]


def changes(sub_id: str, client_state: str, n: int = 1) -> dict[str, Any]:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    items = []
    for i in range(n):
        event = f"AAMkAD{i:04d}"
        items.append({
            "subscriptionId": sub_id, "subscriptionExpirationDateTime": expires, "changeType": "updated",
            "resource": f"Users/{TENANT}/Events/{event}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": f"Users/{TENANT}/Events/{event}",
                             "@odata.etag": 'W/"DwAAABYAAAA"', "id": event},
            "clientState": client_state, "tenantId": TENANT,
        })  # fmt: skip
    return {"value": items}


def lifecycle(sub_id: str, client_state: str, event: str) -> dict[str, Any]:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    return {"value": [{"subscriptionId": sub_id, "subscriptionExpirationDateTime": expires, "lifecycleEvent": event,
                       "clientState": client_state, "tenantId": TENANT}]}  # fmt: skip


class Rig:
    def __init__(self, base_url: str, database_url: str, redis_url: str) -> None:
        self.base_url, self.database_url = base_url, database_url
        self.redis = redis.Redis.from_url(redis_url)
        with connect(database_url) as conn:
            self.op = insert_operators(conn, ["gina@example.com"])["gina@example.com"]
            conn.execute("UPDATE operators SET source = 'graph' WHERE id = %s", (self.op,))
        self.secret, self.client_state, self.sub_id = new_secret(), new_secret(), str(uuid.uuid4())
        self.change_url, self.lifecycle_url = graph_urls(base_url, self.secret)
        with connect(database_url) as conn:
            self.row = push.begin_graph(
                conn, self.op, "gina@example.com", base_url, secret_hash(self.secret), secret_hash(self.client_state)
            )
            assert self.row is not None

    def activate(self) -> None:
        now = dt.datetime.now(dt.UTC)
        with connect(self.database_url) as conn:
            assert self.row is not None
            assert push.activate_graph(
                conn, self.row, self.sub_id, now + dt.timedelta(days=2), now + dt.timedelta(days=1)
            )

    def post(self, url: str, doc: Any = None, raw: bytes | None = None, **params: str) -> requests.Response:
        body = raw if raw is not None else json.dumps(doc).encode()
        headers = {"Content-Type": "text/plain" if params else "application/json"}
        return requests.post(url, params=params, data=b"" if params else body, headers=headers, timeout=30)

    def nothing_enqueued(self) -> bool:
        return self.redis.llen(DISPATCH) == 0 and not self.redis.exists(kick_key(self.op))

    def subscription(self) -> dict[str, Any]:
        with connect(self.database_url) as conn:
            row = conn.execute("SELECT * FROM push_subscriptions WHERE id = %s", (self.row,)).fetchone()
            st = conn.execute("SELECT * FROM push_status WHERE operator_id = %s", (self.op,)).fetchone()
        assert row is not None and st is not None
        return {**dict(row), "status": dict(st)}


@pytest.fixture
def rig(db: Any, clean_redis: Any, database_url: str, redis_url: str) -> Iterator[Rig]:
    stack = Stack({"CALSYNC_DATABASE_URL": database_url, "CALSYNC_REDIS_URL": redis_url, "CALSYNC_LEASE_SECONDS": "60"})
    port = free_port()
    stack.procs["listener"] = celery_procs.start_listener(stack.env, port, log_file=stack.logs / "listener.log")

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(healthy, 30, "the listener", 0.2)
    try:
        yield Rig(f"http://127.0.0.1:{port}/push", database_url, redis_url)
    finally:
        print(stack.dump_logs())
        stack.stop_all()


def test_graph_handshake_notifications_forgeries_and_lifecycle(rig: Rig) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 7a2e/+&x"
    # The handshake is answered on both URLs while the subscription is being made, token as text/plain.
    for url in (rig.change_url, rig.lifecycle_url):
        answer = rig.post(url, validationToken=token)
        assert answer.status_code == 200 and answer.text == token
        assert answer.headers["Content-Type"].startswith("text/plain")
    # ... and refused for a secret no live Graph subscription has: Graph then refuses the subscription.
    other, _ = graph_urls(rig.base_url, new_secret())
    assert rig.post(other, validationToken=token).status_code == 403
    rig.activate()

    good = changes(rig.sub_id, rig.client_state, 3)
    assert schema_errors(good) == []
    forged = {
        "wrong clientState": (rig.change_url, changes(rig.sub_id, "not-the-client-state"), 403),
        "unknown subscription id": (rig.change_url, changes(str(uuid.uuid4()), rig.client_state), 403),
        "unknown secret": (other, good, 403),
        "the lifecycle URL with a wrong clientState": (
            rig.lifecycle_url, lifecycle(rig.sub_id, "wrong", "subscriptionRemoved"), 403),
        "two subscriptions in one POST": (
            rig.change_url, {"value": good["value"] + changes(str(uuid.uuid4()), rig.client_state)["value"]}, 400),
        "no notifications": (rig.change_url, {"value": []}, 400),
        "not JSON": (rig.change_url, None, 400),
        "a 10 MB body": (rig.change_url, None, 413),
    }  # fmt: skip
    for name, (url, doc, status) in forged.items():
        raw = None
        if name == "not JSON":
            raw = b"{not json"
        elif name == "a 10 MB body":
            raw = json.dumps(good).encode()[:-1] + b" " * (10 * 1024 * 1024) + b"}"
        answer = rig.post(url, doc, raw)
        assert answer.status_code == status, (name, answer.status_code, answer.text)
        assert rig.nothing_enqueued(), name
    # An EWS SendNotification naming the Graph subscription, at the EWS form of its URL: the
    # EWS path never hears a Graph subscription (it would skip the clientState check).
    ews_url = callback_url(rig.base_url, rig.secret)
    answer = requests.post(ews_url, data=notification(rig.sub_id, changes=1), timeout=30,
                           headers={"Content-Type": "text/xml; charset=utf-8"})  # fmt: skip
    assert answer.status_code == 403 and rig.nothing_enqueued(), answer.text
    sub = rig.subscription()
    assert sub["notifications"] == 0 and sub["status"]["last_event_at"] is None
    assert sub["state"] == "active"

    # A burst of notifications: every one answered 202, one pending sync (one kick message).
    for _ in range(20):
        assert rig.post(rig.change_url, good).status_code == 202
    sub = rig.subscription()
    assert rig.redis.llen(DISPATCH) == 1 and rig.redis.exists(kick_key(rig.op)), sub
    assert sub["notifications"] == 20 and sub["events"] == 60 and sub["status"]["last_event_at"] is not None

    # Lifecycle: reauthorizationRequired makes the renewal due now (nothing to sync) ...
    rig.redis.delete(DISPATCH, kick_key(rig.op))
    assert (
        rig.post(rig.lifecycle_url, lifecycle(rig.sub_id, rig.client_state, "reauthorizationRequired")).status_code
        == 202
    )
    sub = rig.subscription()
    assert sub["reauthorize"] and sub["renew_at"] <= dt.datetime.now(dt.UTC) and rig.nothing_enqueued()
    # ... missed owes a sync now ...
    assert rig.post(rig.lifecycle_url, lifecycle(rig.sub_id, rig.client_state, "missed")).status_code == 202
    assert rig.redis.llen(DISPATCH) == 1
    # ... subscriptionRemoved: push dead, a sync owed, and the handshake is no longer answered.
    rig.redis.delete(DISPATCH, kick_key(rig.op))
    assert (
        rig.post(rig.lifecycle_url, lifecycle(rig.sub_id, rig.client_state, "subscriptionRemoved")).status_code == 202
    )
    sub = rig.subscription()
    assert sub["state"] == "dead" and sub["end_reason"] == "subscriptionRemoved" and sub["status"]["dead_since"]
    assert rig.redis.llen(DISPATCH) == 1
    assert rig.post(rig.change_url, validationToken=token).status_code == 403
    # A late notification of the removed subscription is acknowledged and enqueues nothing.
    rig.redis.delete(DISPATCH, kick_key(rig.op))
    assert rig.post(rig.change_url, good).status_code == 202
    assert rig.nothing_enqueued()
