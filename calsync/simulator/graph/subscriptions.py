"""The Graph subscription API over HTTP, and its admin side; delivery lives in graph/push.py.

`POST /subscriptions` runs the validation handshake on both URLs before it answers, as Graph
does, so a listener that cannot echo the token gets no subscription. Request bodies are
checked against the schema too (violations count in the stats): the client here is calsync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from calsync.simulator import admin
from calsync.simulator.graph import GRAPH_PREFIX, push, validation
from calsync.simulator.graph.errors import GraphError
from calsync.simulator.mailbox import Mailbox

if TYPE_CHECKING:
    from calsync.simulator.graph.endpoint import GraphFrontEnd, Issued

Work = Callable[[], Awaitable[tuple[int, Any]]]


class SubscriptionApi:
    def __init__(self, front: GraphFrontEnd) -> None:
        self.front = front
        self.sim = front.sim
        self.pusher = push.pusher_for(front.sim)

    # --- plumbing ----------------------------------------------------------------------------
    def _auth(self, request: web.Request, operation: str, email: str | None = None) -> Issued:
        """The caller's token, with the same consent rules as reads (subscribing needs Calendars.Read)."""
        token, issued = self.front._caller(request)
        if "Calendars.Read" in issued.roles and self.front._consent_revoked(operation, email):
            self.front.retire(token)
            raise GraphError(401, "InvalidAuthenticationToken", "The token was revoked: the app's permissions changed.")
        if "Calendars.Read" not in issued.roles:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return issued

    async def _body(self, request: web.Request, definition: str) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError as exc:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
        if not isinstance(data, dict):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
        if self.sim.validate:
            problem = validation.errors(data, definition)
            if problem is not None:
                self.sim.stats.violation(f"graph {definition} (received): {problem}")
        return data

    async def _answer(self, operation: str, work: Work, definition: str = "subscription") -> web.Response:
        self.sim.stats.request(operation, None)
        try:
            status, body = await work()
        except GraphError as exc:
            status, body, headers = self.front._error(exc)
            return self.front._json(status, body, headers, "odataError")
        self.sim.stats.response(f"{operation}_{status}")
        if status == 204:
            return web.Response(status=204)
        return self.front._json(status, body, {}, definition)

    def _mailbox(self, resource: Any) -> Mailbox:
        """`/users/{email or id}/events` (the leading slash optional, as Graph accepts)."""
        parts = [unquote(p) for p in str(resource or "").strip("/").split("/")]
        if len(parts) != 3 or parts[0].lower() != "users" or parts[2].lower() != "events":
            raise GraphError(400, "InvalidRequest", f"Unsupported resource '{resource}': expected /users/{{id}}/events")
        with self.sim.lock:
            mailbox = self.sim.find_mailbox(parts[1]) or next(
                (m for m in self.sim.mailboxes.values() if push.user_id(m) == parts[1].lower()), None
            )
        if mailbox is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is invalid.")
        if mailbox.impersonation_denied:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return mailbox

    # --- the API ---------------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        async def work() -> tuple[int, Any]:
            self._auth(request, "graph_subscribe")
            data = await self._body(request, "subscriptionCreateRequest")
            mailbox = self._mailbox(data.get("resource"))
            issued = self._auth(request, "graph_subscribe", mailbox.email)
            wanted = str(data.get("changeType") or "").split(",")
            if not all(w in push.CHANGE_TYPES for w in wanted):
                raise GraphError(400, "InvalidRequest", f"Invalid changeType '{data.get('changeType')}'.")
            state = data.get("clientState")
            if state is not None and (not isinstance(state, str) or len(state) > 128):
                raise GraphError(400, "InvalidRequest", "clientState must be a string of at most 128 characters.")
            url = push.check_url(data.get("notificationUrl"), "notificationUrl")
            lifecycle = data.get("lifecycleNotificationUrl")
            if lifecycle is not None:
                lifecycle = push.check_url(lifecycle, "lifecycleNotificationUrl")
            expires = self.pusher.check_expiry(data.get("expirationDateTime"))
            sub = await self.pusher.create(
                mailbox,
                issued.client_id,
                issued.tenant,
                str(data["resource"]),
                tuple(t for t in push.CHANGE_TYPES if t in wanted),
                url,
                lifecycle,
                state,
                expires,
            )
            return 201, sub.body()

        return await self._answer("graph_subscribe", work)

    async def renew(self, request: web.Request) -> web.Response:
        async def work() -> tuple[int, Any]:
            issued = self._auth(request, "graph_renew")
            data = await self._body(request, "subscriptionRenewRequest")
            sub = self.pusher.active(request.match_info["sub_id"], issued.client_id)
            expires = self.pusher.check_expiry(data.get("expirationDateTime"))
            sub = await self.pusher.renew(sub, expires)
            return 200, sub.body()

        return await self._answer("graph_renew", work)

    async def get(self, request: web.Request) -> web.Response:
        async def work() -> tuple[int, Any]:
            issued = self._auth(request, "graph_subscription")
            return 200, self.pusher.active(request.match_info["sub_id"], issued.client_id).body()

        return await self._answer("graph_subscription", work)

    async def reauthorize(self, request: web.Request) -> web.Response:
        async def work() -> tuple[int, Any]:
            issued = self._auth(request, "graph_reauthorize")
            self.pusher.reauthorize(self.pusher.active(request.match_info["sub_id"], issued.client_id))
            return 204, None

        return await self._answer("graph_reauthorize", work)

    async def delete(self, request: web.Request) -> web.Response:
        async def work() -> tuple[int, Any]:
            issued = self._auth(request, "graph_unsubscribe")
            self.pusher.delete(self.pusher.active(request.match_info["sub_id"], issued.client_id))
            return 204, None

        return await self._answer("graph_unsubscribe", work)

    async def list(self, request: web.Request) -> web.Response:
        async def work() -> tuple[int, Any]:
            issued = self._auth(request, "graph_subscriptions")
            value = []
            for sub in list(self.pusher.subs.values()):
                if sub.app_id == issued.client_id and self.pusher._live(sub):
                    body = sub.body()
                    body.pop("@odata.context")
                    value.append(body)
            if self.sim.validate:
                for body in value:
                    problem = validation.errors(body, "subscription")
                    if problem is not None:
                        self.sim.stats.violation(f"graph subscription (list): {problem}")
            return 200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions", "value": value}

        self.sim.stats.request("graph_subscriptions", None)
        try:
            status, body = await work()
        except GraphError as exc:
            status, body, headers = self.front._error(exc)
            return self.front._json(status, body, headers, "odataError")
        return web.json_response(body, status=status)


