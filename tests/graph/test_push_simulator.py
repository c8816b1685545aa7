"""The simulator's Graph change notifications, against a tiny aiohttp endpoint standing in for the
listener: the handshake (a wrong echo means no subscription), the subscription API's limits,
schema-valid notifications, retries then delivery, the drop after a scaled 4 hours, the slow
endpoint's delay and drop, duplicates and late ones, lifecycle events, lapsing at expiry.

The push clock runs at 4 ms a minute (4 hours = 1 s), so the whole file takes seconds. Margins
(expiry limits, slow vs fast answers) are wide enough for a loaded machine."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from aiohttp import web

from calsync.simulator import Simulator, SimulatorServer
from calsync.simulator.client import SimulatorClient, SimulatorClientError
from calsync.simulator.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT, push, validation
from calsync.simulator.graph.push import user_id

MAILBOX = "push@example.com"
OTHER = "other@example.com"
MINUTE = 0.004  # real seconds per simulated minute: 4 hours = 1 s, the longest lifetime 17 s


@dataclass
class Listener:
    """Answers like a listener, or wrongly on request; records everything it receives."""

    echo: bool = True  # the handshake echoes the token
    echo_lifecycle: bool = True
    fail: int = 0  # the next `fail` notification POSTs answer 500
    always_fail: bool = False
    slow: float = 0.0  # seconds each notification POST takes
    handshakes: list[tuple[str, str]] = field(default_factory=list)  # (path, token)
    notifications: list[dict[str, Any]] = field(default_factory=list)  # every item, in arrival order
    posts: int = 0
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "notify") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        lifecycle = request.path == "/lifecycle"
        if token is not None:
            self.handshakes.append((request.path, token))
            good = self.echo_lifecycle if lifecycle else self.echo
            return web.Response(text=token if good else "nope", content_type="text/plain")
        body = await request.json()
        if lifecycle:
            self.lifecycle.extend(body["value"])
            return web.Response(status=202)
        if self.slow:
            await asyncio.sleep(self.slow)
        self.posts += 1
        if self.always_fail or self.fail > 0:
            self.fail = max(0, self.fail - 1)
            return web.Response(status=500)
        problem = validation.errors(body, "changeNotificationCollection")
        assert problem is None, problem
        self.notifications.extend(body["value"])
        return web.Response(status=202)


@pytest.fixture
def listener() -> Iterator[Listener]:
    state = Listener()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", state.handle)
        run = web.AppRunner(app, access_log=None, handle_signals=False)
        await run.setup()
        site = web.TCPSite(run, "127.0.0.1", 0)
        await site.start()
        state.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runner.append(run)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner[0].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield state
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def sim() -> Simulator:
    simulator = Simulator(validate=True)
    simulator.add_mailbox(MAILBOX)
    simulator.add_mailbox(OTHER)
    return simulator


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as srv:
        yield srv
    stats = sim.get_stats()
    assert stats["schema_violations"] == 0, stats["schema_errors"]


@pytest.fixture
def client(server: SimulatorServer) -> Iterator[SimulatorClient]:
    admin = SimulatorClient(server.base_url)
    admin.graph_options(minute_seconds=MINUTE)
    yield admin
    admin.close()


class Graph:
    """calsync's side of the wire, by hand: a token, then the subscription API."""

    def __init__(self, server: SimulatorServer) -> None:
        self.base = server.base_url + "/v1.0"
        token = requests.post(
            f"{server.base_url}/{DEFAULT_TENANT}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
                  "client_secret": DEFAULT_CLIENT_SECRET, "scope": "https://graph.microsoft.com/.default"},
            timeout=10,
        ).json()["access_token"]  # fmt: skip
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, self.base + path, json=body, headers=self.headers, timeout=30)

    def subscribe(self, listener: Listener, minutes: float = 4000, **extra: Any) -> requests.Response:
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": listener.url("notify"),
            "lifecycleNotificationUrl": listener.url("lifecycle"),
            "resource": f"/users/{MAILBOX}/events",
            "expirationDateTime": expiry(minutes),
            "clientState": "s3cret-state",
            **extra,
        }
        return self.call("POST", "/subscriptions", {k: v for k, v in body.items() if v is not None})


def expiry(minutes: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=minutes * MINUTE)).isoformat().replace("+00:00", "Z")


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def state_of(client: SimulatorClient, sub_id: str) -> dict[str, Any]:
    return next(s for s in client.graph_subscriptions() if s["id"] == sub_id)


def make(sim: Simulator, subject: str, email: str = MAILBOX) -> str:
    return str(
        sim.create_item(email, {"subject": subject, "start": "2026-12-07T09:00:00", "end": "2026-12-07T10:00:00"})["id"]
    )


