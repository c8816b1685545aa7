"""The listener process against real Postgres and Redis: forged notifications, coalescing, answers.

No simulator here: the subscription row is made through calsync.store.push with a secret
the test knows, and the notifications are schema-valid SendNotification bodies built below
(the simulator's own are covered by the end-to-end tests).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from lxml import etree

from calsync import celery_procs
from calsync.listener.kick import kick_key
from calsync.push.callback import callback_url, new_secret, secret_hash
from calsync.simulator.ews import validation
from calsync.source.ews.notification import OK_ANSWER, UNSUBSCRIBE_ANSWER
from calsync.store import push
from tests.distributed.stack import Stack, connect, free_port, insert_operators, wait_for

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"


def notification(sub_id: str, changes: int = 1, n: int = 0) -> bytes:
    events = (
        "".join(
            f"<t:ModifiedEvent><t:Watermark>wm{n}.{i}</t:Watermark><t:TimeStamp>2026-12-02T10:00:00Z</t:TimeStamp>"
            f'<t:ItemId Id="item{i}" ChangeKey="ck"/><t:ParentFolderId Id="cal" ChangeKey="ck"/></t:ModifiedEvent>'
            for i in range(changes)
        )
        or f"<t:StatusEvent><t:Watermark>wm{n}</t:Watermark></t:StatusEvent>"
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11="{NS_SOAP}"><soap11:Body>'
        f'<m:SendNotification xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:Notification><t:SubscriptionId>{sub_id}</t:SubscriptionId>"
        f"<t:PreviousWatermark>wm{n - 1}</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>{events}"
        "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification>"
        "</soap11:Body></soap11:Envelope>"
    ).encode()


def body_errors(payload: bytes) -> str | None:
    root = etree.fromstring(payload)
    return validation.errors(root.find(f"{{{NS_SOAP}}}Body")[0])


class Rig:
    def __init__(self, stack: Stack, url: str, database_url: str, redis_url: str) -> None:
        self.stack, self.database_url = stack, database_url
        self.base_url = url
        self.redis = redis.Redis.from_url(redis_url)
        with connect(database_url) as conn:
            self.operator_id = insert_operators(conn, ["jane@example.com"])["jane@example.com"]
        self.secret = new_secret()
        with connect(database_url) as conn:
            row = push.begin(conn, self.operator_id, "jane@example.com", url, 10, secret_hash(self.secret))
            assert row is not None
            assert push.activate(conn, row, "SUB-1", "wm0")
        self.url = callback_url(url, self.secret)

    def post(self, body: bytes, url: str | None = None) -> requests.Response:
        return requests.post(url or self.url, data=body, headers={"Content-Type": "text/xml"}, timeout=30)

    def queued(self, queue: str) -> int:
        return int(self.redis.llen(queue))

    def last_event(self) -> Any:
        with connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT last_event_at FROM push_status WHERE operator_id = %s", (self.operator_id,)
            ).fetchone()
        return row["last_event_at"] if row else None


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
        yield Rig(stack, f"http://127.0.0.1:{port}/ews/push", database_url, redis_url)
    finally:
        print(stack.dump_logs())
        stack.stop_all()


def test_forged_notifications_are_refused_and_nothing_is_enqueued(rig: Rig) -> None:
    wrong_secret = callback_url(rig.base_url, new_secret())
    cases = {
        "unknown subscription": (notification("NOT-OURS"), wrong_secret, 403),
        "wrong secret for a known subscription": (notification("SUB-1"), wrong_secret, 403),
        "no secret at all": (notification("SUB-1"), rig.base_url + "/x", 403),
        "invalid body": (b"<soap:Envelope>not a notification", rig.url, 400),
        "a SOAP body that is no SendNotification": (
            f'<s:Envelope xmlns:s="{NS_SOAP}"><s:Body><Hello/></s:Body></s:Envelope>'.encode(), rig.url, 400),
        "an entity expansion": (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><x>&a;&a;</x>', rig.url, 400),
        "a 10 MB body": (notification("SUB-1")[:-20] + b" " * (10 * 1024 * 1024) + b"</soap11:Envelope>", rig.url, 413),
    }  # fmt: skip
    for name, (body, url, status) in cases.items():
        answer = rig.post(body, url)
        assert answer.status_code == status, f"{name}: {answer.status_code} {answer.text[:200]}"
        assert b"SendNotificationResult" not in answer.content, name
    # Nothing recorded, nothing kicked, nothing queued.
    assert rig.last_event() is None
    assert rig.redis.exists(kick_key(rig.operator_id)) == 0
    assert rig.queued("dispatch") == 0 and rig.queued("sync") == 0
    with connect(rig.database_url) as conn:
        row = conn.execute("SELECT notifications, state FROM push_subscriptions").fetchone()
    assert row is not None and row["notifications"] == 0 and row["state"] == "active"

    # The right secret with another subscription id: ours, but not this subscription: Unsubscribe.
    answer = rig.post(notification("SUB-OTHER"))
    assert answer.status_code == 200 and answer.content == UNSUBSCRIBE_ANSWER
    assert rig.queued("dispatch") == 0 and rig.last_event() is None


def test_answers_validate_and_a_disabled_operator_is_answered_unsubscribe(rig: Rig) -> None:
    assert validation.available(), "../shared/ews-schema is needed"
    status = rig.post(notification("SUB-1", changes=0))
    assert status.status_code == 200 and status.content == OK_ANSWER
    assert body_errors(notification("SUB-1", changes=3)) is None
    assert body_errors(status.content) is None
    assert body_errors(UNSUBSCRIBE_ANSWER) is None
    # A StatusEvent is heard (watermark, last heard) but starts no sync.
    assert rig.queued("dispatch") == 0
    with connect(rig.database_url) as conn:
        row = conn.execute("SELECT watermark, notifications, last_heard_at FROM push_subscriptions").fetchone()
        assert row is not None and row["watermark"] == "wm0" and row["notifications"] == 1
        conn.execute("UPDATE operators SET calendar_sync = false")
    answer = rig.post(notification("SUB-1", changes=1))
    assert answer.status_code == 200 and answer.content == UNSUBSCRIBE_ANSWER
    assert rig.queued("dispatch") == 0
    with connect(rig.database_url) as conn:
        row = conn.execute("SELECT state, end_reason FROM push_subscriptions").fetchone()
    assert row is not None and row["state"] == "ended" and row["end_reason"] == "operator disabled"


def test_a_burst_gives_one_sync_and_one_more_for_changes_during_it(rig: Rig) -> None:
    # A burst of 100 notifications before any worker runs: one kick message, one pending sync.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: rig.post(notification("SUB-1", changes=1, n=n)), range(100)))
    assert all(a.status_code == 200 and a.content == OK_ANSWER for a in answers)
    assert rig.queued("dispatch") == 1
    with connect(rig.database_url) as conn:
        row = conn.execute("SELECT notifications, events FROM push_subscriptions").fetchone()
    assert row is not None and row["notifications"] == 100 and row["events"] == 100

    # A real worker on the dispatch queue only: it claims the operator and publishes its sync,
    # which nobody consumes, so the operator stays in flight as if the sync were running.
    rig.stack.worker("kicker", concurrency=2, queues="dispatch")
    wait_for(lambda: rig.queued("sync") == 1, 30, "one sync published", 0.2)
    assert rig.queued("dispatch") == 0

    # Changes while it "runs": coalesced into one more sync, started only when this one ends.
    for n in range(100, 150):
        assert rig.post(notification("SUB-1", changes=1, n=n)).status_code == 200
    time.sleep(2.0)
    assert rig.queued("sync") == 1
    with connect(rig.database_url) as conn:
        conn.execute("UPDATE sync_state SET in_flight = false, lease_expires_at = NULL WHERE operator_id = %s",
                     (rig.operator_id,))  # fmt: skip
    wait_for(lambda: rig.queued("sync") == 2, 30, "exactly one more sync", 0.2)
    time.sleep(2.0)
    assert rig.queued("sync") == 2
    with connect(rig.database_url) as conn:
        state = conn.execute("SELECT lease_owner, in_flight FROM sync_state").fetchone()
    assert state is not None and state["lease_owner"] == "push" and state["in_flight"]


def test_concurrent_notifications_share_statements_and_kick_each_operator_once(rig: Rig) -> None:
    # 20 more subscribed operators, before their first sync (a kick publishes its batch chain,
    # which nobody consumes here, in place of polling an in-sync operator in the kick itself).
    with connect(rig.database_url) as conn:
        ids = insert_operators(conn, [f"op{i}@example.com" for i in range(20)])
        secrets: dict[int, str] = {}
        for email, op in ids.items():
            if op == rig.operator_id:
                continue
            secrets[op] = new_secret()
            row = push.begin(conn, op, email, rig.base_url, 10, secret_hash(secrets[op]))
            assert row is not None and push.activate(conn, row, f"SUB-{op}", "wm0")
    secrets[rig.operator_id] = rig.secret
    subs = {op: ("SUB-1" if op == rig.operator_id else f"SUB-{op}") for op in secrets}
    # All at once (the listener groups what arrives together into one statement): two
    # changes per subscription, keep-alives, forged and superseded ones mixed in; each
    # answer is still its own.
    posts: list[tuple[str, bytes, str]] = []
    for op, secret in secrets.items():
        url = callback_url(rig.base_url, secret)
        posts += [(url, notification(subs[op], changes=1, n=n), "ok") for n in (1, 2)]
        posts.append((url, notification(subs[op], changes=0, n=3), "ok"))
        posts.append((url, notification("SUB-STALE", changes=1, n=4), "unsubscribe"))
        posts.append((callback_url(rig.base_url, new_secret()), notification(subs[op], changes=1), "forged"))
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda p: rig.post(p[1], p[0]), posts))
    for (_, _, want), got in zip(posts, answers, strict=True):
        expected = {"ok": (200, OK_ANSWER), "unsubscribe": (200, UNSUBSCRIBE_ANSWER), "forged": (403, None)}[want]
        assert got.status_code == expected[0], (want, got.status_code, got.text[:200])
        assert expected[1] is None or got.content == expected[1], want
    with connect(rig.database_url) as conn:
        rows = conn.execute(
            "SELECT p.operator_id, p.notifications, p.events, p.state, ps.last_event_at IS NOT NULL AS owed "
            "FROM push_subscriptions p JOIN push_status ps USING (operator_id)"
        ).fetchall()
    assert len(rows) == len(secrets)
    assert all(r["notifications"] == 3 and r["events"] == 2 and r["state"] == "active" and r["owed"] for r in rows)
    # One kick message per operator, and each kick claims its own operator only: one sync each,
    # none held behind another's.
    assert rig.queued("dispatch") == len(secrets)
    rig.stack.worker("kicker", concurrency=1, queues="dispatch")
    wait_for(lambda: rig.queued("dispatch") == 0, 30, "every kick run", 0.2)
    wait_for(lambda: rig.queued("sync") == len(secrets), 30, "a sync per operator", 0.2)
    time.sleep(1.0)
    assert rig.queued("sync") == len(secrets)
    with connect(rig.database_url) as conn:
        leased = conn.execute(
            "SELECT count(*) AS n FROM sync_state WHERE in_flight AND lease_owner = 'push'"
        ).fetchone()
    assert leased is not None and leased["n"] == len(secrets)
