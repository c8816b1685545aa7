"""The Graph front-end's HTTP side: token endpoint, /v1.0 calendar routes, $batch, faults.

Auth is OAuth2 client credentials against `/{tenant}/oauth2/v2.0/token` (with the OpenID
metadata MSAL reads first). Access tokens are JWT-shaped (unsigned: only their claims
matter here) and remembered until they expire; a `token_expired` fault retires the token a
request carried. Every answer can be checked against ../shared/graph-schema (validate mode).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web

from calsync.simulator import frontend, series
from calsync.simulator.core import Simulator
from calsync.simulator.faults import Fault
from calsync.simulator.graph import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT,
    GRAPH_PREFIX,
    delta,
    render,
    subscriptions,
    validation,
)
from calsync.simulator.graph import faults as graph_faults
from calsync.simulator.graph.errors import GraphError, error_body
from calsync.simulator.mailbox import Mailbox, parse_occurrence_id

TOKEN_LIFETIME = 3599
DEFAULT_PAGE = 100
MAX_PAGE = 1000
BATCH_PARALLEL = 4
_PREFER_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)")
_ERROR_KINDS = (*frontend.HTTP_ERROR_KINDS, *graph_faults.ERROR_KINDS)


@dataclass(slots=True)
class Issued:
    client_id: str
    roles: tuple[str, ...]
    expires: float
    tenant: str = DEFAULT_TENANT


def _q(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _parse_time(value: str | None, what: str) -> dt.datetime:
    if not value:
        raise GraphError(400, "ErrorInvalidParameter", f"{what} is required for calendarView")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidParameter", f"{what}: {value!r} is not an ISO 8601 time") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _tenant(name: str) -> str:
    """The tenant a token is for: its GUID (notifications carry it), the simulator's for a domain name."""
    try:
        return str(uuid.UUID(name))
    except ValueError:
        return DEFAULT_TENANT