def test_handshake_limits_notifications_renewal_and_delete(
    server: SimulatorServer,
    sim: Simulator,
    client: SimulatorClient,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = Graph(server)
    listener.echo = False
    refused = graph.subscribe(listener)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ValidationError", refused.text
    listener.echo, listener.echo_lifecycle = True, False
    assert graph.subscribe(listener).status_code == 400, "the lifecycle URL is validated too"
    listener.echo_lifecycle = True
    client.add_fault(kind="graph_handshake_fail", count=1)
    assert graph.subscribe(listener).status_code == 400, "the handshake fault refuses a good endpoint"
    assert client.graph_subscriptions() == [], "no subscription after a failed handshake"

    too_long = graph.subscribe(listener, minutes=6000)
    assert too_long.status_code == 400 and "4230" in too_long.json()["error"]["message"]
    assert graph.subscribe(listener, minutes=-5).status_code == 400
    assert graph.subscribe(listener, notificationUrl="http://calsync.example.com/graph/x").status_code == 400
    unknown = graph.subscribe(listener, resource="/users/nobody@example.com/events")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "ErrorInvalidUser"

    created = graph.subscribe(listener)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert uuid.UUID(sub["id"]) and sub["clientState"] == "s3cret-state" and sub["latestSupportedTlsVersion"] == "v1_2"
    assert {p for p, _ in listener.handshakes} == {"/notify", "/lifecycle"}
    assert all(t.startswith("Validation: ") and " " in t for _, t in listener.handshakes), "the token arrives decoded"
    by_id = graph.subscribe(listener, resource=f"users/{user_id(sim.mailbox_object(OTHER))}/events")
    assert by_id.status_code == 201, by_id.text
    listed = graph.call("GET", "/subscriptions").json()["value"]
    assert {s["id"] for s in listed} == {sub["id"], by_id.json()["id"]}
    assert graph.call("GET", f"/subscriptions/{sub['id']}").json()["expirationDateTime"] == sub["expirationDateTime"]
    with monkeypatch.context() as patch:
        patch.setattr(push, "MAX_PER_MAILBOX", 1)  # the mailbox's 1,000, without 1,000 handshakes
        full = graph.subscribe(listener, resource=f"/users/{OTHER}/events")
    assert full.status_code == 403 and full.json()["error"]["code"] == "ExtensionError", full.text

    item = make(sim, "Kick-off")
    sim.update_item(MAILBOX, item, {"subject": "Kick-off (moved)"})
    wait_for(lambda: len(listener.notifications) >= 1, "the first notification")
    sim.delete_item(MAILBOX, item)
    wait_for(lambda: any(n["changeType"] == "deleted" for n in listener.notifications), "the deletion")
    kinds = [n["changeType"] for n in listener.notifications]
    assert kinds[0] == "created" and kinds[-1] == "deleted", kinds
    first = listener.notifications[0]
    assert first["subscriptionId"] == sub["id"] and first["clientState"] == "s3cret-state"
    assert first["tenantId"] == DEFAULT_TENANT and first["resourceData"]["id"] == f"AQMk{item}"
    assert first["resource"] == f"Users/{user_id(sim.mailbox_object(MAILBOX))}/Events/AQMk{item}"
    assert state_of(client, sub["id"])["delivered"] == len(listener.notifications)

    renewed = graph.call("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": expiry(4200)})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] != sub["expirationDateTime"]
    assert graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    seen = state_of(client, sub["id"])
    assert len(seen["renewals"]) == 1 and len(seen["reauthorizations"]) == 1 and seen["state"] == "active"
    over = graph.call("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": expiry(8000)})
    assert over.status_code == 400

    client.add_fault(kind="graph_handshake_on_renewal", count=1)
    listener.echo = False
    asked = graph.call("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": expiry(4000)})
    assert asked.status_code == 400 and asked.json()["error"]["code"] == "ValidationError"
    listener.echo = True

    assert graph.call("DELETE", f"/subscriptions/{sub['id']}").status_code == 204
    gone = graph.call("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": expiry(4000)})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ResourceNotFound"
    assert graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize").status_code == 404
    assert graph.call("DELETE", f"/subscriptions/{sub['id']}").status_code == 404
    assert state_of(client, sub["id"])["state"] == "deleted"


def test_retries_then_delivery_then_drop_after_four_hours(
    server: SimulatorServer, sim: Simulator, client: SimulatorClient, listener: Listener
) -> None:
    sub = Graph(server).subscribe(listener).json()
    listener.fail = 3
    make(sim, "After three failures")
    wait_for(lambda: state_of(client, sub["id"])["delivered"] == 1, "delivery after the retries")
    seen = state_of(client, sub["id"])
    assert seen["retried"] == 3 and seen["dropped"] == 0 and listener.posts == 4

    listener.always_fail = True
    make(sim, "Never acknowledged")
    seen = wait_for(lambda: [s for s in [state_of(client, sub["id"])] if s["dropped"] == 1], "the drop")[0]
    assert seen["retried"] > 3 and seen["delivered"] == 1 and seen["state"] == "active"
    listener.always_fail = False
    make(sim, "After the outage")
    wait_for(lambda: state_of(client, sub["id"])["delivered"] == 2, "delivery once the endpoint answers again")
    assert [n["changeType"] for n in listener.notifications] == ["created", "created"]


