"""JSON admin API under /admin/: every Simulator method over HTTP, for tests in other processes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from calsync.simulator.core import Simulator
from calsync.simulator.model import NotFound, ValidationError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"body is not JSON: {exc}") from exc


def _guard(fn: Callable[[web.Request], Awaitable[Any]], status: int = 200) -> Handler:
    """Map model errors to HTTP statuses, so both API flavours fail the same way."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            result = await fn(request)
        except ValidationError as exc:
            return _json({"error": str(exc)}, 400)
        except NotFound as exc:
            return _json({"error": str(exc.args[0] if exc.args else exc)}, 404)
        if result is None:
            return web.Response(status=204)
        return _json(result, status)

    return handler


def routes(sim: Simulator) -> list[web.RouteDef]:
    def m(request: web.Request) -> str:
        return request.match_info["email"]

    def i(request: web.Request) -> str:
        return request.match_info["item_id"]

    async def list_mailboxes(r: web.Request) -> Any:
        return sim.list_mailboxes()

    async def add_mailbox(r: web.Request) -> Any:
        data = await _body(r)
        if not isinstance(data, dict):
            raise ValidationError("expected a JSON object")
        return sim.add_mailbox(data.get("email"), data.get("impersonation_denied", False))  # type: ignore[arg-type]

    async def delete_mailbox(r: web.Request) -> Any:
        sim.delete_mailbox(m(r))

    async def reset(r: web.Request) -> Any:
        sim.reset_sync_states(m(r))

    async def list_items(r: web.Request) -> Any:
        return sim.list_items(m(r))

    async def create_item(r: web.Request) -> Any:
        return sim.create_item(m(r), await _body(r))

    async def get_item(r: web.Request) -> Any:
        return sim.get_item(m(r), i(r))

    async def patch_item(r: web.Request) -> Any:
        return sim.update_item(m(r), i(r), await _body(r))

    async def delete_item(r: web.Request) -> Any:
        sim.delete_item(m(r), i(r))

    async def cancel_item(r: web.Request) -> Any:
        return sim.cancel_item(m(r), i(r))

    async def patch_occurrence(r: web.Request) -> Any:
        return sim.update_occurrence(m(r), i(r), r.match_info["original_start"], await _body(r))

    async def delete_occurrence(r: web.Request) -> Any:
        return sim.delete_occurrence(m(r), i(r), r.match_info["original_start"])

    async def view(r: web.Request) -> Any:
        start, end = r.query.get("start"), r.query.get("end")
        if not start or not end:
            raise ValidationError("start and end query parameters are required")
        return sim.view(m(r), start, end)

    async def add_fault(r: web.Request) -> Any:
        return sim.add_fault(await _body(r))

    async def list_faults(r: web.Request) -> Any:
        return sim.list_faults()

    async def clear_faults(r: web.Request) -> Any:
        sim.clear_faults()

    async def delete_fault(r: web.Request) -> Any:
        try:
            fault_id = int(r.match_info["fault_id"])
        except ValueError as exc:
            raise NotFound("no such fault") from exc
        sim.delete_fault(fault_id)

    async def stats(r: web.Request) -> Any:
        return sim.get_stats()

    async def reset_stats(r: web.Request) -> Any:
        sim.reset_stats()

    base = "/admin/mailboxes/{email}"
    item = base + "/items/{item_id}"
    return [
        web.get("/admin/mailboxes", _guard(list_mailboxes)),
        web.post("/admin/mailboxes", _guard(add_mailbox, 201)),
        web.delete(base, _guard(delete_mailbox)),
        web.post(base + "/reset-sync-states", _guard(reset)),
        web.get(base + "/items", _guard(list_items)),
        web.post(base + "/items", _guard(create_item, 201)),
        web.get(item, _guard(get_item)),
        web.patch(item, _guard(patch_item)),
        web.delete(item, _guard(delete_item)),
        web.post(item + "/cancel", _guard(cancel_item)),
        web.patch(item + "/occurrences/{original_start}", _guard(patch_occurrence)),
        web.delete(item + "/occurrences/{original_start}", _guard(delete_occurrence)),
        web.get(base + "/view", _guard(view)),
        web.post("/admin/faults", _guard(add_fault, 201)),
        web.get("/admin/faults", _guard(list_faults)),
        web.delete("/admin/faults", _guard(clear_faults)),
        web.delete("/admin/faults/{fault_id}", _guard(delete_fault)),
        web.get("/admin/stats", _guard(stats)),
        web.post("/admin/stats/reset", _guard(reset_stats)),
    ]
