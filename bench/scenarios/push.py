"""Push notifications (issue 15): change-to-mirror latency, listener throughput, idle CPU against polling.

1. Listener: one `calsync listener serve` process (one core: one event loop) is fed valid
   SendNotifications over HTTP by two load generator processes (16 requests at a time),
   first keep-alives (StatusEvent) then changes (coalesced per operator). Measured: answers
   per second, answer time p50/p99 at the client, CPU seconds of the listener, Postgres and
   Redis per notification.
2. Latency: N operators subscribed through the real path (first sync, sweep, Subscribe on
   the simulator), polling set to a day, then VACUUM ANALYZE (autovacuum's part, off on this
   machine); edits at a fixed rate spread over random operators; a watcher reads, every 50 ms,
   the appointments edited and not yet seen (by key). Latency = edit answered by the
   simulator -> row readable in Postgres. The CPU of each part (workers, listener, simulator,
   Postgres, Redis, this process) over the window is reported beside it.
3. Idle CPU: fleets with nothing changing, on a clock where one StatusFrequency minute lasts
   one second (simulator and calsync alike). Push: StatusFrequency 30 (a keep-alive per
   mailbox every 30 "minutes") and push_safety_poll_minutes 60; polling alone: every 5
   "minutes". CPU seconds of every calsync process (workers, beat, listener) plus Postgres
   and Redis, not the simulator (it stands for Exchange). Two fleet sizes: 1,500 mailboxes
   make the event rates of 100,000 on Exchange's clock (the ratio there includes the fleet's
   fixed costs), and the difference from 500 gives the CPU per added mailbox (the marginal
   ratio). Events that arrive tens a second cost more each than the same events in a burst
   (every one wakes the listener and a Postgres backend on its own), so neither is taken
   from the listener's throughput figures.

`--graph-share F` (issue 17) reads a share F of the latency fleet's operators through Graph
(the simulator's Graph front-end, change notifications on the same listener) and reports
the latency of each mode beside the overall one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import threading
import time
from typing import Any

import aiohttp
import psycopg
import requests

from bench import common
from bench.fleet import LOGS, fleet, wait_for
from calsync import celery_procs
from calsync.push.callback import callback_url, new_secret, secret_hash
from calsync.simulator import SimulatorProcess, mailbox_email

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"


def _note(sub_id: str, n: int, change: bool) -> bytes:
    event = (
        f"<t:ModifiedEvent><t:Watermark>w{n}</t:Watermark><t:TimeStamp>2026-12-02T10:00:00Z</t:TimeStamp>"
        f'<t:ItemId Id="i{n}" ChangeKey="c"/><t:ParentFolderId Id="f" ChangeKey="c"/></t:ModifiedEvent>'
        if change
        else f"<t:StatusEvent><t:Watermark>w{n}</t:Watermark></t:StatusEvent>"
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11="{NS_SOAP}"><soap11:Body>'
        f'<m:SendNotification xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:Notification><t:SubscriptionId>{sub_id}</t:SubscriptionId><t:PreviousWatermark>w{n - 1}"
        f"</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>{event}</m:Notification>"
        "</m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></soap11:Body>"
        "</soap11:Envelope>"
    ).encode()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listener(port: int, tag: str) -> Any:
    proc = celery_procs.start_listener(common.bench_env(), port, log_file=LOGS / f"listener-{tag}.log")
    import requests

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, 30, "the listener")
    return proc


def listener_throughput(quick: bool) -> dict[str, Any]:
    subs, seconds, concurrency = (200, 3.0, 16) if quick else (1000, 10.0, 16)
    common.reset_database()
    common.flush_redis()
    common.add_operators([f"op{i:05d}@example.com" for i in range(subs)])
    port = _free_port()
    base = f"http://127.0.0.1:{port}/ews/push"
    secrets = [new_secret() for _ in range(subs)]
    with common.connect() as conn, conn.cursor() as cur:
        ids = [r["id"] for r in conn.execute("SELECT id FROM operators ORDER BY id").fetchall()]
        cur.executemany("INSERT INTO push_status (operator_id) VALUES (%s)", [(i,) for i in ids])
        cur.executemany(
            "INSERT INTO push_subscriptions (operator_id, subscription_id, secret_hash, base_url, email, "
            "status_frequency_minutes, state, subscribed_at, last_heard_at) "
            "VALUES (%s, %s, %s, %s, 'x@example.com', 30, 'active', now(), now())",
            [(op, f"SUB{op}", secret_hash(s), base) for op, s in zip(ids, secrets, strict=True)],
        )
    targets = [(callback_url(base, s), f"SUB{op}") for op, s in zip(ids, secrets, strict=True)]
    proc = _listener(port, "throughput")
    out: dict[str, Any] = {"subscriptions": subs, "concurrency": concurrency}
    try:
        for kind, change in (("keepalive", False), ("change", True)):
            common.say(f"listener: {kind} notifications for {seconds:.0f}s, {concurrency} at a time")
            groups = {
                "listener": [proc.pid],
                "postgres": common.postgres_backends,  # called again at the end: backends born in the window count
                "redis": common.redis_pids(),
            }
            # Two load generator processes (the client's own CPU must not be what limits the listener).
            with multiprocessing.get_context("spawn").Pool(GENERATORS) as pool:
                pool.map(_warm, range(GENERATORS))
                with common.cpu_window(groups) as cpu:
                    parts = pool.starmap(
                        _load_process,
                        [
                            (targets[k::GENERATORS], seconds, concurrency // GENERATORS, change)
                            for k in range(GENERATORS)
                        ],
                    )
            count = sum(p[0] for p in parts)
            lat = [v for p in parts for v in p[1]]
            errors = sum(p[2] for p in parts)
            n = max(count, 1)
            out[kind] = {
                "notifications": count,
                "errors": errors,
                "per_s": round(count / cpu["wall"], 1),
                "answer_p50_ms": _r(1000 * (common.percentile(lat, 0.5) or 0)),
                "answer_p99_ms": _r(1000 * (common.percentile(lat, 0.99) or 0)),
                "listener_cpu_s": _r(cpu["listener"]),
                "listener_cores": _r(cpu["listener"] / cpu["wall"]),
                "per_listener_cpu_s": round(count / max(cpu["listener"], 1e-9), 1),
                "cpu_ms_each": {
                    "listener": _r(1000 * cpu["listener"] / n, 3),
                    "postgres": _r(1000 * cpu["postgres"] / n, 3),
                    "redis": _r(1000 * cpu["redis"] / n, 3),
                },
            }
            common.say(f"  {out[kind]['per_s']}/s, p99 {out[kind]['answer_p99_ms']} ms, "
                       f"listener {out[kind]['listener_cores']} cores")  # fmt: skip
    finally:
        celery_procs.stop(proc)
    return out


GENERATORS = 2


def _warm(_: int) -> None:
    """Import aiohttp in the pool's processes before the measured window."""


