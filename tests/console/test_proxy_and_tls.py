"""Reverse-proxy authentication and TLS cookies, against real `calsync console serve` processes (no browser)."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from calsync.store import operators as operator_store
from calsync.store.db import transaction
from tests.conftest import CALSYNC
from tests.failures.tls import make_ca_and_server

from .conftest import free_port


def serve(
    extra_env: dict[str, str], args: list[str], log: Path, url: str, verify: Any = True
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_CONSOLE_")}
    env.update({"CALSYNC_CONSOLE_SECRET_KEY": secrets.token_hex(32), **extra_env})
    with log.open("wb") as out:
        proc = subprocess.Popen([CALSYNC, "console", "serve", *args], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/healthz", timeout=1, verify=verify).ok:
                return proc
        except requests.exceptions.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("console did not start:\n" + log.read_text())
        time.sleep(0.1)


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_trusted_proxy_header_logs_in_only_from_the_proxy_and_actions_are_audited_as_that_user(
    clean: Any, tmp_path: Path, stop: list[subprocess.Popen[bytes]]
) -> None:
    with transaction() as conn:
        op = operator_store.add(conn, "proxied@example.com", "P", True).id
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"CALSYNC_CONSOLE_TRUSTED_HEADER": "X-Remote-User", "CALSYNC_CONSOLE_TRUSTED_PROXIES": "127.0.0.1"}
    stop.append(serve(env, ["--port", str(port)], tmp_path / "proxy.log", url))

    anonymous = requests.get(url + "/operators", timeout=10, allow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    # The header from a peer that is not the proxy (127.0.0.2: loopback, but not trusted) is ignored.
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Remote-User: mallory\r\nConnection: close\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 303") and b"location: /login" in answer.lower()
    session = requests.Session()
    session.headers["X-Remote-User"] = "carol"
    page = session.get(url + f"/operators/{op}", timeout=10)
    assert page.status_code == 200 and "Signed in as <strong>carol</strong>" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    refused = session.post(url + f"/operators/{op}/calendar-sync", data={"calendar_sync": "off"}, timeout=10)
    assert refused.status_code == 403, "the proxy's header does not replace the CSRF token"
    done = session.post(
        url + f"/operators/{op}/calendar-sync",
        data={"calendar_sync": "off", "csrf_token": token.group(1)},
        timeout=10,
        allow_redirects=False,
    )
    assert done.status_code == 303
    with transaction() as conn:
        row = conn.execute("SELECT actor, action, target FROM console_audit").fetchone()
    assert row is not None and (row["actor"], row["action"], row["target"]) == (
        "carol",
        "operators.disable",
        "proxied@example.com",
    )


def test_under_tls_the_session_cookie_is_secure(
    clean: Any, tmp_path: Path, stop: list[subprocess.Popen[bytes]]
) -> None:
    from calsync.console.auth import hash_password

    ca, cert, key = make_ca_and_server(tmp_path)
    port = free_port()
    url = f"https://localhost:{port}"
    env = {"CALSYNC_CONSOLE_ADMINS": f"admin:{hash_password('tls password')}"}
    proc = serve(
        {**env},
        ["--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
        tmp_path / "tls.log",
        url,
        verify=str(ca),
    )
    stop.append(proc)
    login = requests.get(url + "/login", timeout=10, verify=str(ca), headers={"Connection": "close"})
    cookie = login.headers["set-cookie"].lower()
    assert "calsync_console=" in cookie and "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "content-security-policy" in {h.lower() for h in login.headers}
