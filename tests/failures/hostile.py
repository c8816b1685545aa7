"""A hostile EWS endpoint: a proxy in front of the simulator that spoils chosen answers.

Requests for other mailboxes or operations pass through unchanged, so one test can show that
one hostile answer hurts nobody else. What it does per matching request is an `Act`:

- trickle: send a valid HTTP 200 header, then one byte every `interval` seconds, forever;
- huge: a 200 whose SOAP body is `size` bytes (the real answer padded with an XML comment), sent
  chunked without a Content-Length, so the client learns its size only by reading it;
- html: a 200 with an HTML error page, as a misconfigured reverse proxy sends;
- rewrite: a function from the real answer's bytes to the bytes sent (entities);
- old_server: an Exchange 2007 SP1: any newer RequestServerVersion gets ErrorInvalidServerVersion,
  and its answers say build 8.3 (the simulator behind it poses as 2010).

Every connection the client closed while the proxy was still trickling is recorded, so a
test can tell "the client gave up" from "the server finished".
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from calsync.simulator.ews.soap import fault


@dataclass
class Act:
    kind: str  # trickle | huge | html | rewrite
    mailbox: str | None = None  # only requests naming this mailbox; None: all
    operation: str | None = None  # SyncFolderItems, GetItem, ...; None: all
    interval: float = 1.0
    size: int = 0
    rewrite: Callable[[bytes], bytes] | None = None
    request_rewrite: Callable[[bytes], bytes] | None = None

    def matches(self, body: bytes) -> bool:
        if self.operation is not None and f":{self.operation}".encode() not in body:
            return False
        return self.mailbox is None or self.mailbox.lower().encode() in body.lower()


@dataclass
class HostileProxy:
    target: str  # the simulator's EWS URL
    acts: list[Act] = field(default_factory=list)
    gave_up: list[tuple[float, float]] = field(default_factory=list)  # (opened, closed by the client)
    trickling: int = 0
    huge_sent: list[int] = field(default_factory=list)  # bytes of each huge answer sent before the client left
    matched: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="hostile-ews")

    @property
    def ews_url(self) -> str:
        return re.sub(r"//[^/]+/", f"//127.0.0.1:{self.port}/", self.target, count=1)

    def act(self, body: bytes) -> Act | None:
        with self.lock:
            for a in self.acts:
                if a.matches(body):
                    self.matched += 1
                    return a
        return None

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type",
                                                                            "x-anchormailbox", "soapaction")}  # fmt: skip
        assert self._session is not None
        async with self._session.post(self.target, data=body, headers=headers) as up:
            return up.status, {"Content-Type": up.headers.get("Content-Type", "text/xml")}, await up.read()

    async def _trickle(self, request: web.Request, interval: float) -> web.StreamResponse:
        opened = time.time()
        # Chunked, no Content-Length: nothing tells the client how long it will take.
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/xml; charset=utf-8"})
        with self.lock:
            self.trickling += 1
        try:
            await response.prepare(request)
            await response.write(b"<")
            while True:
                await asyncio.sleep(interval)
                transport = request.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("client closed")
                await response.write(b" ")
        except (ConnectionResetError, asyncio.CancelledError, aiohttp.ClientConnectionResetError):
            with self.lock:
                self.gave_up.append((opened, time.time()))
            raise
        finally:
            with self.lock:
                self.trickling -= 1

    async def _huge(self, request: web.Request, payload: bytes, size: int) -> web.StreamResponse:
        head, sep, tail = payload.rpartition(b"</s:Envelope>")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/xml; charset=utf-8"})
        await response.prepare(request)
        sent = 0
        try:
            await response.write(head + b"<!--")
            sent += len(head) + 4
            block = b"x" * 65536
            while sent < size:
                await response.write(block)
                sent += len(block)
            await response.write(b"-->" + sep + tail)
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            with self.lock:
                self.huge_sent.append(sent)
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        act = self.act(body)
        if act is not None and act.request_rewrite is not None:
            body = act.request_rewrite(body)
        if act is not None and act.kind == "trickle":
            return await self._trickle(request, act.interval)
        if act is not None and act.kind == "old_server":
            asked = re.search(rb'RequestServerVersion[^>]*Version="([A-Za-z0-9_]+)"', body)
            if asked is None or asked.group(1) != b"Exchange2007_SP1":
                refusal = fault("ErrorInvalidServerVersion", "The specified server version is invalid.")
                return web.Response(status=500, body=refusal, headers={"Content-Type": "text/xml; charset=utf-8"})
            body = body.replace(b'Version="Exchange2007_SP1"', b'Version="Exchange2010"')
            status, headers, payload = await self._forward(request, body)
            payload = re.sub(rb'MajorVersion="\d+" MinorVersion="\d+"', b'MajorVersion="8" MinorVersion="3"', payload)
            payload = re.sub(rb'(ServerVersionInfo[^>]*) Version="[A-Za-z0-9_]+"', rb'\1 Version="Exchange2007_SP1"',
                             payload)  # fmt: skip
            return web.Response(status=status, body=payload, headers=headers)
        if act is not None and act.kind == "html":
            html = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Proxy login</h1></body></html>"
            return web.Response(status=200, body=html, headers={"Content-Type": "text/html; charset=utf-8"})
        status, headers, payload = await self._forward(request, body)
        if act is not None and act.kind == "huge" and status == 200:
            return await self._huge(request, payload, act.size)
        if act is not None and act.kind == "rewrite" and act.rewrite is not None:
            payload = act.rewrite(payload)
        return web.Response(status=status, body=payload, headers=headers)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._session = aiohttp.ClientSession()
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, handler_cancellation=True)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = self._runner.addresses[0][1]

        self._session: aiohttp.ClientSession | None = None
        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        assert self._ready.wait(10), "hostile proxy did not start"
        return self

    async def _shutdown(self) -> None:
        await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