def _load_process(
    targets: list[tuple[str, str]], seconds: float, concurrency: int, change: bool
) -> tuple[int, list[float], int]:
    return asyncio.run(_load(targets, seconds, concurrency, change))


async def _load(
    targets: list[tuple[str, str]], seconds: float, concurrency: int, change: bool
) -> tuple[int, list[float], int]:
    lat: list[float] = []
    errors = 0
    count = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(k: int) -> None:
            nonlocal errors, count
            n = k
            while time.monotonic() < deadline:
                url, sub = targets[n % len(targets)]
                body = _note(sub, n, change)
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "text/xml"}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - started)
                count += 1
                n += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return count, lat, errors


def latency_and_idle(quick: bool, graph_share: float = 0.0) -> dict[str, Any]:
    n = 300 if quick else int(os.environ.get("CALSYNC_BENCH_PUSH_OPERATORS", "10000"))
    rate, window = (20.0, 5.0) if quick else (100.0, 20.0)
    idle_window = 20.0 if quick else 60.0
    out: dict[str, Any] = {"operators": n, "change_rate_per_s": rate, "changes_window_s": window}
    port = _free_port()
    with SimulatorProcess(
        mailboxes=n, appointments=1, seed=9, env={"CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS": "60"}
    ) as sim:
        common.reset_database()
        common.set_settings(
            exchange_url=sim.ews_url,
            notification_url=f"http://127.0.0.1:{port}/ews/push",
            notification_frequency_minutes=30,
            poll_interval_minutes=1440,
            push_safety_poll_minutes=1440,
            past_window_days=3650,
            ews_max_concurrency=27,
        )
        common.add_operators([mailbox_email(i) for i in range(1, n + 1)])
        groups = _graph_operators(sim, n, graph_share) if graph_share > 0 else None
        by_mode: dict[str, Any] = {}
        client = sim.client()
        listener = _listener(port, "latency")
        env = {"CALSYNC_PUSH_SWEEP_SECONDS": "1"}
        try:
            with fleet(sim, workers=2, threads=8, tag="push", extra_env=env) as f, common.connect() as conn:
                t = wait_for(lambda: _count(conn, "SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL") >= n,
                             1800, "first syncs", 1.0)  # fmt: skip
                common.say(f"push: {n} first syncs in {t:.0f}s")
                t = wait_for(lambda: _count(conn, "SELECT count(*) AS n FROM push_subscriptions WHERE state = 'active'") >= n,
                             1800, "every operator subscribed", 1.0)  # fmt: skip
                out["subscribe_s"] = round(t, 1)
                common.say(f"push: {n} subscribed in {t:.0f}s")
                # What autovacuum does in a deployment after a bulk load: this machine's Postgres runs
                # with autovacuum off (conf.d/90-ci.conf), which would leave the planner with the
                # statistics of an empty mirror and sync_state with four dead rows per live one.
                conn.execute("VACUUM (ANALYZE)")
                # Where the two cores go while changes flow: the simulator (Exchange's share, elsewhere
                # in a deployment) and this process's edit generator and observer are not calsync's.
                cpu_groups = {
                    "workers": f.pids, "listener": [listener.pid], "simulator": [sim.pid] if sim.pid else [],
                    "postgres": common.postgres_backends, "redis": common.redis_pids(), "bench": [os.getpid()],
                }  # fmt: skip
                with common.cpu_window(cpu_groups, alone=("bench",)) as cpu:  # the fleet is bench's child
                    out.update(_changes(conn, client, n, rate, window, groups, by_mode))
                out["cpu_cores"] = {k: _r(v / cpu["wall"], 2) for k, v in cpu.items() if k != "wall"}
                common.say(f"push: cores in use while changes flow: {out['cpu_cores']}")
                if by_mode:
                    out["graph_share"], out["by_mode"] = graph_share, by_mode
                    common.say(f"push latency by mode: {by_mode}")
                common.say(f"push latency: p50 {out['p50_s']} s, p95 {out['p95_s']} s, p99 {out['p99_s']} s, "
                           f"max {out['max_s']} s ({out['seen']}/{out['changes']} seen)")  # fmt: skip
                assert f.alive()
        finally:
            celery_procs.stop(listener)
    # Idle: the same fleet size, scaled clock (a minute is a second), push vs polling alone.
    out["idle"] = idle(quick, idle_window)
    return out


