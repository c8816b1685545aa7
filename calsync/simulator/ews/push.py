"""Push notifications as Exchange sends them: SendNotification POSTs to a subscription's URL.

One asyncio task per push subscription, in the server's loop:

- after a change to the mailbox it POSTs the events since the last delivered watermark
  (CreatedEvent, ModifiedEvent, DeletedEvent; at most `page` per POST, MoreEvents=true
  and the next page at once while there are more);
- with nothing to report it POSTs a StatusEvent every StatusFrequency;
- an answer that is not HTTP 200 with a SendNotificationResult is a failure: the same
  notification (with whatever happened since) is retried after 0, 30, 60, 120, 240 ... s,
  doubling, and the subscription is dropped once the retries pass StatusFrequency;
- `Unsubscribe` ends the subscription.

`minute_seconds` scales every time here (StatusFrequency minutes and the retry schedule):
60 is Exchange's clock; tests use a fraction of a second (CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS
or `--push-minute-seconds`). With validation on, every SendNotification sent and every answer
received is checked against Microsoft's schema; violations count in the stats like any other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from lxml import etree

from calsync.simulator.ews import validation
from calsync.simulator.ews.soap import NS_M, NS_SOAP, NS_T, attr, esc
from calsync.simulator.mailbox import CREATE, DELETE, Mailbox

if TYPE_CHECKING:
    from calsync.simulator.core import Simulator

log = logging.getLogger(__name__)

EVENT_OF = {CREATE: "CreatedEvent", "Update": "ModifiedEvent", DELETE: "DeletedEvent"}
PAGE = 50
POST_TIMEOUT = 30.0


def minute_seconds_from_env() -> float:
    try:
        return max(0.001, float(os.environ.get("CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS", "60")))
    except ValueError:
        return 60.0


def watermark(mailbox: Mailbox, seq: int) -> str:
    return base64.b64encode(f"cwm1:{mailbox.key}:{seq}".encode()).decode()


def parse_watermark(mailbox: Mailbox, token: str) -> int | None:
    """The change-log position a watermark stands for, or None if it is not one of this mailbox's."""
    try:
        magic, key, seq_s = base64.b64decode(token.strip(), validate=True).decode().split(":")
        seq = int(seq_s)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if magic != "cwm1" or key != mailbox.key or not 0 <= seq <= mailbox.log.seq:
        return None
    return seq


def retry_wait(attempt: int, minute_seconds: float) -> float:
    """Wait before retry number `attempt` (1-based): 0, 30, 60, 120, 240 ... s, on the scaled clock."""
    seconds = 0.0 if attempt <= 1 else 30.0 * 2 ** (attempt - 2)
    return seconds * minute_seconds / 60.0


@dataclass(slots=True)
class PushState:
    """Delivery state of one push subscription (the Subscription record holds what Subscribe said)."""

    seq: int  # the last change delivered (acknowledged with OK)
    last_ok: float = field(default_factory=time.monotonic)
    failing_since: float | None = None
    attempts: int = 0
    next_attempt: float = 0.0
    sent: int = 0
    delivered: int = 0
    failures: int = 0
    status_events: int = 0
    events: int = 0