def routes(front: GraphFrontEnd) -> list[web.RouteDef]:
    """The subscription API (mount before the Graph GET catch-all) and /admin/graph/."""
    api = SubscriptionApi(front)
    pusher = api.pusher
    sub = GRAPH_PREFIX + "/subscriptions/{sub_id}"
    one = "/admin/graph/subscriptions/{sub_id}"

    async def admin_list(r: web.Request) -> Any:
        return pusher.list()

    async def admin_kill(r: web.Request) -> Any:
        pusher.kill(r.match_info["sub_id"])

    async def admin_lifecycle(r: web.Request) -> Any:
        data = await admin._body(r)
        return await pusher.send_lifecycle(
            r.match_info["sub_id"], data.get("event") if isinstance(data, dict) else None
        )

    async def get_options(r: web.Request) -> Any:
        return pusher.options_json()

    async def set_options(r: web.Request) -> Any:
        return pusher.set_options(await admin._body(r))

    return [
        web.post(GRAPH_PREFIX + "/subscriptions", api.create),
        web.get(GRAPH_PREFIX + "/subscriptions", api.list),
        web.get(sub, api.get),
        web.patch(sub, api.renew),
        web.delete(sub, api.delete),
        web.post(sub + "/reauthorize", api.reauthorize),
        web.get("/admin/graph/subscriptions", admin._guard(admin_list)),
        web.delete(one, admin._guard(admin_kill)),
        web.post(one + "/lifecycle", admin._guard(admin_lifecycle)),
        web.get("/admin/graph/options", admin._guard(get_options)),
        web.put("/admin/graph/options", admin._guard(set_options)),
    ]
