"""The aiohttp application (EWS endpoint + admin API) and an in-process background-thread server.

asyncio keeps injected latency from blocking other requests: a slow answer is an
``asyncio.sleep`` while the loop serves everybody else. Authentication, concurrency accounting
and the HTTP-level faults live here because they need the request and its socket.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import threading

from aiohttp import web

from calsync.simulator import validation
from calsync.simulator.admin import routes
from calsync.simulator.core import Simulator
from calsync.simulator.ews import dispatch
from calsync.simulator.ews.soap import NS_SOAP, SchemaError, schema_fault, server_busy_fault
from calsync.simulator.faults import Fault

EWS_PATH = "/EWS/Exchange.asmx"
XML = "text/xml; charset=utf-8"
# Checked in this order when several faults fire for one request.
_ERROR_KINDS = (
    "connection_reset",
    "http_503",
    "http_429",
    "server_busy_fault",
    "server_busy_message",
    "invalid_sync_state",
)


class _Auth:
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


def _xml(payload: bytes, status: int = 200) -> web.Response:
    return web.Response(body=payload, status=status, headers={"Content-Type": XML})


class EwsEndpoint:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.auth = _Auth(sim.service_accounts)
        self.rng = random.Random(sim.seed)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        data = await request.read()
        account = self.auth.account(request.headers.get("Authorization"))
        if account is None:
            sim.stats.response("http_401")
            return web.Response(
                status=401, text="401 - Unauthorized", headers={"WWW-Authenticate": 'Basic realm="simulator"'}
            )
        try:
            req = dispatch.parse(sim, data)
            email = dispatch.target_mailbox(req, request.headers.get("X-AnchorMailbox"))
            with sim.lock:
                mailbox = dispatch.resolve(sim, req, email)
        except SchemaError as exc:
            sim.stats.response("ErrorSchemaValidation")
            return _xml(schema_fault(exc), 500)
        except dispatch.Fault as exc:
            sim.stats.response("fault")
            return _xml(exc.payload, 500)
        operation = req.operation
        sim.stats.request(operation, mailbox.email)
        is_sync = operation == "SyncFolderItems"
        _, concurrent_account, concurrent_syncs = sim.stats.enter(mailbox.email, account, is_sync)
        try:
            return await self._serve(
                request, dispatch.Prepared(req, mailbox), account, concurrent_account, concurrent_syncs
            )
        finally:
            sim.stats.leave(mailbox.email, account, is_sync)

    async def _serve(
        self, request: web.Request, prepared: dispatch.Prepared, account: str, concurrent_account: int, syncs: int
    ) -> web.StreamResponse:
        sim = self.sim
        operation = prepared.request.operation
        email = prepared.mailbox.email
        faults = sim.faults
        if faults:
            for limit in faults.limits("account_concurrency_limit", email, operation, account):
                if concurrent_account > limit.limit:
                    sim.fault_fired(limit)
                    return _xml(dispatch.connection_count_exceeded(sim, operation))
            if operation == "SyncFolderItems":
                for limit in faults.limits("concurrent_sync_limit", email, operation, account):
                    if syncs > limit.limit:
                        sim.fault_fired(limit)
                        return _xml(server_busy_fault(limit.back_off_ms), 500)
        fired = faults.draw(email, operation, account) if faults else []
        delay: float = sim.latency_ms
        for fault in fired:
            if fault.kind == "latency":
                sim.fault_fired(fault)
                delay += fault.latency_ms + (self.rng.uniform(0, fault.jitter_ms) if fault.jitter_ms else 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        error = next((f for k in _ERROR_KINDS for f in fired if f.kind == k), None)
        if error is not None:
            return await self._error(request, error, prepared)
        payload = dispatch.run(sim, prepared)
        for fault in fired:
            if fault.kind == "truncated_body":
                sim.fault_fired(fault)
                return _xml(payload[: max(len(payload) // 2, 40)])
            if fault.kind == "malformed_body":
                sim.fault_fired(fault)
                return _xml(
                    b'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="' + NS_SOAP.encode() + b'">'
                    b"<s:Header/><Oops>not an EWS response</Oops></s:Envelope>"
                )
        if sim.validate:
            problem = validation.response_errors(payload)
            if problem is not None:
                sim.stats.violation(f"{operation}: {problem}")
        return _xml(payload)

    async def _error(self, request: web.Request, fault: Fault, prepared: dispatch.Prepared) -> web.StreamResponse:
        sim = self.sim
        operation = prepared.request.operation
        sim.fault_fired(fault)
        kind = fault.kind
        if kind == "connection_reset":
            payload = dispatch.run(sim, prepared)
            response = web.StreamResponse(
                status=200, headers={"Content-Type": XML, "Content-Length": str(len(payload))}
            )
            await response.prepare(request)
            await response.write(payload[: len(payload) // 3])
            transport = request.transport
            if transport is not None:
                transport.abort()
            return response
        if kind in ("http_503", "http_429"):
            status = 503 if kind == "http_503" else 429
            text = "Service Unavailable" if status == 503 else "Too Many Requests"
            return web.Response(
                status=status,
                text=f"<html><body><h1>{status} {text}</h1></body></html>",
                content_type="text/html",
                headers={"Retry-After": str(fault.retry_after)},
            )
        if kind == "server_busy_fault":
            return _xml(server_busy_fault(fault.back_off_ms), 500)
        if kind == "server_busy_message":
            return _xml(dispatch.server_busy_message(sim, operation, fault.back_off_ms))
        return _xml(dispatch.invalid_sync_state(sim))


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    endpoint = EwsEndpoint(sim)

    async def ews(request: web.Request) -> web.StreamResponse:
        return await endpoint(request)

    app.router.add_post(EWS_PATH, ews)
    app.router.add_post(EWS_PATH.lower(), ews)
    app.router.add_routes(routes(sim))
    return app


class SimulatorServer:
    """Runs the app on a free port in a background thread; for in-process tests.

    >>> with SimulatorServer(Simulator()) as server:
    ...     server.ews_url
    """

    def __init__(self, simulator: Simulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator or Simulator()
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ews_url(self) -> str:
        return self.base_url + EWS_PATH

    @property
    def admin_url(self) -> str:
        return self.base_url + "/admin"

    @property
    def user(self) -> str:
        return self.simulator.service_account[0]

    @property
    def password(self) -> str:
        return self.simulator.service_account[1]

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(target=self._run, name="calsync-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        if self._runner is not None:
            loop.run_until_complete(self._runner.cleanup())
        loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(build_app(self.simulator), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