class GraphFrontEnd:
    def __init__(self, sim: Simulator, apps: dict[str, str] | None = None) -> None:
        self.sim = sim
        self.apps = apps or {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
        self.rng = random.Random(sim.seed)
        self._tokens: dict[str, Issued] = {}
        #: Delta tokens a `delta_gone` fault invalidated: they stay gone, as in Graph.
        self._gone: set[str] = set()
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    # --- auth -----------------------------------------------------------------------------
    def _consent_revoked(self, operation: str, mailbox: str | None = None) -> bool:
        return bool(self.sim.faults and self.sim.faults.limits("consent_revoked", mailbox, operation, None))

    async def openid(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        host = f"https://{request.host}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{host}/oauth2/v2.0/token",
                "authorization_endpoint": f"{host}/oauth2/v2.0/authorize",
                "issuer": f"{host}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "response_types_supported": ["code", "id_token", "token"],
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        sim = self.sim
        form = await request.post()
        sim.stats.request("graph_token", None)
        client_id, secret = str(form.get("client_id") or ""), str(form.get("client_secret") or "")
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(
                400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type."
            )
        if client_id not in self.apps:
            return self._aad_error(
                400, "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory.",
            )  # fmt: skip
        if self.apps[client_id] != secret:
            return self._aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        roles = () if self._consent_revoked("graph_token") else ("Calendars.Read",)
        serial = next(self._serial)
        now = time.time()
        claims = {"aud": "https://graph.microsoft.com", "tid": request.match_info["tenant"], "appid": client_id,
                  "roles": list(roles), "iat": int(now), "exp": int(now) + TOKEN_LIFETIME, "jti": str(serial)}  # fmt: skip
        token = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"typ": "JWT", "alg": "none"}, claims)
        ) + "." + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")  # fmt: skip
        with self._lock:
            self._tokens[token] = Issued(client_id, roles, now + TOKEN_LIFETIME, _tenant(request.match_info["tenant"]))
            if len(self._tokens) > 10000:
                self._tokens = {t: i for t, i in self._tokens.items() if i.expires > now}
        sim.stats.response("graph_token_issued")
        return web.json_response({"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME,
                                  "access_token": token})  # fmt: skip

    def _aad_error(self, status: int, error: str, description: str) -> web.Response:
        self.sim.stats.response(error)
        return web.json_response({"error": error, "error_description": description, "error_codes": []}, status=status)

    def _caller(self, request: web.Request) -> tuple[str, Issued]:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if issued.expires < time.time():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        return token, issued

    def retire(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    # --- requests -------------------------------------------------------------------------
    async def api(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(GRAPH_PREFIX) :]
        if request.method == "POST" and path == "/$batch":
            return await self.batch(request)
        status, body, headers = await self.serve_get(request, path, request.query_string, request.headers)
        return self._json(status, body, headers, self._def_for(path, status))

    def _json(self, status: int, body: Any, headers: dict[str, str], schema_def: str) -> web.Response:
        if self.sim.validate:
            problem = validation.errors(body, schema_def)
            if problem is not None:
                self.sim.stats.violation(f"graph {schema_def}: {problem}")
        return web.json_response(body, status=status, headers=headers)

    @staticmethod
    def _def_for(path: str, status: int) -> str:
        if status >= 400:
            return "odataError"
        if path.endswith("/calendarView/delta"):
            return "deltaPage"
        if path.endswith("/instances") or path.endswith("/events"):
            return "eventCollectionResponse"
        return "event"

    async def serve_get(
        self, request: web.Request, path: str, query: str, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """One GET (alone or inside $batch): (status, JSON body, headers)."""
        sim = self.sim
        operation, email = self._route(path)
        sim.stats.request(operation, email)
        try:
            token, issued = self._caller(request)
        except GraphError as exc:
            return self._error(exc)
        concurrent, _, _ = sim.stats.enter(email, issued.client_id, False)
        try:
            faults = sim.faults
            if faults:
                for limit in faults.limits("mailbox_concurrency", email, operation, None):
                    if concurrent > limit.limit:
                        sim.fault_fired(limit)
                        return self._error(GraphError(429, "ApplicationThrottled",
                                                      "Application is over its MailboxConcurrency limit.",
                                                      limit.retry_after))  # fmt: skip
                if "Calendars.Read" in issued.roles and self._consent_revoked(operation, email):
                    self.retire(token)
                    return self._error(GraphError(401, "InvalidAuthenticationToken",
                                                  "The token was revoked: the app's permissions changed."))  # fmt: skip
            fired = faults.draw(email, operation, issued.client_id) if faults else []
            await frontend.delay(sim, fired, self.rng)
            error = next((f for k in _ERROR_KINDS for f in fired if f.kind == k), None)
            if error is not None and error.kind == "delta_gone":
                carried = [v for k in ("$skiptoken", "$deltatoken") for v in parse_qs(query).get(k, ())]
                if not carried:
                    error = None  # a first request has no token to lose
                self._gone.update(carried)
            if error is not None:
                return self._fault(error, token)
            if "Calendars.Read" not in issued.roles:
                return self._error(
                    GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
                )
            return self._dispatch(path, parse_qs(query), headers)
        except GraphError as exc:
            return self._error(exc)
        finally:
            sim.stats.leave(email, issued.client_id, False)

    def _error(self, exc: GraphError) -> tuple[int, Any, dict[str, str]]:
        self.sim.stats.response(f"graph_{exc.status}_{exc.code}")
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        return exc.status, error_body(exc.code, exc.message), headers

    def _fault(self, fault: Fault, token: str) -> tuple[int, Any, dict[str, str]]:
        self.sim.fault_fired(fault)
        kind = fault.kind
        if kind == "http_429":
            return self._error(GraphError(429, "TooManyRequests", "Too many requests.", fault.retry_after))
        if kind == "http_503":
            return self._error(GraphError(503, "ServiceUnavailable", "Service unavailable.", fault.retry_after))
        if kind == "http_504":
            return self._error(GraphError(504, "GatewayTimeout", "The gateway did not receive a response in time."))
        if kind == "delta_gone":
            return self._error(GraphError(410, "syncStateNotFound", "The sync state generation is not found."))
        if kind == "token_expired":
            self.retire(token)
            return self._error(
                GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
            )
        # connection_reset and the body faults are EWS-shaped; Graph answers them as a 503
        return self._error(GraphError(503, "ServiceUnavailable", f"simulated {kind}", fault.retry_after))

    @staticmethod
    def _route(path: str) -> tuple[str, str | None]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        email = parts[1] if len(parts) > 1 and parts[0] == "users" else None
        if path.endswith("/calendarView/delta"):
            return "graph_delta", email
        if path.endswith("/instances"):
            return "graph_instances", email
        if len(parts) == 3 and parts[2] == "events":
            return "graph_events", email
        return "graph_event", email

    def _mailbox(self, email: str | None) -> Mailbox:
        mailbox = self.sim.find_mailbox(email or "")
        if mailbox is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{email}' is invalid.")
        if mailbox.impersonation_denied:  # an RBAC for Applications scope that leaves it out
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return mailbox

    def _dispatch(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, Any, dict[str, str]]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) < 3 or parts[0] != "users":
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path}'.")
        size = DEFAULT_PAGE
        match = _PREFER_PAGE.search(str(headers.get("Prefer", "")))
        if match:
            size = max(1, min(int(match.group(1)), MAX_PAGE))
        with self.sim.lock:
            mailbox = self._mailbox(parts[1])
            base = f"{GRAPH_PREFIX}/users/{parts[1]}"
            if parts[2:] == ["calendarView", "delta"]:
                return self._delta(mailbox, query, size, base)
            if parts[2:] == ["events"]:
                return self._events(mailbox, query, base)
            if len(parts) == 4 and parts[2] == "events":
                return 200, self._event(mailbox, parts[3]), {}
            if len(parts) == 5 and parts[2] == "events" and parts[4] == "instances":
                return self._instances(mailbox, parts[3], query, size, base)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    def _link(self, path: str, name: str, value: str) -> str:
        return f"{self.origin}{path}?{name}={value}"

    def _delta(
        self, mailbox: Mailbox, query: dict[str, list[str]], size: int, base: str
    ) -> tuple[int, Any, dict[str, str]]:
        skip = _q(query, "$skiptoken") or _q(query, "$deltatoken")
        if skip and skip in self._gone:
            raise GraphError(410, "syncStateNotFound", "The sync state generation is not found.")
        if skip:
            try:
                token = delta.Token.decode(skip, mailbox)
            except delta.TokenGone as exc:
                raise GraphError(410, "syncStateNotFound", str(exc)) from exc
        else:
            start = _parse_time(_q(query, "startDateTime"), "startDateTime")
            end = _parse_time(_q(query, "endDateTime"), "endDateTime")
            if end <= start:
                raise GraphError(400, "ErrorInvalidParameter", "endDateTime must be after startDateTime")
            token = delta.Token(mailbox.key, mailbox.epoch, start, end, 0)
        entries, following, last = delta.page(mailbox, token, size)
        body: dict[str, Any] = {
            "@odata.context": f"{self.origin}{GRAPH_PREFIX}/$metadata#Collection(event)",
            "value": entries,
        }
        if last:
            body["@odata.deltaLink"] = self._link(f"{base}/calendarView/delta", "$deltatoken", following.encode())
        else:
            body["@odata.nextLink"] = self._link(f"{base}/calendarView/delta", "$skiptoken", following.encode())
        return 200, body, {"Preference-Applied": f"odata.maxpagesize={size}"}

    def _event(self, mailbox: Mailbox, graph: str) -> dict[str, Any]:
        core = render.core_id(graph)
        item = mailbox.items.get(core or "")
        if item is not None:
            return render.event(item, mailbox.email)
        occ = parse_occurrence_id(core or "")
        if occ is not None:
            master = mailbox.items.get(occ[0])
            inst = series.instance_at(master, occ[1]) if master is not None else None
            if inst is not None:
                return render.instance_event(inst, mailbox.email)
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _events(self, mailbox: Mailbox, query: dict[str, list[str]], base: str) -> tuple[int, Any, dict[str, str]]:
        wanted = (query.get("$filter") or [""])[0].replace(" ", "")
        select = [s for s in (query.get("$select") or [""])[0].split(",") if s]
        top = int((query.get("$top") or ["10"])[0])
        skip = int((query.get("$skip") or ["0"])[0])
        items = sorted(mailbox.items.values(), key=lambda i: i.created_seq)
        if wanted == "type eq 'seriesMaster'".replace(" ", ""):
            items = [i for i in items if i.recurrence is not None]
        page = items[skip : skip + top]
        value = []
        for item in page:
            ev = render.event(item, mailbox.email)
            if select:
                ev = {k: v for k, v in ev.items() if k in select or k in ("@odata.etag",)}
            value.append(ev)
        body: dict[str, Any] = {
            "@odata.context": f"{self.origin}{GRAPH_PREFIX}/$metadata#users('{mailbox.email}')/events",
            "value": value,
        }
        if skip + top < len(items):
            body["@odata.nextLink"] = (
                f"{self.origin}{base}/events?$filter={wanted}&$select={','.join(select)}&$top={top}&$skip={skip + top}"
            )
        return 200, body, {}

    def _instances(
        self, mailbox: Mailbox, graph: str, query: dict[str, list[str]], size: int, base: str
    ) -> tuple[int, Any, dict[str, str]]:
        item = mailbox.items.get(render.core_id(graph) or "")
        if item is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        start = _parse_time(_q(query, "startDateTime"), "startDateTime")
        end = _parse_time(_q(query, "endDateTime"), "endDateTime")
        skip = int((query.get("$skip") or ["0"])[0])
        found = series.instances(item, start, end) if item.recurrence is not None else []
        value = [render.instance_event(i, mailbox.email) for i in found[skip : skip + size]]
        body: dict[str, Any] = {
            "@odata.context": f"{self.origin}{GRAPH_PREFIX}/$metadata#Collection(event)",
            "value": value,
        }
        if skip + size < len(found):
            body["@odata.nextLink"] = (
                f"{self.origin}{base}/events/{graph}/instances?startDateTime={render.instant(start)}"
                f"&endDateTime={render.instant(end)}&$skip={skip + size}"
            )
        return 200, body, {}

    # --- $batch ---------------------------------------------------------------------------
    async def batch(self, request: web.Request) -> web.Response:
        sim = self.sim
        sim.stats.request("graph_batch", None)
        try:
            self._caller(request)
        except GraphError as exc:
            status, body, headers = self._error(exc)
            return self._json(status, body, headers, "odataError")
        try:
            payload = await request.json()
            subs = list(payload["requests"])
        except (ValueError, KeyError, TypeError):
            status, body, headers = self._error(GraphError(400, "BadRequest", "Invalid batch payload."))
            return self._json(status, body, headers, "odataError")
        if len(subs) > 20:
            status, body, headers = self._error(
                GraphError(400, "BadRequest", "Too many requests in one batch (limit 20).")
            )
            return self._json(status, body, headers, "odataError")
        gate = asyncio.Semaphore(BATCH_PARALLEL)

        async def one(sub: dict[str, Any]) -> dict[str, Any]:
            url = urlsplit(str(sub.get("url") or ""))
            sub_headers = {**dict(request.headers), **(sub.get("headers") or {})}
            async with gate:
                if str(sub.get("method") or "GET").upper() != "GET":
                    status, body, headers = self._error(
                        GraphError(405, "MethodNotAllowed", "The simulator serves GET only.")
                    )
                else:
                    status, body, headers = await self.serve_get(request, url.path, url.query, sub_headers)
            if sim.validate:
                problem = validation.errors(body, self._def_for(url.path, status))
                if problem is not None:
                    sim.stats.violation(f"graph $batch {url.path}: {problem}")
            return {"id": sub.get("id"), "status": status, "headers": headers, "body": body}

        # Outlook runs up to four requests of a batch at a time (each counts toward its mailbox's four).
        responses = list(await asyncio.gather(*(one(sub) for sub in subs)))
        return web.json_response({"responses": responses})

    origin = ""


def routes(sim: Simulator) -> Iterable[web.AbstractRouteDef]:
    front = GraphFrontEnd(sim)

    async def api(request: web.Request) -> web.StreamResponse:
        front.origin = f"{request.scheme}://{request.host}"
        return await front.api(request)

    async def batch(request: web.Request) -> web.StreamResponse:
        front.origin = f"{request.scheme}://{request.host}"
        return await front.batch(request)

    return [
        web.get("/{tenant}/v2.0/.well-known/openid-configuration", front.openid),
        web.post("/{tenant}/oauth2/v2.0/token", front.token),
        web.post(GRAPH_PREFIX + "/$batch", batch),
        *subscriptions.routes(front),  # before the catch-all, which would take GET /subscriptions
        web.get(GRAPH_PREFIX + "/{tail:.*}", api),
    ]