# On the scaled clock (a minute lasts a second) 1,500 mailboxes make the event rates of 100,000
# on Exchange's clock: 50 keep-alives, 25 safety polls or 300 polls a second (100,000: 55.6,
# 27.8 and 333). The smaller fleet gives the slope: CPU per added mailbox, without the fleet's
# fixed costs (beat, idle workers).
IDLE_SIZES = (500, 1500)


def idle(quick: bool, window: float) -> dict[str, Any]:
    """Idle CPU at two fleet sizes: the ratio at 100,000 mailboxes' event rates (fixed costs
    included) and the marginal ratio (CPU per added mailbox, push over polling)."""
    small_n, large_n = (100, 300) if quick else IDLE_SIZES
    small, large = idle_cpu(small_n, window), idle_cpu(large_n, window)
    out: dict[str, Any] = {"sizes": [small_n, large_n], small_n: small, large_n: large}
    per_mailbox = {
        mode: {
            part: _r(1000 * (large[mode]["cpu_by"][part] - small[mode]["cpu_by"][part]) / (large_n - small_n), 3)
            for part in ("calsync", "postgres", "redis")
        }
        for mode in ("push", "polling")
    }
    # The steady figures: safety polls at their hourly rate, polling at a poll every 5 minutes
    # (idle_cpu says how each is counted).
    push_ms = (large["push_cpu_s_steady"] - small["push_cpu_s_steady"]) / (large_n - small_n)
    poll_ms = (large["polling_cpu_s_steady"] - small["polling_cpu_s_steady"]) / (large_n - small_n)
    out["ms_per_mailbox_window"] = {
        "push": _r(1000 * push_ms, 3),
        "polling": _r(1000 * poll_ms, 3),
        "by_part": per_mailbox,
    }
    out["marginal_ratio"] = _r(push_ms / poll_ms, 3) if poll_ms > 0 else None
    out["ratio_at_largest"] = large["ratio"]
    common.say(f"  idle: marginal ratio {out['marginal_ratio']}, at {large_n} mailboxes {out['ratio_at_largest']}")
    return out


