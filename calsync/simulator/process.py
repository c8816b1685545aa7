"""SimulatorProcess: the simulator in a subprocess, for benchmarks and for Celery worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import requests

from calsync.simulator.client import SimulatorClient
from calsync.simulator.core import DEFAULT_ACCOUNT
from calsync.simulator.server import EWS_PATH


class SimulatorProcess:
    """Start ``python -m calsync.simulator`` on a free port and wait until /admin/stats answers."""

    def __init__(
        self,
        mailboxes: int = 5,
        appointments: int = 50,
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        latency_ms: int = 0,
        version: str | None = None,
        service_accounts: Sequence[tuple[str, str]] | None = None,
        validate: bool | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = 0
        self.accounts = list(service_accounts or [DEFAULT_ACCOUNT])
        args = [
            sys.executable,
            "-m",
            "calsync.simulator",
            "--host",
            host,
            "--port",
            "0",
            "--mailboxes",
            str(mailboxes),
            "--appointments",
            str(appointments),
            "--seed",
            str(seed),
            "--latency-ms",
            str(latency_ms),
        ]
        if version:
            args += ["--version", version]
        for user, password in self.accounts:
            args += ["--service-account", f"{user}:{password}"]
        if validate is not None:
            args.append("--validate" if validate else "--no-validate")
        self.args = [*args, *extra_args]
        self.startup_timeout = startup_timeout
        self.env = {**os.environ, **(env or {})}
        self.output: list[str] = []
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

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
        return self.accounts[0][0]

    @property
    def password(self) -> str:
        return self.accounts[0][1]

    def client(self) -> SimulatorClient:
        return SimulatorClient(self.base_url, self.user, self.password)

    def start(self) -> SimulatorProcess:
        self._proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, bufsize=1
        )
        port_found = threading.Event()

        def drain() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self.output.append(line.rstrip())
                if line.startswith("EWS URL: ") and not port_found.is_set():
                    self.port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
                    port_found.set()

        threading.Thread(target=drain, name="simulator-output", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if port_found.wait(0.05):
                try:
                    if requests.get(self.admin_url + "/stats", timeout=2).status_code == 200:
                        return self
                except requests.RequestException:
                    pass
        self.stop()
        raise RuntimeError("simulator process did not start:\n" + "\n".join(self.output[-30:]))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
