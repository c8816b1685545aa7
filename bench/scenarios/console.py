"""Scenario: the console's operators page with 100,000 operators, time to first byte at p95.

A real `calsync console serve` process against the bench database, logged in like a browser;
each request opens a new connection (the worst case) and the time is taken from sending the
request to the arrival of the response's first bytes (the status line: Starlette sends nothing
before the page is rendered, so this is the whole server time plus the network).

Baselines measured in the same run: the console's /healthz (the web stack alone, no database)
and the page's two queries run in this process (calsync.store.console.operator_page: the
database alone). Target: p95 <= 200 ms for the unfiltered and the filtered pages.

    python -m bench.scenarios.console [--quick] [--operators N] [--requests N]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import statistics
import subprocess
import time
from typing import Any

from bench import common

TARGET_MS = 200.0
CASES: dict[str, str] = {
    "unfiltered (page 1, by email)": "/operators",
    "filtered: status failed": "/operators?status=failed",
    "filtered: status active, page 20": "/operators?status=active&page=20",
    "filtered: search 'op01234'": "/operators?q=op01234",
    "filtered: search + status retrying": "/operators?q=op0&status=retrying",
    "filtered: error code": "/operators?code=ErrorServerBusy",
    "sorted: last sync, newest first": "/operators?sort=last_sync&dir=desc",
}
BASELINE_STATIC = "/healthz"
PASSWORD = "bench-password-1"


def _load(n: int) -> None:
    """n operators; statuses and errors spread like a large fleet on a bad day."""
    common.reset_database()
    common.add_operators([f"op{i:06d}@example.com" for i in range(n)])
    with common.connect() as conn:
        conn.execute(
            """
            UPDATE sync_state SET
              status = CASE WHEN operator_id % 100 = 0 THEN 'failed' WHEN operator_id % 100 = 1 THEN 'retrying'
                            WHEN operator_id % 100 = 2 THEN 'not_synced' ELSE 'active' END,
              stage = 'incremental',
              last_success_at = now() - make_interval(secs => (operator_id * 7919) % 86400),
              last_error_code = CASE WHEN operator_id % 100 = 0 THEN 'ErrorNonExistentMailbox'
                                     WHEN operator_id % 100 = 1 THEN 'ErrorServerBusy' END
            """
        )
        conn.execute("VACUUM ANALYZE operators")
        conn.execute("VACUUM ANALYZE sync_state")


def _start(port: int) -> subprocess.Popen[bytes]:
    from calsync.console.auth import hash_password

    env = {
        **os.environ,
        **common.bench_env(),
        "CALSYNC_CONSOLE_ADMINS": f"bench:{hash_password(PASSWORD)}",
        "CALSYNC_CONSOLE_SECRET_KEY": secrets.token_hex(32),
    }
    proc = subprocess.Popen(
        [common.CALSYNC, "console", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, _, _ = _request(port, BASELINE_STATIC, "")
            if status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the console did not start")


def _request(port: int, path: str, cookie: str, body: bytes | None = None) -> tuple[int, float, bytes]:
    """(status, seconds to the first byte, whole response) over a fresh connection."""
    method = "POST" if body is not None else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    if body is not None:
        head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
    data = head.encode() + b"\r\n" + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        t0 = time.perf_counter()
        sock.sendall(data)
        first = sock.recv(65536)
        ttfb = time.perf_counter() - t0
        chunks = [first]
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    return int(raw.split(b" ", 2)[1]), ttfb, raw


def _cookie(raw: bytes) -> str:
    found = re.search(rb"set-cookie: (calsync_console=[^;]+)", raw, re.IGNORECASE)
    assert found, "no session cookie"
    return found.group(1).decode()


def _login(port: int) -> str:
    _, _, raw = _request(port, "/login", "")
    cookie = _cookie(raw)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', raw)
    assert token
    body = f"csrf_token={token.group(1).decode()}&username=bench&password={PASSWORD}&next=/".encode()
    status, _, raw = _request(port, "/login", cookie, body)
    assert status == 303, f"login failed ({status})"
    return _cookie(raw)


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 1),
        "max_ms": round(ms[-1], 1),
    }


def _measure(port: int, cookie: str, path: str, n: int) -> dict[str, float]:
    samples = []
    for i in range(n + 5):
        status, ttfb, raw = _request(port, path, cookie)
        assert status == 200, f"{path}: HTTP {status}"
        if i >= 5:  # warm-up: connection pool, template cache
            samples.append(ttfb)
    assert b'<table class="operators">' in raw or path == BASELINE_STATIC
    return _stats(samples)


def _query_baseline(path: str, n: int) -> dict[str, float]:
    """The page's queries alone, in this process (the same function the page calls)."""
    from urllib.parse import parse_qs, urlsplit

    from calsync.store import console as console_store

    params = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
    query = console_store.OperatorQuery(
        search=params.get("q", ""), status=params.get("status"), error_code=params.get("code"),
        sort=params.get("sort", "email"), descending=params.get("dir") == "desc",
        page=int(params.get("page", "1")), per_page=50,
    )  # fmt: skip
    samples = []
    with common.connect() as conn:
        for i in range(n + 5):
            t0 = time.perf_counter()
            console_store.operator_page(conn, query)
            if i >= 5:
                samples.append(time.perf_counter() - t0)
    return _stats(samples)


def run(quick: bool, operators: int | None = None, requests: int | None = None) -> dict[str, Any]:
    n = operators or (10_000 if quick else 100_000)
    count = requests or (40 if quick else 200)
    common.say(f"console: loading {n:,} operators")
    _load(n)
    port = _free_port()
    proc = _start(port)
    try:
        cookie = _login(port)
        static = _measure(port, cookie, BASELINE_STATIC, count)
        cases = {}
        for name, path in CASES.items():
            cases[name] = {"path": path, **_measure(port, cookie, path, count), "query": _query_baseline(path, count)}
            common.say(f"console: {name}: p95 {cases[name]['p95_ms']} ms")
    finally:
        proc.terminate()
        proc.wait(10)
    worst = max(c["p95_ms"] for c in cases.values())
    return {
        "operators": n,
        "requests_each": count,
        "static": static,
        "cases": cases,
        "worst_p95_ms": worst,
        "target_ms": TARGET_MS,
        "met": worst <= TARGET_MS,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table(r: dict[str, Any]) -> str:
    lines = [
        f"Operators page, {r['operators']:,} operators, {r['requests_each']} requests each, first byte (ms); "
        f"target p95 <= {r['target_ms']:.0f} ms",
        "",
        "| Page | p50 | p95 | max | same query in-process p95 | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in r["cases"].items():
        ok = "yes" if c["p95_ms"] <= r["target_ms"] else "**no**"
        lines.append(f"| {name} | {c['p50_ms']} | {c['p95_ms']} | {c['max_ms']} | {c['query']['p95_ms']} | {ok} |")
    s = r["static"]
    lines.append(f"| baseline: /healthz (no database) | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} | - | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 operators, 40 requests per page")
    parser.add_argument("--operators", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    common.use_bench_environment()
    common.prepare_database()
    result = run(args.quick, args.operators, args.requests)
    common.reset_database()
    print(table(result))


if __name__ == "__main__":
    main()
