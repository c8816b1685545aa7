"""Graph change notifications at the listener (issue 17): answers per second and answer time.

One `calsync listener serve` process, fed changeNotificationCollections over HTTP by two load
generator processes (16 connections at once in all), each POST one notification of one of
N Graph subscriptions (rows made as calsync makes them: URL secret and clientState stored as
sha256). Each is checked (secret, clientState, subscription id), recorded, and coalesced into
the operator's pending sync (one Redis SET NX). Measured: answers per second, answer time
p50/p99 at the client, CPU of the listener per notification. The issue's target: answers under
50 ms at p99 (Graph counts an answer over 2,900 ms as slow and drops deliveries to an endpoint
with 15% slow answers).

`python -m bench.scenarios.graph_push [--quick]`, into bench/results/[quick/]graph_push.json.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import time
import uuid
from typing import Any

import aiohttp

from bench import common
from bench.scenarios.push import GENERATORS, _free_port, _listener, _r
from calsync import celery_procs
from calsync.push.callback import graph_urls, new_secret, secret_hash

TENANT = "c0ffee00-0000-4000-8000-000000000016"


def _body(sub_id: str, client_state: str, n: int) -> bytes:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    event = f"AAMkAD{n:08d}"
    return json.dumps({"value": [{
        "subscriptionId": sub_id, "subscriptionExpirationDateTime": expires, "changeType": "updated",
        "resource": f"Users/{TENANT}/Events/{event}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": f"Users/{TENANT}/Events/{event}",
                         "@odata.etag": 'W/"DwAAABYAAAA"', "id": event},
        "clientState": client_state, "tenantId": TENANT}]}).encode()  # fmt: skip


def _load_process(
    targets: list[tuple[str, str, str]], seconds: float, concurrency: int
) -> tuple[int, list[float], int]:
    return asyncio.run(_load(targets, seconds, concurrency))


async def _load(targets: list[tuple[str, str, str]], seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    lat: list[float] = []
    errors = count = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker(k: int) -> None:
            nonlocal errors, count
            n = k
            while time.monotonic() < deadline:
                url, sub, state = targets[n % len(targets)]
                started = time.perf_counter()
                async with session.post(
                    url, data=_body(sub, state, n), headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                    errors += r.status != 202
                lat.append(time.perf_counter() - started)
                count += 1
                n += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return count, lat, errors


def run(quick: bool) -> dict[str, Any]:
    subs, seconds, concurrency = (200, 3.0, 16) if quick else (1000, 10.0, 16)
    common.reset_database()
    common.flush_redis()
    common.add_operators([f"op{i:05d}@example.com" for i in range(subs)])
    port = _free_port()
    base = f"http://127.0.0.1:{port}/crm/push"
    made = [(new_secret(), new_secret(), str(uuid.uuid4())) for _ in range(subs)]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with common.connect() as conn, conn.cursor() as cur:
        ids = [r["id"] for r in conn.execute("SELECT id FROM operators ORDER BY id").fetchall()]
        cur.executemany("INSERT INTO push_status (operator_id) VALUES (%s)", [(i,) for i in ids])
        cur.executemany(
            "INSERT INTO push_subscriptions (operator_id, mode, subscription_id, secret_hash, client_state_hash, "
            "base_url, email, state, subscribed_at, expires_at, renew_at) "
            "VALUES (%s, 'graph', %s, %s, %s, %s, 'x@example.com', 'active', now(), %s, %s)",
            [(op, sid, secret_hash(s), secret_hash(cs), base, expires, expires)
             for op, (s, cs, sid) in zip(ids, made, strict=True)],
        )  # fmt: skip
    targets = [(graph_urls(base, s)[0], sid, cs) for s, cs, sid in made]
    proc = _listener(port, "graph")
    out: dict[str, Any] = {"subscriptions": subs, "concurrency": concurrency}
    try:
        groups = {"listener": [proc.pid], "postgres": common.postgres_backends(), "redis": common.redis_pids()}
        with multiprocessing.get_context("spawn").Pool(GENERATORS) as pool, common.cpu_window(groups) as cpu:
            parts = pool.starmap(
                _load_process,
                [(targets[k::GENERATORS], seconds, concurrency // GENERATORS) for k in range(GENERATORS)],
            )
        count = sum(p[0] for p in parts)
        lat = [v for p in parts for v in p[1]]
        n = max(count, 1)
        out.update({
            "notifications": count, "errors": sum(p[2] for p in parts), "per_s": round(count / cpu["wall"], 1),
            "answer_p50_ms": _r(1000 * (common.percentile(lat, 0.5) or 0)),
            "answer_p99_ms": _r(1000 * (common.percentile(lat, 0.99) or 0)),
            "listener_cores": _r(cpu["listener"] / cpu["wall"]),
            "per_listener_cpu_s": round(count / max(cpu["listener"], 1e-9), 1),
            "cpu_ms_each": {k: _r(1000 * cpu[k] / n, 3) for k in ("listener", "postgres", "redis")},
        })  # fmt: skip
        common.say(f"graph listener: {out['per_s']}/s, p50 {out['answer_p50_ms']} ms, p99 {out['answer_p99_ms']} ms")
    finally:
        celery_procs.stop(proc)
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Graph change notifications at the listener")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    common.prepare_database()
    result = {"quick": args.quick, "machine": common.machine(), "graph_push": run(args.quick)}
    path = common.RESULTS / ("quick" if args.quick else "") / "graph_push.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["graph_push"], indent=2, default=str))


if __name__ == "__main__":
    common.use_bench_environment()
    main()