def test_slow_endpoint_is_delayed_then_dropped(
    server: SimulatorServer, sim: Simulator, client: SimulatorClient, listener: Listener
) -> None:
    client.graph_options(slow_ms=500, slow_window=10, slow_min_answers=10)
    sub = Graph(server).subscribe(listener).json()

    def deliver(n: int) -> dict[str, Any]:
        make(sim, f"change {n}")
        return wait_for(  # type: ignore[no-any-return]
            lambda: [s for s in [state_of(client, sub["id"])] if s["delivered"] == n or s["dropped"]], f"change {n}"
        )[0]

    for n in range(1, 10):
        deliver(n)
    listener.slow = 0.8
    assert deliver(10)["delayed"] == 0, "nine answers are too few for a verdict"
    seen = deliver(11)
    assert seen["delayed"] == 1 and seen["dropped"] == 0, "1 slow in 10 answers: delayed"
    listener.slow = 0
    make(sim, "change 12")
    seen = wait_for(lambda: [s for s in [state_of(client, sub["id"])] if s["dropped"]], "the drop")[0]
    assert seen["dropped"] == 1 and seen["delivered"] == 11, "2 slow in 10 answers: dropped"
    time.sleep(20 * MINUTE)  # the penalty (10 scaled minutes) runs out
    make(sim, "change 13")
    wait_for(lambda: state_of(client, sub["id"])["delivered"] == 12, "delivery after the penalty")


def test_duplicates_and_late_notifications(
    server: SimulatorServer, sim: Simulator, client: SimulatorClient, listener: Listener
) -> None:
    client.graph_options(late_minutes=2000)
    sub = Graph(server).subscribe(listener).json()
    client.add_fault(kind="graph_duplicate", count=1)
    twice = make(sim, "Twice")
    wait_for(lambda: len(listener.notifications) == 2, "the duplicate")
    assert [n["resourceData"]["id"] for n in listener.notifications] == [f"AQMk{twice}"] * 2
    assert listener.posts == 2, "the copy comes in a POST of its own"

    client.add_fault(kind="graph_late", count=1)
    late = make(sim, "Held back")
    wait_for(lambda: state_of(client, sub["id"])["late"] == 1, "the held-back one")
    later = make(sim, "Sent first")
    wait_for(lambda: len(listener.notifications) == 4, "both")
    order = [n["resourceData"]["id"] for n in listener.notifications[2:]]
    assert order == [f"AQMk{later}", f"AQMk{late}"], "the held-back notification arrives after the later one"
    seen = state_of(client, sub["id"])
    assert seen["duplicated"] == 1 and seen["delivered"] == 4


def test_lifecycle_events_kill_and_expiry(
    server: SimulatorServer, sim: Simulator, client: SimulatorClient, listener: Listener
) -> None:
    graph = Graph(server)
    sub = graph.subscribe(listener).json()
    for event in ("reauthorizationRequired", "missed"):
        assert client.graph_lifecycle(sub["id"], event)["status"] == 202
    assert [n["lifecycleEvent"] for n in listener.lifecycle] == ["reauthorizationRequired", "missed"]
    assert all(n["subscriptionId"] == sub["id"] and n["clientState"] == "s3cret-state" for n in listener.lifecycle)
    assert state_of(client, sub["id"])["state"] == "active"
    client.graph_lifecycle(sub["id"], "subscriptionRemoved")
    assert state_of(client, sub["id"])["state"] == "removed"
    assert graph.call("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": expiry(100)}).status_code == 404
    with pytest.raises(SimulatorClientError) as err:
        client.graph_lifecycle(sub["id"], "missed")
    assert err.value.status == 404

    killed = graph.subscribe(listener).json()
    client.kill_graph_subscription(killed["id"])
    assert graph.call("PATCH", f"/subscriptions/{killed['id']}", {"expirationDateTime": expiry(100)}).status_code == 404
    assert len(listener.lifecycle) == 3, "a kill sends no lifecycle event"

    short = graph.subscribe(listener, minutes=250).json()
    wait_for(lambda: state_of(client, short["id"])["state"] == "expired", "the lapse")
    make(sim, "Nobody hears this")
    renew = graph.call("PATCH", f"/subscriptions/{short['id']}", {"expirationDateTime": expiry(100)})
    assert renew.status_code == 404
    live = graph.subscribe(listener).json()
    make(sim, "Only the live one hears this")
    wait_for(lambda: listener.notifications, "the live subscription's notification")
    time.sleep(10 * MINUTE)
    assert {n["subscriptionId"] for n in listener.notifications} == {live["id"]}
