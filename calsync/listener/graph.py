"""The listener's Graph side: validation handshakes, change and lifecycle notifications.

Graph POSTs to the two URLs calsync gave a subscription, `<notification_url>/graph/SECRET`
and `<notification_url>/graph-lifecycle/SECRET`. As for EWS push, nothing here calls Graph,
and each POST is a parse, one or two Postgres statements and at most one Redis round trip:

- `?validationToken=...` (on creation, and on renewals where Graph asks): the token is
  echoed as text/plain only when SECRET belongs to a live Graph subscription of an enabled
  operator, else 403, so no one can point Graph at this listener for a subscription calsync
  did not make.
- change notifications (JSON, at most 100 per POST, all for one subscription): SECRET,
  clientState and subscriptionId must be the subscription's, else 403 and nothing is
  recorded or enqueued. The operator is then owed a delta sync, coalesced by the Kicker into
  at most one pending sync, and the answer is 202. A subscription calsync no longer wants is
  answered 202 too (Graph has no "Unsubscribe"; the sweep deletes it at Graph).
- lifecycle notifications, 202: `reauthorizationRequired` makes the renewal due now,
  `subscriptionRemoved` marks push dead (the sweep subscribes again) and `missed` owes a sync;
  both of the latter kick a delta sync at once.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from calsync import metrics
from calsync.listener.http import read_body, reject
from calsync.listener.kick import Kicker
from calsync.push.callback import GRAPH_CHANGE, secret_hash, secret_of
from calsync.store import push

log = logging.getLogger(__name__)

MAX_ITEMS = 1000
MAX_TOKEN = 4096
JSON = "application/json"


def is_graph_request(request: web.Request) -> bool:
    """A Graph POST: a validation request, or a JSON body (EWS posts text/xml)."""
    return "validationToken" in request.query or request.content_type == JSON


def _accepted() -> web.Response:
    return web.Response(status=202)


class BadGraphBody(ValueError):
    pass


def parse(body: bytes, kind: str) -> tuple[str, str, list[dict[str, Any]]]:
    """(subscriptionId, clientState, items) of one POST; every item must name the same
    subscription and clientState (calsync gives each subscription URLs of its own)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadGraphBody(f"not JSON: {type(exc).__name__}") from exc
    items = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise BadGraphBody("no notifications in `value`")
    sub_ids, states = set(), set()
    for item in items:
        if not isinstance(item, dict):
            raise BadGraphBody("a notification is not an object")
        sid, state = item.get("subscriptionId"), item.get("clientState")
        if not isinstance(sid, str) or not sid or not isinstance(state, str) or not state or len(state) > 128:
            raise BadGraphBody("a notification lacks subscriptionId or clientState")
        if kind == GRAPH_CHANGE:
            if not isinstance(item.get("changeType"), str) or not isinstance(item.get("resource"), str):
                raise BadGraphBody("a change notification lacks changeType or resource")
        elif not isinstance(item.get("lifecycleEvent"), str):
            raise BadGraphBody("a lifecycle notification lacks lifecycleEvent")
        sub_ids.add(sid)
        states.add(state)
    if len(sub_ids) != 1 or len(states) != 1:
        raise BadGraphBody("notifications of several subscriptions in one POST")
    return sub_ids.pop(), states.pop(), items


async def handle(request: web.Request, kind: str, pool: AsyncConnectionPool[Any], kicker: Kicker) -> web.Response:
    secret = secret_of(request.path)
    if secret is None:
        return reject(403, "no_secret", "forbidden: the URL carries no subscription secret")
    h = secret_hash(secret)
    token = request.query.get("validationToken")
    if token is not None:
        if not token or len(token) > MAX_TOKEN:
            return reject(400, "invalid_body", "bad validationToken")
        async with pool.connection() as conn:
            allowed = await push.graph_validation_allowed(conn, h)
        if not allowed:
            return reject(403, "unknown_secret", "forbidden: no subscription is being validated at this URL")
        metrics.PUSH_NOTIFICATIONS.labels("validation").inc()
        return web.Response(text=token, content_type="text/plain")
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        sub_id, client_state, items = parse(body, kind)
    except BadGraphBody as exc:
        return reject(400, "invalid_body", f"not a Graph notification collection: {exc}")
    cs = secret_hash(client_state)
    if kind == GRAPH_CHANGE:
        async with pool.connection() as conn:
            heard = await push.hear_graph(conn, h, sub_id, cs, len(items))
        if heard.verdict is push.Verdict.FORGED:
            return reject(403, "forged", f"forbidden: {heard.reason}")
        if heard.verdict is push.Verdict.UNSUBSCRIBE:
            metrics.PUSH_NOTIFICATIONS.labels("unsubscribed").inc()
            metrics.PUSH_UNSUBSCRIBES.labels(heard.reason.split(" ")[-1]).inc()
            return _accepted()
        assert heard.operator_id is not None
        metrics.PUSH_NOTIFICATIONS.labels("change").inc()
        if not await kicker.kick(heard.operator_id):
            metrics.PUSH_COALESCED.inc()
        return _accepted()
    kicked: set[int] = set()
    async with pool.connection() as conn:
        for item in items:
            event = str(item["lifecycleEvent"])
            heard = await push.graph_lifecycle(conn, h, sub_id, cs, event)
            if heard.verdict is push.Verdict.FORGED:
                return reject(403, "forged", f"forbidden: {heard.reason}")
            metrics.GRAPH_LIFECYCLE.labels(event if event in tuple(push.Lifecycle) else "other").inc()
            log.info("Graph lifecycle %s for subscription %s: %s", event, sub_id[:16], heard.reason or heard.verdict)
            if heard.verdict is push.Verdict.OK and heard.operator_id is not None:
                kicked.add(heard.operator_id)
    for op in kicked:
        await kicker.kick(op)
    return _accepted()
