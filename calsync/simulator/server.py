"""The simulator's HTTP server: the admin API plus every protocol front-end, over one Simulator.

asyncio keeps injected latency from blocking other requests: a slow answer is an
``asyncio.sleep`` while the loop serves everybody else. The server knows no protocol: each
front-end in :data:`FRONTENDS` hands it routes (see STATUS.md, "Adding a front-end").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

from aiohttp import web

from calsync.simulator import admin
from calsync.simulator.core import Simulator
from calsync.simulator.ews import endpoint as ews
from calsync.simulator.ews.endpoint import EWS_PATH
from calsync.simulator.frontend import RouteProvider
from calsync.simulator.graph import endpoint as graph

#: The protocol front-ends every server mounts, by name; all of them serve the same mailboxes.
FRONTENDS: dict[str, RouteProvider] = {
    "ews": ews.routes,
    "graph": graph.routes,
}

__all__ = ["EWS_PATH", "FRONTENDS", "SimulatorServer", "build_app"]


def build_app(sim: Simulator, frontends: Mapping[str, RouteProvider] | None = None) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    for provide in (FRONTENDS if frontends is None else frontends).values():
        app.router.add_routes(provide(sim))
    app.router.add_routes(admin.routes(sim))
    return app


class SimulatorServer:
    """Runs the app on a free port in a background thread; for in-process tests.

    >>> with SimulatorServer(Simulator()) as server:
    ...     server.ews_url
    """

    def __init__(
        self,
        simulator: Simulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        frontends: Mapping[str, RouteProvider] | None = None,
    ) -> None:
        self.simulator = simulator or Simulator()
        self.frontends = frontends
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
        self._runner = web.AppRunner(build_app(self.simulator, self.frontends), access_log=None, handle_signals=False)
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