class Pusher:
    """Every push subscription of one Simulator, each delivered by its own task."""

    def __init__(self, sim: Simulator, minute_seconds: float | None = None) -> None:
        self.sim = sim
        self.minute_seconds = minute_seconds if minute_seconds is not None else minute_seconds_from_env()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.session: aiohttp.ClientSession | None = None
        self.wakes: dict[str, asyncio.Event] = {}
        self.states: dict[str, PushState] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.ended: dict[str, str] = {}  # subscription id -> why it ended (dropped, unsubscribed, killed)
        self.lock = threading.Lock()

    # --- called from the EWS handlers (in the loop) and from edits (any thread) ---------------
    def start(self, mailbox: Mailbox, sub_id: str, seq: int) -> None:
        """A new push subscription: deliver from change-log position `seq`."""
        self.loop = asyncio.get_running_loop()
        self.states[sub_id] = PushState(seq=seq)
        self.wakes[sub_id] = asyncio.Event()
        mailbox.on_change["ews"] = self._changed
        self.tasks[sub_id] = self.loop.create_task(self._run(mailbox, sub_id))

    def stop(self, sub_id: str, why: str) -> None:
        with self.sim.lock:
            for mbx in self.sim.mailboxes.values():
                mbx.subscriptions.pop(sub_id, None)
        self.ended[sub_id] = why
        wake = self.wakes.get(sub_id)
        if wake is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(wake.set)

    def _changed(self, mailbox: Mailbox) -> None:
        loop = self.loop
        if loop is None:
            return
        for sub_id in list(mailbox.subscriptions):
            wake = self.wakes.get(sub_id)
            if wake is not None:
                loop.call_soon_threadsafe(wake.set)

    # --- delivery ------------------------------------------------------------------------------
    async def _run(self, mailbox: Mailbox, sub_id: str) -> None:
        try:
            await self._deliver(mailbox, sub_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("push subscription %s: delivery loop failed", sub_id[:12])
        finally:
            self.wakes.pop(sub_id, None)
            self.tasks.pop(sub_id, None)

    async def _deliver(self, mailbox: Mailbox, sub_id: str) -> None:
        state = self.states[sub_id]
        wake = self.wakes[sub_id]
        while True:
            sub = mailbox.subscriptions.get(sub_id)
            if sub is None:
                return
            frequency = sub.status_frequency * self.minute_seconds
            now = time.monotonic()
            due = state.next_attempt if state.failing_since is not None else state.last_ok + frequency
            if not wake.is_set() and due > now:
                try:
                    await asyncio.wait_for(wake.wait(), due - now)
                except TimeoutError:
                    pass
            wake.clear()
            sub = mailbox.subscriptions.get(sub_id)
            if sub is None:
                return
            now = time.monotonic()
            if state.failing_since is not None and now < state.next_attempt:
                continue
            with self.sim.lock:
                body, new_seq, more, n_events = self._notification(mailbox, sub_id, sub.watermark, state)
            status_due = now - state.last_ok >= frequency
            if not n_events and not status_due and state.failing_since is None:
                continue
            answer = await self._post(sub.url, body, mailbox.email)
            state.sent += 1
            if answer in ("OK", "Unsubscribe"):
                state.delivered += 1
                state.seq = new_seq
                sub.watermark = watermark(mailbox, new_seq)
                state.last_ok = time.monotonic()
                state.failing_since, state.attempts = None, 0
                state.events += n_events
                state.status_events += 0 if n_events else 1
                if answer == "Unsubscribe":
                    self.stop(sub_id, "unsubscribed")
                    return
                if more:
                    wake.set()
                continue
            state.failures += 1
            state.attempts += 1
            if state.failing_since is None:
                state.failing_since = now
            wait = retry_wait(state.attempts, self.minute_seconds)
            if now + wait - state.failing_since > frequency:
                log.info("push subscription %s: retries passed StatusFrequency, dropped", sub_id[:12])
                self.stop(sub_id, "dropped")
                return
            state.next_attempt = now + wait

    def _notification(
        self, mailbox: Mailbox, sub_id: str, previous: str, state: PushState
    ) -> tuple[bytes, int, bool, int]:
        """The SendNotification for what happened after `state.seq` (a StatusEvent if nothing did)."""
        changes, next_seq, done = mailbox.changes_since(state.seq, state.seq, PAGE)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        folder = (
            f'<t:ParentFolderId Id="{attr(mailbox.calendar_folder_id)}" ChangeKey="{attr(mailbox.folder_change_key)}"/>'
        )
        events = []
        for kind, obj in changes:
            if kind == DELETE:
                item_id, seq = obj, mailbox.tombstones[obj].deleted_seq
                ident = f'<t:ItemId Id="{attr(item_id)}"/>'
            else:
                item_id, seq = obj.id, obj.last_seq
                ident = f'<t:ItemId Id="{attr(item_id)}" ChangeKey="{attr(obj.change_key)}"/>'
            name = EVENT_OF[kind]
            events.append(
                f"<t:{name}><t:Watermark>{esc(watermark(mailbox, seq))}</t:Watermark>"
                f"<t:TimeStamp>{stamp}</t:TimeStamp>{ident}{folder}</t:{name}>"
            )
        new_seq = next_seq if changes else state.seq
        if not events:
            events.append(
                f"<t:StatusEvent><t:Watermark>{esc(watermark(mailbox, new_seq))}</t:Watermark></t:StatusEvent>"
            )
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<soap11:Envelope xmlns:soap11="{NS_SOAP}"><soap11:Header>'
            f'<t:RequestServerVersion xmlns:t="{NS_T}" Version="{self.sim.version.api_version}"/></soap11:Header>'
            f'<soap11:Body><m:SendNotification xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
            '<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"<m:Notification><t:SubscriptionId>{esc(sub_id)}</t:SubscriptionId>"
            f"<t:PreviousWatermark>{esc(previous)}</t:PreviousWatermark>"
            f"<t:MoreEvents>{'false' if done else 'true'}</t:MoreEvents>{''.join(events)}</m:Notification>"
            "</m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification>"
            "</soap11:Body></soap11:Envelope>"
        ).encode()
        return body, new_seq, not done, len(changes)

    async def _post(self, url: str, body: bytes, email: str) -> str | None:
        """POST one notification; 'OK', 'Unsubscribe', or None for anything Exchange counts as a failure."""
        sim = self.sim
        sim.stats.request("SendNotification", email)
        if sim.validate:
            problem = validation.response_errors(body)
            if problem is not None:
                sim.stats.violation(f"SendNotification (sent): {problem}")
        if self.session is None or self.session.closed:
            # A connection per notification, so a load balancer in front of several listeners
            # spreads them (and a killed listener costs one failed POST, then the retry).
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT), connector=aiohttp.TCPConnector(force_close=True)
            )
        try:
            async with self.session.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    sim.stats.response(f"push_http_{resp.status}")
                    return None
        except (aiohttp.ClientError, TimeoutError, OSError):
            sim.stats.response("push_unreachable")
            return None
        return self._answer(payload)

    def _answer(self, payload: bytes) -> str | None:
        sim = self.sim
        try:
            root = etree.fromstring(payload, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError:
            sim.stats.response("push_bad_answer")
            return None
        result = root.find(f"{{{NS_SOAP}}}Body/{{{NS_M}}}SendNotificationResult")
        if result is None:
            sim.stats.response("push_bad_answer")
            return None
        if sim.validate:
            problem = validation.errors(result)
            if problem is not None:
                sim.stats.violation(f"SendNotificationResult (received): {problem}")
        status = (result.findtext(f"{{{NS_M}}}SubscriptionStatus") or "").strip()
        if status not in ("OK", "Unsubscribe"):
            sim.stats.response("push_bad_answer")
            return None
        sim.stats.response(f"push_{status}")
        return status

    # --- admin -----------------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        out = []
        with self.sim.lock:
            subs = [(m, s) for m in self.sim.mailboxes.values() for s in m.subscriptions.values()]
        for mbx, sub in subs:
            st = self.states.get(sub.id)
            out.append(
                {
                    "id": sub.id,
                    "mailbox": mbx.email,
                    "url": sub.url,
                    "status_frequency": sub.status_frequency,
                    "watermark": sub.watermark,
                    "created": sub.created.isoformat(),
                    "failing": bool(st and st.failing_since is not None),
                    "attempts": st.attempts if st else 0,
                    "sent": st.sent if st else 0,
                    "delivered": st.delivered if st else 0,
                    "failures": st.failures if st else 0,
                    "events": st.events if st else 0,
                    "status_events": st.status_events if st else 0,
                }
            )
        return out

    def kill(self, sub_id: str) -> bool:
        """Forget a subscription without telling anyone, as a restarted Exchange server might."""
        with self.sim.lock:
            found = any(sub_id in m.subscriptions for m in self.sim.mailboxes.values())
        if found:
            self.stop(sub_id, "killed")
        return found


_pushers: weakref.WeakKeyDictionary[Simulator, Pusher] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def pusher_for(sim: Simulator) -> Pusher:
    with _lock:
        pusher = _pushers.get(sim)
        if pusher is None:
            pusher = _pushers[sim] = Pusher(sim)
        return pusher
