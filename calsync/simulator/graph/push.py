"""Graph change notifications as Microsoft Graph sends them: subscriptions, webhooks, lifecycle events.

One asyncio task per subscription, in the server's loop (as ews/push.py does for EWS):

- after a change to the mailbox it POSTs a changeNotificationCollection (at most 100 per POST)
  to the notificationUrl; a 2xx within 3 s (real) is delivered;
- anything else is retried with back-off (0, 30, 60, 120 ... s, the EWS schedule) until a
  notification has waited 4 hours, then it is dropped;
- an endpoint whose answers are slow (over 2,900 ms) has its deliveries delayed 10 minutes
  when 10% of its recent answers were slow, and dropped (for 10 minutes) from 15%;
- the `graph_duplicate` and `graph_late` faults send a notification twice, or after later ones;
- the subscription lapses at its expirationDateTime: no more notifications, renewal is 404.

Lifecycle notifications (reauthorizationRequired, subscriptionRemoved, missed) go out on demand
through the admin API. Every Graph duration (lifetime, retry window, slow delay) is in minutes
of the push clock, `minute_seconds` real seconds each (CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS,
as for EWS); the 10 s handshake, 3 s answer and 2,900 ms slow limits are real seconds, since
they measure the listener, which is not simulated (tests may lower them through `Options`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp

from calsync.simulator.ews.push import minute_seconds_from_env, retry_wait
from calsync.simulator.graph import render, validation
from calsync.simulator.graph.errors import GraphError
from calsync.simulator.mailbox import CREATE, DELETE, UPDATE, Mailbox
from calsync.simulator.model import NotFound, ValidationError

if TYPE_CHECKING:
    from calsync.simulator.core import Simulator

log = logging.getLogger(__name__)

MAX_LIFETIME_MINUTES = 4230  # Outlook resources without resource data
RETRY_MINUTES = 240
SLOW_DELAY_MINUTES = 10
MAX_PER_MAILBOX = 1000
BATCH = 100
SLOW_DELAY_RATIO = 0.10
SLOW_DROP_RATIO = 0.15
CHANGE_TYPES = ("created", "updated", "deleted")
CHANGE_TYPE_OF = {CREATE: "created", UPDATE: "updated", DELETE: "deleted"}
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
VALIDATION_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
)


@dataclass(slots=True)
class Options:
    """Knobs on the listener's real-time limits; tests lower them so that "slow" costs milliseconds."""

    answer_timeout_s: float = 3.0  # a 2xx later than this is a failure
    slow_ms: float = 2900.0  # an answer slower than this counts as slow
    handshake_timeout_s: float = 10.0
    slow_window: int = 20  # the last answers of an endpoint the slow ratio is taken over
    slow_min_answers: int = 10  # fewer answers than this: no verdict yet
    late_minutes: float = 1.0  # a held-back notification goes out after this even if nothing follows

    def update(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ValidationError("expected a JSON object")
        unknown = set(data) - set(self.__dataclass_fields__)
        if unknown:
            raise ValidationError(f"unknown options: {sorted(unknown)}")
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValidationError(f"{key} must be a non-negative number")
            kind = type(getattr(self, key))
            setattr(self, key, kind(value))


@dataclass(slots=True)
class Pending:
    """One change notification waiting for delivery (rendered at POST time, with the current expiry)."""

    change_type: str
    event_id: str
    etag: str | None
    first_try: float | None = None
    duplicate: bool = False


@dataclass(slots=True)
class GraphSubscription:
    id: str
    mailbox: Mailbox
    app_id: str
    tenant: str
    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: dt.datetime
    seq: int  # the last change-log position turned into notifications
    created: str = field(default_factory=lambda: stamp(utcnow()))
    state: str = "active"  # then expired, removed (subscriptionRemoved), deleted (DELETE), killed (admin)
    renewals: list[str] = field(default_factory=list)
    reauthorizations: list[str] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    pending: deque[Pending] = field(default_factory=deque)
    held: list[tuple[float, Pending]] = field(default_factory=list)  # (release time, notification)
    failing_since: float | None = None
    attempts: int = 0
    next_attempt: float = 0.0
    delay_until: float | None = None
    posts: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: int = 0
    duplicated: int = 0
    late: int = 0
    delayed: int = 0

    def body(self) -> dict[str, Any]:
        """The `subscription` resource as Graph answers it."""
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": stamp(self.expires),
            "creatorId": self.app_id,
            "includeResourceData": None,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(value: Any, what: str = "expirationDateTime") -> dt.datetime:
    if not isinstance(value, str) or not value:
        raise GraphError(400, "InvalidRequest", f"{what} is required")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphError(400, "InvalidRequest", f"{what}: {value!r} is not an ISO 8601 time") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def user_id(mailbox: Mailbox) -> str:
    """The mailbox's user object id (stable for one incarnation of the address)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"calsync-simulator:user:{mailbox.key}"))


def loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint(url: str) -> str:
    """What slow-endpoint accounting is kept per: the listener (scheme, host, port), not each
    subscription's URL, so one slow listener slows every subscription it serves."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_url(value: Any, what: str) -> str:
    """https, or http to a loopback host (the tests' listener): Graph itself requires https."""
    if not isinstance(value, str) or not value:
        raise GraphError(400, "InvalidRequest", f"{what} is required")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and loopback(parts.hostname):
        return value
    raise GraphError(400, "InvalidRequest", f"{what} must be an https URL: {value!r}")


class GraphPusher:
    """Every Graph subscription of one Simulator, each delivered by its own task."""

    def __init__(self, sim: Simulator, minute_seconds: float | None = None) -> None:
        self.sim = sim
        self.minute_seconds = minute_seconds if minute_seconds is not None else minute_seconds_from_env()
        self.options = Options()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.session: aiohttp.ClientSession | None = None
        self.subs: dict[str, GraphSubscription] = {}
        self.by_mailbox: dict[str, set[str]] = {}  # mailbox key -> ids of its active subscriptions
        self.wakes: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.history: dict[str, deque[bool]] = {}  # endpoint() -> its recent answers (True = slow)
        self.penalty: dict[str, float] = {}  # endpoint -> until when its notifications are dropped

    def minutes(self, n: float) -> float:
        return n * self.minute_seconds

    # --- the subscription API (called by subscriptions.py, in the loop) -----------------------
    def check_expiry(self, value: Any) -> dt.datetime:
        expires = parse_stamp(value)
        now = utcnow()
        if expires <= now or expires > now + dt.timedelta(seconds=self.minutes(MAX_LIFETIME_MINUTES)):
            raise GraphError(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be {MAX_LIFETIME_MINUTES} minutes in the future "
                "and must not be in the past.",
            )
        return expires

    def active(self, sub_id: str, app_id: str | None = None) -> GraphSubscription:
        """A live subscription (of this app), else 404 ResourceNotFound; lapses it if it is past due."""
        sub = self.subs.get(sub_id)
        if sub is not None and sub.state == "active" and sub.expires <= utcnow():
            self._end(sub, "expired")
        if sub is None or sub.state != "active" or (app_id is not None and sub.app_id != app_id):
            raise GraphError(404, "ResourceNotFound", f"The object '{sub_id}' was not found.")
        return sub

    def count_active(self, mailbox: Mailbox) -> int:
        ids = self.by_mailbox.get(mailbox.key, set())
        return sum(1 for i in list(ids) if self._live(self.subs[i]))

    def _live(self, sub: GraphSubscription) -> bool:
        if sub.state == "active" and sub.expires <= utcnow():
            self._end(sub, "expired")
        return sub.state == "active"

    async def create(
        self,
        mailbox: Mailbox,
        app_id: str,
        tenant: str,
        resource: str,
        change_types: tuple[str, ...],
        notification_url: str,
        lifecycle_url: str | None,
        client_state: str | None,
        expires: dt.datetime,
    ) -> GraphSubscription:
        if self.count_active(mailbox) >= MAX_PER_MAILBOX:
            raise GraphError(403, "ExtensionError", "The maximum number of subscriptions has been reached.")
        for url in (notification_url, lifecycle_url):
            if url is not None and not await self.handshake(url, mailbox.email, app_id):
                raise GraphError(400, "ValidationError", VALIDATION_FAILED)
        if self.count_active(mailbox) >= MAX_PER_MAILBOX:  # others may have subscribed meanwhile
            raise GraphError(403, "ExtensionError", "The maximum number of subscriptions has been reached.")
        with self.sim.lock:
            seq = mailbox.log.seq
            mailbox.on_change["graph"] = self._changed
        sub = GraphSubscription(
            id=str(uuid.uuid4()),
            mailbox=mailbox,
            app_id=app_id,
            tenant=tenant,
            resource=resource,
            change_types=change_types,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires=expires,
            seq=seq,
        )
        self.loop = asyncio.get_running_loop()
        self.subs[sub.id] = sub
        self.by_mailbox.setdefault(mailbox.key, set()).add(sub.id)
        self.wakes[sub.id] = asyncio.Event()
        self.tasks[sub.id] = self.loop.create_task(self._run(sub))
        return sub

    async def renew(self, sub: GraphSubscription, expires: dt.datetime) -> GraphSubscription:
        faults = self.sim.faults
        asked = faults.draw(sub.mailbox.email, "graph_renew", sub.app_id, ("graph_handshake_on_renewal",))
        if asked:
            for fault in asked:
                self.sim.fault_fired(fault)
            for url in (sub.notification_url, sub.lifecycle_url):
                if url is not None and not await self.handshake(url, sub.mailbox.email, sub.app_id):
                    raise GraphError(400, "ValidationError", VALIDATION_FAILED)
            sub = self.active(sub.id)
        sub.expires = expires
        sub.renewals.append(stamp(utcnow()))
        self._wake(sub.id)
        return sub

    def reauthorize(self, sub: GraphSubscription) -> None:
        sub.reauthorizations.append(stamp(utcnow()))

    def delete(self, sub: GraphSubscription) -> None:
        self._end(sub, "deleted")

    async def handshake(self, url: str, email: str, app_id: str) -> bool:
        """POST ?validationToken=...; the endpoint must echo the token, 200 text/plain, within 10 s."""
        sim = self.sim
        sim.stats.request("graph_handshake", email)
        failing = sim.faults.draw(email, "graph_handshake", app_id, ("graph_handshake_fail",))
        for fault in failing:
            sim.fault_fired(fault)
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        target = url + ("&" if urlsplit(url).query else "?") + "validationToken=" + quote(token, safe="")
        ok = False
        try:
            async with self._session().post(
                target,
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=self.options.handshake_timeout_s),
            ) as resp:
                text = await resp.text()
                ok = resp.status == 200 and resp.content_type == "text/plain" and text == token
        except (aiohttp.ClientError, TimeoutError, OSError, UnicodeDecodeError):
            ok = False
        ok = ok and not failing
        sim.stats.response("graph_handshake_ok" if ok else "graph_handshake_failed")
        return ok

    # --- changes, from edits (any thread) -------------------------------------------------------
    def _changed(self, mailbox: Mailbox) -> None:
        loop = self.loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._wake_mailbox, mailbox.key)

    def _wake_mailbox(self, key: str) -> None:
        for sub_id in list(self.by_mailbox.get(key, ())):
            self._wake(sub_id)

    def _wake(self, sub_id: str) -> None:
        wake = self.wakes.get(sub_id)
        if wake is not None:
            wake.set()

    def _end(self, sub: GraphSubscription, state: str) -> None:
        sub.state = state
        self.by_mailbox.get(sub.mailbox.key, set()).discard(sub.id)
        self._wake(sub.id)

    # --- delivery --------------------------------------------------------------------------------
    async def _run(self, sub: GraphSubscription) -> None:
        try:
            await self._deliver(sub)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("graph subscription %s: delivery loop failed", sub.id[:8])
        finally:
            self.wakes.pop(sub.id, None)
            self.tasks.pop(sub.id, None)

    async def _deliver(self, sub: GraphSubscription) -> None:
        wake = self.wakes[sub.id]
        while self._live(sub):
            now = time.monotonic()
            due = self._due(sub, now)
            if not wake.is_set() and due > now:
                try:
                    await asyncio.wait_for(wake.wait(), due - now)
                except TimeoutError:
                    pass
            wake.clear()
            if not self._live(sub):
                return
            self._collect(sub)
            await self._step(sub)

    def _due(self, sub: GraphSubscription, now: float) -> float:
        """When this subscription next has something to do (without a change)."""
        times = [now + max(0.0, (sub.expires - utcnow()).total_seconds()), now + 3600.0]
        times += [t for t, _ in sub.held]
        if sub.pending:
            if sub.delay_until is not None:
                times.append(sub.delay_until)
            elif sub.failing_since is not None:
                times.append(sub.next_attempt)
            else:
                times.append(self.penalty.get(endpoint(sub.notification_url), now))
        return min(times)

    def _collect(self, sub: GraphSubscription) -> None:
        """Turn the mailbox's changes since the last look into pending notifications."""
        mailbox = sub.mailbox
        fresh: list[Pending] = []
        with self.sim.lock:
            while True:
                changes, next_seq, done = mailbox.changes_since(sub.seq, sub.seq, 1000)
                for kind, obj in changes:
                    change_type = CHANGE_TYPE_OF[kind]
                    if change_type not in sub.change_types:
                        continue
                    if kind == DELETE:
                        fresh.append(Pending(change_type, render.graph_id(obj), None))
                    else:
                        fresh.append(Pending(change_type, render.graph_id(obj.id), f'W/"{obj.change_key}"'))
                sub.seq = next_seq
                if done:
                    break
        now = time.monotonic()
        for note in fresh:
            fired = self.sim.faults.draw(mailbox.email, "graph_notify", sub.app_id, ("graph_duplicate", "graph_late"))
            for fault in fired:
                self.sim.fault_fired(fault)
            kinds = {f.kind for f in fired}
            note.duplicate = "graph_duplicate" in kinds
            if "graph_late" in kinds:
                sub.late += 1
                sub.held.append((now + self.minutes(self.options.late_minutes), note))
            else:
                sub.pending.append(note)

    async def _step(self, sub: GraphSubscription) -> None:
        now = time.monotonic()
        if sub.held and (not sub.pending or any(t <= now for t, _ in sub.held)):
            ready = [n for t, n in sub.held if t <= now]
            sub.held = [(t, n) for t, n in sub.held if t > now]
            sub.pending.extend(ready)
        if not sub.pending:
            return
        if sub.failing_since is not None and now < sub.next_attempt:
            return
        if sub.delay_until is not None and now < sub.delay_until:
            return
        verdict = self._verdict(endpoint(sub.notification_url), now)
        if verdict == "drop":
            sub.dropped += len(sub.pending)
            self.sim.stats.response("graph_notify_dropped_slow")
            sub.pending.clear()
            sub.failing_since, sub.attempts = None, 0
            return
        if verdict == "delay" and sub.delay_until is None:
            sub.delayed += 1
            self.sim.stats.response("graph_notify_delayed_slow")
            sub.delay_until = now + self.minutes(SLOW_DELAY_MINUTES)
            return
        sub.delay_until = None
        batch = [sub.pending[i] for i in range(min(BATCH, len(sub.pending)))]
        ok = await self._post(sub, batch)
        if sub.state != "active":
            return
        now = time.monotonic()
        if ok:
            for _ in batch:
                sub.pending.popleft()
            sub.delivered += len(batch)
            sub.failing_since, sub.attempts = None, 0
            for note in batch:
                if note.duplicate:
                    sub.duplicated += 1
                    sub.pending.append(Pending(note.change_type, note.event_id, note.etag))
            if sub.held:  # held-back notifications go out after the ones that followed them
                sub.pending.extend(n for _, n in sub.held)
                sub.held.clear()
            if sub.pending:
                self._wake(sub.id)
            return
        sub.attempts += 1
        if sub.failing_since is None:
            sub.failing_since = now
        wait = retry_wait(sub.attempts, self.minute_seconds)
        window = self.minutes(RETRY_MINUTES)
        for note in batch:
            if note.first_try is None:
                note.first_try = now
        expired = [n for n in batch if now + wait - (n.first_try or now) > window]
        if expired:
            gone = {id(n) for n in expired}
            sub.pending = deque(n for n in sub.pending if id(n) not in gone)
            sub.dropped += len(expired)
            self.sim.stats.response("graph_notify_dropped")
            log.info("graph subscription %s: %d notification(s) dropped after 4 hours", sub.id[:8], len(expired))
        if len(expired) < len(batch):
            sub.retried += 1
        if not sub.pending:
            sub.failing_since, sub.attempts = None, 0
        sub.next_attempt = now + wait

    def _verdict(self, url: str, now: float) -> str:
        """ok, delay (≥10% of recent answers slow) or drop (≥15%, then for 10 minutes)."""
        until = self.penalty.get(url)
        if until is not None:
            if now < until:
                return "drop"
            del self.penalty[url]
            self.history.pop(url, None)
        answers = self.history.get(url)
        if not answers or len(answers) < self.options.slow_min_answers:
            return "ok"
        ratio = sum(answers) / len(answers)
        if ratio >= SLOW_DROP_RATIO:
            self.penalty[url] = now + self.minutes(SLOW_DELAY_MINUTES)
            return "drop"
        return "delay" if ratio >= SLOW_DELAY_RATIO else "ok"

    def _render(self, sub: GraphSubscription, note: Pending) -> dict[str, Any]:
        path = f"Users/{user_id(sub.mailbox)}/Events/{note.event_id}"
        data: dict[str, Any] = {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": path}
        if note.etag is not None:
            data["@odata.etag"] = note.etag
        data["id"] = note.event_id
        return {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": stamp(sub.expires),
            "changeType": note.change_type,
            "resource": path,
            "resourceData": data,
            "clientState": sub.client_state,
            "tenantId": sub.tenant,
        }

    async def _post(self, sub: GraphSubscription, batch: list[Pending]) -> bool:
        body = {"value": [self._render(sub, n) for n in batch]}
        sub.posts += 1
        status = await self._send(sub.notification_url, body, sub.mailbox.email, "graph_notify", record=True)
        return status is not None and 200 <= status < 300

    async def _send(self, url: str, body: dict[str, Any], email: str, operation: str, record: bool) -> int | None:
        """POST one notification collection: the HTTP status of an answer in time, else None."""
        sim = self.sim
        sim.stats.request(operation, email)
        if sim.validate:
            problem = validation.errors(body, "changeNotificationCollection")
            if problem is not None:
                sim.stats.violation(f"graph changeNotificationCollection (sent): {problem}")
        limit = self.options.answer_timeout_s
        started = time.monotonic()
        status: int | None = None
        try:
            async with self._session().post(url, json=body, timeout=aiohttp.ClientTimeout(total=limit)) as resp:
                await resp.read()
                status = resp.status
        except TimeoutError:
            sim.stats.response(f"{operation}_timeout")
            if record:
                self._answered(endpoint(url), slow=True)
            return None
        except (aiohttp.ClientError, OSError):
            sim.stats.response(f"{operation}_unreachable")
            return None
        elapsed = time.monotonic() - started
        if record:
            self._answered(endpoint(url), slow=elapsed * 1000.0 > self.options.slow_ms)
        sim.stats.response(f"{operation}_http_{status}")
        return status if elapsed <= limit else None

    def _answered(self, url: str, slow: bool) -> None:
        answers = self.history.get(url)
        size = max(1, self.options.slow_window)
        if answers is None or answers.maxlen != size:
            answers = self.history[url] = deque(answers or (), maxlen=size)
        answers.append(slow)

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            # A connection per POST, as for EWS: a load balancer spreads them, a dead listener costs one.
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self.session

    # --- lifecycle events and admin ----------------------------------------------------------------
    async def send_lifecycle(self, sub_id: str, event: Any) -> dict[str, Any]:
        """Send one lifecycle notification now; subscriptionRemoved then removes the subscription."""
        if event not in LIFECYCLE_EVENTS:
            raise ValidationError(f"event must be one of {LIFECYCLE_EVENTS}")
        sub = self.subs.get(sub_id)
        if sub is None or not self._live(sub):
            raise NotFound(f"no live Graph subscription {sub_id}")
        if sub.lifecycle_url is None:
            raise ValidationError("the subscription has no lifecycleNotificationUrl")
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": stamp(sub.expires),
            "tenantId": sub.tenant,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        status = await self._send(sub.lifecycle_url, {"value": [item]}, sub.mailbox.email, "graph_lifecycle", False)
        record = {"event": event, "at": stamp(utcnow()), "status": status}
        sub.lifecycle.append(record)
        if event == "subscriptionRemoved":
            self._end(sub, "removed")
        return record

    def list(self) -> list[dict[str, Any]]:
        out = []
        for sub in list(self.subs.values()):
            self._live(sub)
            out.append(
                {
                    "id": sub.id,
                    "mailbox": sub.mailbox.email,
                    "app_id": sub.app_id,
                    "resource": sub.resource,
                    "notificationUrl": sub.notification_url,
                    "lifecycleNotificationUrl": sub.lifecycle_url,
                    "expires": stamp(sub.expires),
                    "created": sub.created,
                    "state": sub.state,
                    "renewals": list(sub.renewals),
                    "reauthorizations": list(sub.reauthorizations),
                    "lifecycle": list(sub.lifecycle),
                    "pending": len(sub.pending) + len(sub.held),
                    "failing": sub.failing_since is not None,
                    "posts": sub.posts,
                    "delivered": sub.delivered,
                    "retried": sub.retried,
                    "dropped": sub.dropped,
                    "duplicated": sub.duplicated,
                    "late": sub.late,
                    "delayed": sub.delayed,
                }
            )
        return out

    def kill(self, sub_id: str) -> None:
        """Forget a subscription without telling anyone (no lifecycle event)."""
        sub = self.subs.get(sub_id)
        if sub is None or not self._live(sub):
            raise NotFound(f"no live Graph subscription {sub_id}")
        self._end(sub, "killed")

    def options_json(self) -> dict[str, Any]:
        return {**asdict(self.options), "minute_seconds": self.minute_seconds}

    def set_options(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict) and "minute_seconds" in data:
            data = dict(data)
            value = data.pop("minute_seconds")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValidationError("minute_seconds must be a positive number")
            self.minute_seconds = float(value)
        self.options.update(data)
        return self.options_json()


_pushers: weakref.WeakKeyDictionary[Simulator, GraphPusher] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def pusher_for(sim: Simulator) -> GraphPusher:
    with _lock:
        pusher = _pushers.get(sim)
        if pusher is None:
            pusher = _pushers[sim] = GraphPusher(sim)
        return pusher
