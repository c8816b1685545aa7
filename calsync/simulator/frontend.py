"""What every protocol front-end shares: the route-provider type, basic auth, latency, HTTP-level faults.

A front-end (ews/ today, graph/ next) turns its protocol's requests into calls on the one
:class:`~calsync.simulator.core.Simulator`, so every front-end serves the same mailboxes. The
faults here act on HTTP, not on a protocol's messages, so each front-end gets them by calling
these helpers instead of re-implementing them; see STATUS.md, "Adding a front-end".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
from collections.abc import Callable, Iterable

from aiohttp import web

from calsync.simulator.core import Simulator
from calsync.simulator.faults import Fault

#: A front-end: given the simulator, the aiohttp routes it serves (mounted beside /admin/).
RouteProvider = Callable[[Simulator], Iterable[web.AbstractRouteDef]]

#: Neutral faults that replace the answer, checked before a front-end's own error kinds.
HTTP_ERROR_KINDS = ("connection_reset", "http_503", "http_429")


class BasicAuth:
    """Basic-auth checks, with parsed headers cached: the same few headers arrive on every request."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = accounts
        self._cache: dict[str, str | None] = {}

    def account(self, header: str | None) -> str | None:
        if not header:
            return None
        if header in self._cache:
            return self._cache[header]
        user: str | None = None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name = password = ""
            name = name.split("\\")[-1]  # DOMAIN\user
            if name in self.accounts and self.accounts[name] == password:
                user = name
        if len(self._cache) < 1024:
            self._cache[header] = user
        return user


async def delay(sim: Simulator, fired: Iterable[Fault], rng: random.Random) -> None:
    """Global latency plus any latency faults, as an asyncio sleep so other requests go on being served."""
    total: float = sim.latency_ms
    for fault in fired:
        if fault.kind == "latency":
            sim.fault_fired(fault)
            total += fault.latency_ms + (rng.uniform(0, fault.jitter_ms) if fault.jitter_ms else 0)
    if total > 0:
        await asyncio.sleep(total / 1000)


def http_error(fault: Fault) -> web.Response:
    """An HTTP 503/429 page with Retry-After, as a load balancer or throttling proxy sends it."""
    status = 503 if fault.kind == "http_503" else 429
    text = "Service Unavailable" if status == 503 else "Too Many Requests"
    return web.Response(
        status=status,
        text=f"<html><body><h1>{status} {text}</h1></body></html>",
        content_type="text/html",
        headers={"Retry-After": str(fault.retry_after)},
    )


async def reset_connection(request: web.Request, payload: bytes, content_type: str) -> web.StreamResponse:
    """Send a third of a full answer, then drop the socket: a connection lost mid-body."""
    response = web.StreamResponse(
        status=200, headers={"Content-Type": content_type, "Content-Length": str(len(payload))}
    )
    await response.prepare(request)
    await response.write(payload[: len(payload) // 3])
    transport = request.transport
    if transport is not None:
        transport.abort()
    return response


def truncated(payload: bytes) -> bytes:
    """The first half of an answer, as a proxy that cuts a body short delivers it."""
    return payload[: max(len(payload) // 2, 40)]