def _count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row["n"]) if row else 0


GRAPH_ID_PREFIX = "AQMk"  # the simulator's Graph ids are its EWS ids behind this prefix


def _graph_operators(sim: Any, n: int, share: float) -> dict[str, set[str]]:
    """Every operator whose position falls in `share` of the fleet is read through Graph (and
    pushed by Graph change notifications); the others through EWS."""
    from calsync.simulator.graph import DEFAULT_CLIENT_ID, DEFAULT_TENANT

    common.set_settings(graph_tenant_id=DEFAULT_TENANT, graph_client_id=DEFAULT_CLIENT_ID,
                        graph_authority_url=sim.base_url, graph_base_url=sim.base_url + "/v1.0",
                        graph_max_concurrency=27)  # fmt: skip
    emails = [mailbox_email(i) for i in range(1, n + 1)]
    graph = {e for k, e in enumerate(emails) if int((k + 1) * share) > int(k * share)}
    with common.connect() as conn:
        conn.execute("UPDATE operators SET source = 'graph' WHERE email = ANY(%s)", (sorted(graph),))
    return {"graph": graph, "ews": set(emails) - graph}


def _changes(
    conn: Any, client: Any, n: int, rate: float, window: float,
    groups: dict[str, set[str]] | None = None, by_group: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(4)
    rows = conn.execute(
        "SELECT o.email, o.id, min(a.item_id) AS item_id FROM appointments a JOIN operators o ON o.id = a.operator_id "
        "WHERE a.kind = 'single' AND NOT a.details_withheld GROUP BY o.email, o.id"
    ).fetchall()
    items = {r["email"]: r["item_id"].removeprefix(GRAPH_ID_PREFIX) for r in rows}  # the simulator's own id
    keys = {r["email"]: (r["id"], r["item_id"]) for r in rows}  # the mirror's key of the edited appointment
    emails = sorted(items)
    total = int(rate * window)
    # Each appointment is edited again only after every other one was (no overwritten edit
    # while a fleet is larger than rate x window); an edit counts as seen when its subject or
    # a later one of the same appointment is in the mirror.
    rng.shuffle(emails)
    order = [emails[k % len(emails)] for k in range(total)]
    made: dict[int, float] = {}
    seen: dict[int, float] = {}
    edit_errors: list[int] = []
    done = threading.Event()
    common.say(f"push latency: {total} edits at {rate:.0f}/s over {len(emails)} operators")

    def edit(offset: int, step: int) -> None:
        start = time.time()
        for j in range(offset, total, step):
            time.sleep(max(0.0, start + j / rate - time.time()))
            email = order[j]
            for attempt in range(5):
                # An overloaded simulator sometimes resets a connection: the same edit again
                # (it is idempotent); the edit counts from the answer that got through.
                try:
                    client.update_item(email, items[email], {"subject": f"bench-push-{j:05d}"})
                    break
                except requests.RequestException:
                    edit_errors.append(j)
                    time.sleep(0.05 * (attempt + 1))
            else:
                continue
            made[j] = time.time()

    threads = [threading.Thread(target=edit, args=(k, 4), daemon=True) for k in range(4)]
    for th in threads:
        th.start()
    waiter = threading.Thread(target=lambda: ([th.join() for th in threads], done.set()), daemon=True)
    waiter.start()
    by_item: dict[str, list[int]] = {}
    for j, email in enumerate(order):
        by_item.setdefault(email, []).append(j)
    # The observer reads only the appointments with an edit made and not yet seen, by their
    # key (an index lookup each): a scan of the whole mirror 20 times a second cost Postgres
    # a quarter of a core at 10,000 operators, taken from the system it measures.
    by_key = {keys[e]: e for e in by_item}
    deadline = time.monotonic() + window + 60
    while time.monotonic() < deadline and (not done.is_set() or len(seen) < len(made)):
        waiting = sorted({keys[order[j]] for j in list(made) if j not in seen})
        rows = (
            conn.execute(
                "SELECT a.operator_id, a.item_id, a.subject FROM unnest(%s::bigint[], %s::text[]) AS w(op, item) "
                "JOIN appointments a ON a.operator_id = w.op AND a.item_id = w.item WHERE a.subject LIKE 'bench-push-%%'",
                ([k[0] for k in waiting], [k[1] for k in waiting]),
            ).fetchall()
            if waiting
            else []
        )
        now = time.time()
        for r in rows:
            latest = int(r["subject"].rsplit("-", 1)[1])
            for j in by_item.get(by_key[(r["operator_id"], r["item_id"])], []):
                if j <= latest and j in made:
                    seen.setdefault(j, now)
        time.sleep(0.05)
    for name, members in (groups or {}).items():
        part = [seen[j] - made[j] for j in made if j in seen and order[j] in members]
        if by_group is not None:
            by_group[name] = {"changes": sum(1 for j in made if order[j] in members), "seen": len(part),
                              **{f"p{q}_s": _r(common.percentile(part, q / 100)) for q in (50, 95, 99)}}  # fmt: skip

    lat = [seen[j] - made[j] for j in made if j in seen]
    return {
        "changes": len(made),
        "edit_errors": len(edit_errors),
        "seen": len(lat),
        "p50_s": _r(common.percentile(lat, 0.5)),
        "p95_s": _r(common.percentile(lat, 0.95)),
        "p99_s": _r(common.percentile(lat, 0.99)),
        "max_s": _r(max(lat) if lat else None),
    }


def idle_cpu(n: int, window: float) -> dict[str, Any]:
    """Push (keep-alives + safety polls) against polling alone, CPU seconds over the same window."""
    out: dict[str, Any] = {"operators": n, "window_s": window, "minute_s": 1.0}
    port = _free_port()
    results = {}
    for mode in ("push", "polling"):
        with SimulatorProcess(
            mailboxes=n, appointments=1, seed=9, env={"CALSYNC_SIMULATOR_PUSH_MINUTE_SECONDS": "1"}
        ) as sim:
            common.reset_database()
            common.set_settings(
                exchange_url=sim.ews_url,
                notification_url=f"http://127.0.0.1:{port}/ews/push" if mode == "push" else None,
                notification_frequency_minutes=30,
                # a "minute" is a second: push polls every 60 s, polling alone every 5 s
                poll_interval_minutes=5 / 60,
                push_safety_poll_minutes=1.0,
                past_window_days=3650,
                ews_max_concurrency=27,
            )
            common.add_operators([mailbox_email(i) for i in range(1, n + 1)])
            listener = _listener(port, f"idle-{mode}") if mode == "push" else None
            env = {"CALSYNC_PUSH_SWEEP_SECONDS": "1", "CALSYNC_PUSH_MINUTE_SECONDS": "1"}
            try:
                with fleet(sim, workers=2, threads=8, tag=f"idle{mode}", extra_env=env) as f, common.connect() as conn:
                    wait_for(lambda: _count(conn, "SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL") >= n,
                             600, "first syncs", 1.0)  # fmt: skip
                    if mode == "push":
                        wait_for(lambda: _count(conn, "SELECT count(*) AS n FROM push_subscriptions WHERE state = 'active'") >= n,
                                 600, "subscribed", 1.0)  # fmt: skip
                    time.sleep(12.0 if mode == "push" else 6.0)  # every poll stretched (push) or cycling (polling)
                    polls0 = _count(conn, "SELECT sum(polls_total) AS n FROM sync_state")
                    heard0 = _count(conn, "SELECT coalesce(sum(notifications), 0) AS n FROM push_subscriptions")
                    groups = {
                        "calsync": f.pids + ([listener.pid] if listener is not None else []),
                        "postgres": common.postgres_backends,  # called again at the end: backends born in the window count
                        "redis": common.redis_pids(),
                    }
                    with common.cpu_window(groups) as cpu:
                        time.sleep(window)
                    polls = _count(conn, "SELECT sum(polls_total) AS n FROM sync_state") - polls0
                    heard = _count(conn, "SELECT coalesce(sum(notifications), 0) AS n FROM push_subscriptions") - heard0
            finally:
                if listener is not None:
                    celery_procs.stop(listener)
        total = cpu["calsync"] + cpu["postgres"] + cpu["redis"]
        results[mode] = {
            "cpu_s": _r(total, 2),
            "cpu_by": {k: _r(cpu[k], 2) for k in ("calsync", "postgres", "redis")},
            "polls": polls,
            "notifications": heard,
            "cores": _r(total / cpu["wall"], 3),
        }
        common.say(f"  idle {mode}: {results[mode]}")
    out.update(results)
    push, poll = results["push"], results["polling"]
    if poll["cpu_s"] and poll["polls"]:
        # Safety polls are one per mailbox per 60 "minutes": a window shorter than that sees
        # them in bursts (all were stretched at about the same moment). Count the steady
        # rate's share at the CPU a poll costs in the polling run, in place of what the
        # window happened to see.
        per_poll = poll["cpu_s"] / poll["polls"]
        expected = n * window / 60.0
        push_cpu = push["cpu_s"] + max(0.0, expected - push["polls"]) * per_poll
        # Polling alone is a poll per mailbox every 5 "minutes". A fleet that cannot keep up
        # (1,500 mailboxes fill this 2-core machine) makes fewer polls than that, and its CPU
        # understates what polling every 5 minutes costs: count the polls it owes at the CPU
        # each one cost.
        polls_owed = n * window / 5.0
        poll_cpu = poll["cpu_s"] * polls_owed / poll["polls"]
        out["cpu_ms_per_poll"] = _r(1000 * per_poll, 3)
        out["polls_owed"] = int(polls_owed)
        out["push_cpu_s_steady"] = _r(push_cpu, 2)
        out["polling_cpu_s_steady"] = _r(poll_cpu, 2)
        out["ratio"] = _r(push_cpu / poll_cpu, 3)
        # Scaled to 100,000 mailboxes on Exchange's clock (a minute is 60 s).
        out["cores_100k"] = {
            "push": _r(push_cpu / window * 100_000 / n / 60, 3),
            "polling": _r(poll_cpu / window * 100_000 / n / 60, 3),
        }
    return out


def run(quick: bool, graph_share: float = 0.0) -> dict[str, Any]:
    out: dict[str, Any] = {"listener": listener_throughput(quick)}
    out.update(latency_and_idle(quick, graph_share))
    return out


def _r(v: float | None, digits: int = 2) -> float | None:
    return round(v, digits) if v is not None else None


def main() -> None:
    """`python -m bench.scenarios.push [--quick]`: this scenario alone, into bench/results/[quick/]push.json."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="the push benchmark alone")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--graph-share", type=float, default=0.0, help="share of the latency fleet read through Graph")
    args = parser.parse_args()
    common.prepare_database()
    common.flush_redis()
    started = time.monotonic()
    result = {"quick": args.quick, "machine": common.machine(), "push": run(args.quick, args.graph_share)}
    result["total_s"] = round(time.monotonic() - started, 1)
    out = common.RESULTS / ("quick" if args.quick else "") / "push.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["push"], indent=2, default=str))


if __name__ == "__main__":
    common.use_bench_environment()
    main()
