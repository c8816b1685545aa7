"""The push listener: answers Exchange's SendNotification without ever calling Exchange.

aiohttp, because the simulator already runs on it (no new dependency) and one event loop
serves thousands of short requests a second on one core; each request is one parse, a
share of one Postgres statement (concurrent notifications are recorded together:
calsync.listener.group) and, for a change, one Redis round trip. The process holds no state:
subscriptions, watermarks and pending syncs live in Postgres and Redis, so any number of
instances can stand behind a load balancer and a killed one loses nothing (Exchange
retries whatever it did not get an answer for).

Per notification, in this order:
1. the secret in the URL's last path segment and a well-formed SendNotification body
   (size-capped) are required, else 403/400/413 and nothing is recorded;
2. one statement checks the subscription (secret, id, state, operator enabled) and
   records its watermark and last-heard time (calsync.store.push.hear_many, shared with the
   notifications that arrived meanwhile; the answer waits for its commit). A keep-alive
   waits up to CALSYNC_LISTENER_KEEPALIVE_LINGER_MS for others to share it with;
3. a change (anything but a StatusEvent) is coalesced into at most one pending sync of
   the operator (calsync.listener.kick);
4. the answer is OK, or Unsubscribe for a superseded, ended or unknown subscription or a
   disabled operator. Only then does Exchange consider the notification delivered.

Graph's change notifications come to the same process (calsync.listener.graph): a POST to
`.../graph/SECRET` or `.../graph-lifecycle/SECRET` with a validationToken or a JSON body.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from calsync import metrics
from calsync.listener import graph
from calsync.listener.group import GroupCommit
from calsync.listener.http import MAX_BODY, read_body, reject
from calsync.listener.kick import Kicker
from calsync.push.callback import graph_kind, secret_hash, secret_of
from calsync.source.ews.notification import OK_ANSWER, UNSUBSCRIBE_ANSWER, BadNotification, parse
from calsync.store import push

log = logging.getLogger(__name__)

XML = "text/xml; charset=utf-8"
POOL_KEY: web.AppKey[AsyncConnectionPool[Any]] = web.AppKey("pool", AsyncConnectionPool)
KICK_KEY: web.AppKey[Kicker] = web.AppKey("kicker", Kicker)
GROUP_KEY: web.AppKey[GroupCommit] = web.AppKey("group", GroupCommit)
KEEPALIVE_KEY: web.AppKey[GroupCommit] = web.AppKey("keepalives", GroupCommit)


def _answer(payload: bytes) -> web.Response:
    return web.Response(body=payload, headers={"Content-Type": XML})


async def notification(request: web.Request) -> web.Response:
    kind = graph_kind(request.path)
    if kind is not None and graph.is_graph_request(request):
        return await graph.handle(request, kind, request.app[POOL_KEY], request.app[KICK_KEY])
    secret = secret_of(request.path)
    if secret is None:
        return reject(403, "no_secret", "forbidden: the URL carries no subscription secret")
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        note = parse(body)
    except BadNotification as exc:
        return reject(400, "invalid_body", f"not a SendNotification: {exc}")
    group = request.app[GROUP_KEY] if note.changes else request.app[KEEPALIVE_KEY]
    heard = await group.hear(push.Notice(secret_hash(secret), note.subscription_id, note.watermark, note.changes))
    if heard.verdict is push.Verdict.FORGED:
        return reject(403, "unknown_secret", "forbidden: no subscription has this URL")
    if heard.verdict is push.Verdict.UNSUBSCRIBE:
        metrics.PUSH_NOTIFICATIONS.labels("unsubscribed").inc()
        metrics.PUSH_UNSUBSCRIBES.labels(heard.reason.split(" ")[-1]).inc()
        log.info("subscription %s answered Unsubscribe: %s", note.subscription_id[:16], heard.reason)
        return _answer(UNSUBSCRIBE_ANSWER)
    assert heard.operator_id is not None
    if note.changes:
        metrics.PUSH_NOTIFICATIONS.labels("change").inc()
        if not await request.app[KICK_KEY].kick(heard.operator_id):
            metrics.PUSH_COALESCED.inc()
    else:
        metrics.PUSH_NOTIFICATIONS.labels("status").inc()
    return _answer(OK_ANSWER)


async def health(request: web.Request) -> web.Response:
    """Ready when Postgres and Redis answer (a load balancer's check)."""
    try:
        async with request.app[POOL_KEY].connection() as conn:
            await conn.execute("SELECT 1")
        await request.app[KICK_KEY].ping()
    except Exception as exc:
        return web.Response(status=503, text=f"not ready: {type(exc).__name__}\n")
    return web.Response(text="ok\n")


async def _relaxed_commit(conn: psycopg.AsyncConnection[Any]) -> None:
    """The session of keep-alives (StatusEvents) only: Postgres acknowledges a commit before its
    WAL reaches the disk. Alone, a keep-alive arrives 55 times a second at 100,000 mailboxes,
    and a durable commit each was about a quarter of its Postgres CPU (0.76 -> 0.57 ms). A
    Postgres crash can lose the last moments of keep-alive records, which only makes those
    subscriptions look a little older; a change notification, whose record is the durable
    trace of a pending sync, commits on the other pool as before."""
    await conn.execute("SET synchronous_commit = off")


def build_app(
    database_url: str,
    redis_url: str,
    broker_url: str,
    pool_size: int = 10,
    sentinel_master: str = "mymaster",
    keepalive_linger: float = 0.0,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    def new_pool(name: str, configure: Any = None) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            # No check per checkout (it would double the round trips of every notification);
            # a connection broken by a Postgres restart fails its statement, the pool replaces
            # it, and Exchange retries the notification that got no answer.
            configure=configure,
            open=False,
            name=name,
        )

    async def lifecycle(app: web.Application) -> Any:
        pool = new_pool("calsync-listener")
        keepalives = new_pool("calsync-listener-keepalives", _relaxed_commit)
        await pool.open()
        await keepalives.open()
        app[POOL_KEY] = pool
        app[GROUP_KEY] = GroupCommit(pool)
        app[KEEPALIVE_KEY] = GroupCommit(keepalives, linger=keepalive_linger)
        app[KICK_KEY] = Kicker(redis_url, broker_url, sentinel_master)
        yield
        app[KEEPALIVE_KEY].close()
        await app[KICK_KEY].close()
        await keepalives.close()
        await pool.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", health)
    app.router.add_post("/{tail:.*}", notification)
    return app


def serve(
    host: str,
    port: int,
    database_url: str,
    redis_url: str,
    broker_url: str,
    sentinel_master: str = "mymaster",
    keepalive_linger: float = 0.0,
) -> None:
    try:
        psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.ProgrammingError as exc:
        raise SystemExit(f"CALSYNC_DATABASE_URL is not a valid Postgres URL: {exc}") from exc
    web.run_app(
        build_app(
            database_url, redis_url, broker_url, sentinel_master=sentinel_master, keepalive_linger=keepalive_linger
        ),
        host=host,
        port=port,
        access_log=None,
        print=None,
    )
