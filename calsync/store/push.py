"""Push subscriptions and per-operator push health (tables push_subscriptions, push_status).

The only writer of those two tables. Nothing here writes sync_state: where push must move
an operator's poll (a notification makes it due, a healthy subscription stretches its
polls) the caller uses calsync.store.lifecycle (its "Push" section), which owns sync_state.

A subscription is found by the sha256 of the secret in its callback URL, not by the id
Exchange gave it: the row exists (state 'subscribing') before Subscribe answers, so a
notification that overtakes the answer is still recognised, and a body that names a
subscription without knowing its secret matches nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql


class Verdict(enum.StrEnum):
    OK = "ok"  # a live subscription of an enabled operator: answer OK
    UNSUBSCRIBE = "unsubscribe"  # ours, but superseded, ended, or its operator disabled
    FORGED = "forged"  # no subscription has this secret: refuse, answer nothing useful


@dataclass(frozen=True, slots=True)
class Heard:
    verdict: Verdict
    operator_id: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """What the listener read from one SendNotification (the secret only as its hash)."""

    secret_hash: bytes
    subscription_id: str
    watermark: str | None
    events: int


# One statement for any number of notifications (the listener's group commit): each
# subscription is checked (secret, id, state, operator enabled) and its watermark and
# last-heard time recorded; a notification with events also stamps
# push_status.last_event_at (a sync claimed before that time owes another). The caller never
# puts one secret twice in a statement (an UPDATE changes a row once). push_status rows are
# locked in operator order, as the sync that covers them locks them (lifecycle.
# push_after_finish), so a statement never deadlocks with a worker. Subscription rows are
# updated in the order of their secrets (hear_many sorts them) without an explicit lock
# pass: the sweep updates subscriptions in its own order anyway, and at worst two statements
# that met the same subscriptions in another order deadlock, Postgres fails one of them, and
# its notifications get no answer and are sent again by Exchange.
_HEAR = """
WITH n AS (
    SELECT * FROM unnest(%(h)s::bytea[], %(sid)s::text[], %(wm)s::text[], %(events)s::int[])
                  WITH ORDINALITY AS n (h, sid, wm, events, i)
), sub AS (
    UPDATE push_subscriptions p
       SET last_heard_at = now(), watermark = COALESCE(n.wm, p.watermark),
           notifications = p.notifications + 1, events = p.events + n.events
      FROM n, operators o
     WHERE p.secret_hash = n.h AND o.id = p.operator_id AND o.calendar_sync
       AND p.state IN ('subscribing', 'active') AND p.mode <> 'graph'  -- Graph's are heard with their clientState
       AND (p.subscription_id IS NULL OR p.subscription_id = n.sid)
    RETURNING n.i, p.operator_id, n.events
), owed AS (
    SELECT ps.operator_id, x.events
      FROM push_status ps
      JOIN (SELECT operator_id, max(events) AS events FROM sub GROUP BY operator_id) x
           ON x.operator_id = ps.operator_id
     WHERE x.events > 0 OR ps.dead_since IS NOT NULL
     ORDER BY ps.operator_id
       FOR UPDATE OF ps
), st AS (
    UPDATE push_status ps
       SET last_event_at = CASE WHEN owed.events > 0 THEN now() ELSE ps.last_event_at END,
           first_pending_at = CASE WHEN owed.events > 0 THEN COALESCE(ps.first_pending_at, now())
                                   ELSE ps.first_pending_at END,
           dead_since = NULL, dead_notified_at = NULL
      FROM owed
     WHERE ps.operator_id = owed.operator_id
    RETURNING ps.operator_id
)
SELECT i, operator_id FROM sub
"""

_WHY = """
SELECT p.id, p.state, p.subscription_id, o.calendar_sync
  FROM push_subscriptions p JOIN operators o ON o.id = p.operator_id
 WHERE p.secret_hash = %(h)s AND p.mode <> 'graph'
"""


def _judge(row: dict[str, Any] | None, subscription_id: str) -> tuple[Heard, bool]:
    """Why the notification did not match a live subscription; True: the row is to be ended."""
    if row is None:
        return Heard(Verdict.FORGED, reason="no subscription has this secret"), False
    if row["state"] in ("subscribing", "active") and not row["calendar_sync"]:
        return Heard(Verdict.UNSUBSCRIBE, reason="operator disabled"), True
    if row["subscription_id"] is not None and row["subscription_id"] != subscription_id:
        return Heard(Verdict.UNSUBSCRIBE, reason="unknown subscription id"), False
    return Heard(Verdict.UNSUBSCRIBE, reason=f"subscription {row['state']}"), False


_END_ONE = """
UPDATE push_subscriptions SET state = 'ended', ended_at = now(), end_reason = %(reason)s
 WHERE id = %(id)s AND state IN ('subscribing', 'active')
"""


def _params(notices: Sequence[Notice]) -> dict[str, Any]:
    if len({n.secret_hash for n in notices}) != len(notices):
        raise ValueError("one secret twice in one statement: the second would not be recorded")
    return {
        "h": [n.secret_hash for n in notices],
        "sid": [n.subscription_id for n in notices],
        "wm": [n.watermark for n in notices],
        "events": [n.events for n in notices],
    }


async def hear_many(conn: psycopg.AsyncConnection[Any], notices: Sequence[Notice]) -> list[Heard]:
    """Record notifications of distinct subscriptions in one statement (autocommit connection
    of the listener); one Heard per notice, in order."""
    order = sorted(range(len(notices)), key=lambda k: notices[k].secret_hash)
    cur = await conn.execute(_HEAR, _params([notices[k] for k in order]))
    matched = {order[int(r["i"]) - 1]: int(r["operator_id"]) for r in await cur.fetchall()}
    out: list[Heard] = []
    for i, n in enumerate(notices):
        if i in matched:
            out.append(Heard(Verdict.OK, matched[i]))
            continue
        # Not a live subscription (rare: forged, superseded, disabled): say why, one by one.
        why = await (await conn.execute(_WHY, {"h": n.secret_hash})).fetchone()
        heard, end = _judge(why, n.subscription_id)
        if end and why is not None:
            await conn.execute(_END_ONE, {"id": why["id"], "reason": heard.reason})
        out.append(heard)
    return out


async def hear(
    conn: psycopg.AsyncConnection[Any], secret_hash: bytes, subscription_id: str, watermark: str | None, events: int
) -> Heard:
    """Record one notification (autocommit connection of the listener)."""
    return (await hear_many(conn, [Notice(secret_hash, subscription_id, watermark, events)]))[0]


def hear_sync(
    conn: psycopg.Connection[Any], secret_hash: bytes, subscription_id: str, watermark: str | None, events: int
) -> Heard:
    """`hear` on a blocking connection (tests, tools)."""
    row = conn.execute(_HEAR, _params([Notice(secret_hash, subscription_id, watermark, events)])).fetchone()
    if row is not None:
        return Heard(Verdict.OK, int(row["operator_id"]))
    why = conn.execute(_WHY, {"h": secret_hash}).fetchone()
    heard, end = _judge(why, subscription_id)
    if end and why is not None:
        conn.execute(_END_ONE, {"id": why["id"], "reason": heard.reason})
    return heard


# --- making subscriptions (workers) -------------------------------------------------------

# A Graph subscription that ends while Graph still holds it is deleted there (Graph has no
# "Unsubscribe" answer): the sweep hands it to calsync.graph_push_delete from this time on.
_CLEANUP = "CASE WHEN mode = 'graph' AND subscription_id IS NOT NULL THEN now() END"


@dataclass(frozen=True, slots=True)
class Target:
    """What a subscription for one operator is made of, read before calling Exchange."""

    operator_id: int
    email: str
    watermark: str | None  # of the current subscription, to resume from
    watermark_at: dt.datetime | None
    was_dead: bool
    had_subscription: bool  # an earlier subscription existed (a resubscription, not the first)


def target(conn: psycopg.Connection[Any], operator_id: int, default_source: str = "ews") -> Target | None:
    """The enabled EWS operator to subscribe, with the watermark of its newest subscription."""
    row = conn.execute(
        """
        SELECT o.id AS operator_id, o.email, p.watermark, p.last_heard_at AS watermark_at, p.id IS NOT NULL AS had,
               ps.dead_since IS NOT NULL AS was_dead, lower(p.email) = lower(o.email) AS same_mailbox
          FROM operators o
          LEFT JOIN push_status ps ON ps.operator_id = o.id
          LEFT JOIN LATERAL (SELECT * FROM push_subscriptions q WHERE q.operator_id = o.id
                                AND q.subscription_id IS NOT NULL ORDER BY q.id DESC LIMIT 1) p ON true
         WHERE o.id = %s AND o.calendar_sync AND COALESCE(o.source, %s) = 'ews'
        """,
        (operator_id, default_source),
    ).fetchone()
    if row is None:
        return None
    same = bool(row["same_mailbox"])
    return Target(
        operator_id=row["operator_id"],
        email=row["email"],
        watermark=row["watermark"] if same else None,
        watermark_at=row["watermark_at"] if same else None,
        was_dead=bool(row["was_dead"]),
        had_subscription=bool(row["had"]),
    )


def begin(
    conn: psycopg.Connection[Any], operator_id: int, email: str, base_url: str, frequency: int, secret_hash: bytes
) -> int | None:
    """Insert the row of a subscription about to be made; None if one is already being made."""
    return _begin(
        conn,
        operator_id=operator_id,
        secret_hash=secret_hash,
        base_url=base_url,
        email=email,
        status_frequency_minutes=frequency,
    )


def _begin(conn: psycopg.Connection[Any], **row: Any) -> int | None:
    """The row of an EWS or Graph subscription about to be made, at most one per operator."""
    conn.execute("INSERT INTO push_status (operator_id) VALUES (%s) ON CONFLICT DO NOTHING", (row["operator_id"],))
    # A row left 'subscribing' by a worker that died mid-call is given up after a while.
    conn.execute(
        """
        UPDATE push_subscriptions SET state = 'failed', ended_at = now(), end_reason = 'abandoned'
         WHERE operator_id = %s AND state = 'subscribing' AND created_at < now() - interval '5 minutes'
        """,
        (row["operator_id"],),
    )
    inserted = conn.execute(
        sql.SQL(
            "INSERT INTO push_subscriptions ({}) VALUES ({}) "
            "ON CONFLICT (operator_id) WHERE state = 'subscribing' DO NOTHING RETURNING id"
        ).format(sql.SQL(", ").join(map(sql.Identifier, row)), sql.SQL(", ").join(sql.Placeholder() * len(row))),
        list(row.values()),
    ).fetchone()
    return int(inserted["id"]) if inserted else None


def _replace_active(conn: psycopg.Connection[Any], row_id: int) -> int | None:
    """The subscription being made (`row_id`) is about to become its operator's active one: the
    one active now is superseded (and, for Graph, deleted at Graph later). Returns the operator,
    or None when the row was given up meanwhile (then nothing changes)."""
    row = conn.execute(
        "SELECT operator_id FROM push_subscriptions WHERE id = %s AND state = 'subscribing' FOR UPDATE", (row_id,)
    ).fetchone()
    if row is None:
        return None
    op = int(row["operator_id"])
    conn.execute(
        f"""
        UPDATE push_subscriptions SET state = 'superseded', ended_at = now(), end_reason = 'replaced',
               cleanup_at = {_CLEANUP}
         WHERE operator_id = %s AND state = 'active'
        """,
        (op,),
    )
    return op


def activate(conn: psycopg.Connection[Any], row_id: int, subscription_id: str, watermark: str | None) -> bool:
    """Exchange answered: the new subscription replaces the operator's active one.

    Returns False when the row was given up meanwhile (nothing changed).
    """
    op = _replace_active(conn, row_id)
    if op is None:
        return False
    conn.execute(
        """
        UPDATE push_subscriptions
           SET state = 'active', subscription_id = %s, watermark = COALESCE(watermark, %s), subscribed_at = now(),
               last_heard_at = GREATEST(last_heard_at, now())
         WHERE id = %s
        """,
        (subscription_id, watermark, row_id),
    )
    conn.execute(
        "UPDATE push_status SET subscribe_attempts = 0, next_subscribe_at = NULL, last_error = NULL "
        "WHERE operator_id = %s",
        (op,),
    )
    return True


def give_up(conn: psycopg.Connection[Any], row_id: int, error: str, retry_in_seconds: float) -> None:
    """Subscribe failed: the row is dropped from the live ones; the next attempt waits."""
    row = conn.execute(
        """
        UPDATE push_subscriptions SET state = 'failed', ended_at = now(), end_reason = %s
         WHERE id = %s AND state = 'subscribing' RETURNING operator_id
        """,
        (error[:500], row_id),
    ).fetchone()
    if row is not None:
        conn.execute(
            """
            UPDATE push_status SET subscribe_attempts = subscribe_attempts + 1, last_error = %s,
                   next_subscribe_at = now() + make_interval(secs => %s)
             WHERE operator_id = %s
            """,
            (error[:500], retry_in_seconds, row["operator_id"]),
        )


# --- the sweep (beat) ---------------------------------------------------------------------


def mark_owed(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> None:
    """As if a change had been notified now: the next claim of these operators is owed."""
    if operator_ids:
        conn.execute(
            "INSERT INTO push_status (operator_id, last_event_at) SELECT unnest(%s::bigint[]), now() "
            "ON CONFLICT (operator_id) DO UPDATE SET last_event_at = now()",
            (list(operator_ids),),
        )


def end_all(conn: psycopg.Connection[Any], reason: str) -> list[int]:
    """Push switched off (no notification_url): every live subscription is answered Unsubscribe.

    Returns the operators whose subscription ended (their stretched polls are due again)."""
    rows = conn.execute(
        f"""
        UPDATE push_subscriptions SET state = 'ended', ended_at = now(), end_reason = %s, cleanup_at = {_CLEANUP}
         WHERE state IN ('subscribing', 'active')
        RETURNING operator_id
        """,
        (reason,),
    ).fetchall()
    conn.execute("UPDATE push_status SET dead_since = NULL, dead_notified_at = NULL WHERE dead_since IS NOT NULL")
    return sorted({int(r["operator_id"]) for r in rows})


def end_disabled(conn: psycopg.Connection[Any]) -> int:
    """Subscriptions of disabled operators end now; re-enabling subscribes afresh."""
    cur = conn.execute(
        f"""
        UPDATE push_subscriptions p SET state = 'ended', ended_at = now(), end_reason = 'operator disabled',
               cleanup_at = {_CLEANUP}
          FROM operators o
         WHERE o.id = p.operator_id AND NOT o.calendar_sync AND p.state IN ('subscribing', 'active')
        """
    )
    conn.execute(
        """
        UPDATE push_status ps SET dead_since = NULL, dead_notified_at = NULL FROM operators o
         WHERE o.id = ps.operator_id AND NOT o.calendar_sync AND ps.dead_since IS NOT NULL
        """
    )
    return cur.rowcount


def find_dead(conn: psycopg.Connection[Any], minute_seconds: float) -> list[int]:
    """Active subscriptions silent for twice their StatusFrequency: dead. Returns their operators."""
    rows = conn.execute(
        """
        WITH dead AS (
            UPDATE push_subscriptions SET state = 'dead', ended_at = now(), end_reason = 'silent'
             WHERE state = 'active' AND mode <> 'graph'  -- Graph has no keep-alives: see find_lapsed
               AND COALESCE(last_heard_at, subscribed_at)
                   < now() - make_interval(secs => 2 * status_frequency_minutes * %(m)s)
            RETURNING operator_id
        )
        UPDATE push_status ps SET dead_since = COALESCE(ps.dead_since, now())
          FROM dead WHERE ps.operator_id = dead.operator_id
        RETURNING ps.operator_id
        """,
        {"m": minute_seconds},
    ).fetchall()
    return [int(r["operator_id"]) for r in rows]


def needing_subscription(
    conn: psycopg.Connection[Any],
    base_url: str,
    frequency: int,
    limit: int,
    hold_seconds: float = 120.0,
    default_source: str = "ews",
) -> list[int]:
    """Enabled EWS operators past their first sync whose subscription is missing or out of date,
    each held for `hold_seconds` so that the next sweeps do not ask again while its Subscribe
    waits in the queue (activate and give_up end the hold).

    Out of date: made for another mailbox address, another notification_url or another
    StatusFrequency. An operator whose last Subscribe failed waits for its back-off.
    """
    return _hold_wanted(
        conn,
        "ews",
        default_source,
        "lower(a.email) <> lower(o.email) OR a.base_url <> %(url)s OR a.mode <> 'push'"
        " OR a.status_frequency_minutes <> %(freq)s",
        {"url": base_url, "freq": frequency, "limit": limit, "hold": hold_seconds},
    )


def _of_source(source: str, default_source: str) -> sql.Composable:
    """`COALESCE(o.source, default) = source`, written so that the planner estimates it from
    the column's statistics: it guesses an expression over COALESCE at 0.5% of the rows, and
    the sweep's read of every operator then ran as nested loops (61 ms against 13.5 ms a pass
    at 10,000 operators)."""
    if source == default_source:
        return sql.SQL("(o.source = {s} OR o.source IS NULL)").format(s=sql.Literal(source))
    return sql.SQL("o.source = {s}").format(s=sql.Literal(source))


def _hold_wanted(
    conn: psycopg.Connection[Any], source: str, default_source: str, out_of_date: str, params: dict[str, Any]
) -> list[int]:
    """Enabled operators read through `source`, past their first sync, whose active subscription
    is missing or `out_of_date` (a condition over `a`, the subscription, and `o`), not being
    subscribed nor waiting for a back-off; each held until params["hold"] seconds from now."""
    query = sql.SQL(
        """
        WITH wanted AS (
            SELECT o.id
              FROM operators o
              JOIN sync_state s ON s.operator_id = o.id
              LEFT JOIN push_status ps ON ps.operator_id = o.id
              LEFT JOIN push_subscriptions a ON a.operator_id = o.id AND a.state = 'active'
             WHERE o.calendar_sync AND s.last_success_at IS NOT NULL
               AND {of_source}
               AND (ps.next_subscribe_at IS NULL OR ps.next_subscribe_at <= now())
               AND NOT EXISTS (SELECT 1 FROM push_subscriptions b WHERE b.operator_id = o.id
                                  AND b.state = 'subscribing' AND b.created_at > now() - interval '5 minutes')
               AND (a.id IS NULL OR {out_of_date})
             ORDER BY o.id
             LIMIT %(limit)s
        )
        INSERT INTO push_status (operator_id, next_subscribe_at)
        SELECT id, now() + make_interval(secs => %(hold)s) FROM wanted
        ON CONFLICT (operator_id) DO UPDATE SET next_subscribe_at = EXCLUDED.next_subscribe_at
        RETURNING operator_id
        """
    ).format(of_source=_of_source(source, default_source), out_of_date=sql.SQL(out_of_date))
    return sorted(int(r["operator_id"]) for r in conn.execute(query, params).fetchall())


def dead_too_long(conn: psycopg.Connection[Any], minutes: float, minute_seconds: float) -> list[dict[str, Any]]:
    """Operators whose push has been dead longer than the notification frequency and not yet
    notified in this episode; marked notified in the same transaction."""
    rows = conn.execute(
        """
        UPDATE push_status ps SET dead_notified_at = now()
          FROM operators o
         WHERE o.id = ps.operator_id AND o.calendar_sync AND ps.dead_since IS NOT NULL
           AND ps.dead_notified_at IS NULL
           AND ps.dead_since < now() - make_interval(secs => %(m)s * %(ms)s)
        RETURNING ps.operator_id, o.email, o.display_name, ps.dead_since, ps.last_error
        """,
        {"m": minutes, "ms": minute_seconds},
    ).fetchall()
    return [dict(r) for r in rows]


def prune(conn: psycopg.Connection[Any], keep_days: float = 7.0) -> int:
    """Ended subscriptions are kept a week (their late notifications get Unsubscribe), then removed;
    latency rows older than the console's longest history go too."""
    cur = conn.execute(
        """
        DELETE FROM push_subscriptions
         WHERE state NOT IN ('subscribing', 'active') AND ended_at < now() - make_interval(days => %s)
        """,
        (int(keep_days),),
    )
    # Latency rows feed the console's history, which looks back 7 days at most.
    conn.execute("DELETE FROM push_latencies WHERE at < now() - make_interval(days => %s)", (int(keep_days) + 1,))
    return cur.rowcount


# --- what an administrator sees -------------------------------------------------------------


# Healthy: EWS push heard within twice StatusFrequency (keep-alives); Graph active and not
# expired (Graph sends nothing while nothing changes). calsync.store.lifecycle's
# push_after_finish applies the same rule when it stretches polls.
HEALTHY_SQL = """(CASE WHEN {p}.mode = 'graph' THEN {p}.expires_at > now()
      ELSE COALESCE({p}.last_heard_at, {p}.subscribed_at)
           >= now() - make_interval(secs => 2 * {p}.status_frequency_minutes * %(m)s) END)"""
MODES = ("push", "graph")


def fleet(conn: psycopg.Connection[Any], minute_seconds: float) -> dict[str, Any]:
    """Fleet totals, and the same totals per mode (push: EWS push, graph: Graph change notifications)."""
    rows = conn.execute(
        f"""
        SELECT p.mode, count(*) FILTER (WHERE p.state = 'active') AS subscribed,
               count(*) FILTER (WHERE p.state = 'active' AND {HEALTHY_SQL.format(p="p")}) AS healthy,
               count(*) FILTER (WHERE p.state = 'subscribing') AS subscribing,
               max(p.last_heard_at) AS last_heard
          FROM push_subscriptions p
         WHERE p.state IN ('active', 'subscribing')
         GROUP BY p.mode
        """,
        {"m": minute_seconds},
    ).fetchall()
    dead_rows = conn.execute(
        """
        SELECT COALESCE((SELECT q.mode FROM push_subscriptions q WHERE q.operator_id = ps.operator_id
                          ORDER BY q.id DESC LIMIT 1), 'push') AS mode, count(*) AS n
          FROM push_status ps
         WHERE ps.dead_since IS NOT NULL
         GROUP BY 1
        """
    ).fetchall()
    dead = {r["mode"]: int(r["n"]) for r in dead_rows}
    by_mode: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        r = next((x for x in rows if x["mode"] == mode), None)
        by_mode[mode] = {
            "subscribed": int(r["subscribed"]) if r else 0,
            "healthy": int(r["healthy"]) if r else 0,
            "subscribing": int(r["subscribing"]) if r else 0,
            "dead": dead.get(mode, 0),
            "last_heard": r["last_heard"].isoformat() if r and r["last_heard"] else None,
        }
    heard = [m["last_heard"] for m in by_mode.values() if m["last_heard"]]
    return {
        "subscribed": sum(m["subscribed"] for m in by_mode.values()),
        "healthy": sum(m["healthy"] for m in by_mode.values()),
        "subscribing": sum(m["subscribing"] for m in by_mode.values()),
        "dead": sum(dead.values()),
        "last_heard": max(heard) if heard else None,
        "by_mode": by_mode,
    }


def per_operator(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT o.id, a.subscription_id IS NOT NULL AS subscribed, a.mode, a.last_heard_at, a.status_frequency_minutes,
               a.expires_at, a.renew_at, a.renewals, ps.dead_since, ps.last_error
          FROM unnest(%s::bigint[]) AS o (id)
          LEFT JOIN push_subscriptions a ON a.operator_id = o.id AND a.state = 'active'
          LEFT JOIN push_status ps ON ps.operator_id = o.id
        """,
        (list(operator_ids),),
    ).fetchall()
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        out[int(r["id"])] = {
            "subscribed": bool(r["subscribed"]),
            "mode": r["mode"],
            "last_heard": r["last_heard_at"].isoformat() if r["last_heard_at"] else None,
            "status_frequency_minutes": r["status_frequency_minutes"],
            "expires_at": r["expires_at"].isoformat() if r["expires_at"] else None,
            "renew_at": r["renew_at"].isoformat() if r["renew_at"] else None,
            "renewals": r["renewals"],
            "dead_since": r["dead_since"].isoformat() if r["dead_since"] else None,
            "last_error": r["last_error"],
        }
    return out


def owed_and_idle(conn: psycopg.Connection[Any], older_than_seconds: float) -> list[int]:
    """Operators owed a sync for a while with nothing running: their kick was lost (a read)."""
    rows = conn.execute(
        """
        SELECT s.operator_id
          FROM push_status ps JOIN sync_state s ON s.operator_id = ps.operator_id
          JOIN operators o ON o.id = s.operator_id
         WHERE o.calendar_sync AND ps.last_event_at > COALESCE(s.last_poll_at, '-infinity')
           AND ps.last_event_at < now() - make_interval(secs => %s)
           AND (NOT s.in_flight OR s.lease_expires_at < now())
        """,
        (older_than_seconds,),
    ).fetchall()
    return [int(r["operator_id"]) for r in rows]


# --- Graph change notifications (issue 17) ---------------------------------------------------
#
# Same tables, mode 'graph'. A Graph subscription has no keep-alive: it is healthy while it is
# active and not expired, and calsync renews it (renew_at) before it lapses. The URL secret
# (secret_hash) serves both URLs (/graph/SECRET and /graph-lifecycle/SECRET); clientState is
# a second secret (client_state_hash) that every notification must echo.


@dataclass(frozen=True, slots=True)
class GraphTarget:
    operator_id: int
    email: str
    was_dead: bool
    had_subscription: bool


def graph_target(conn: psycopg.Connection[Any], operator_id: int, default_source: str = "ews") -> GraphTarget | None:
    """The enabled Graph operator to subscribe."""
    row = conn.execute(
        """
        SELECT o.id AS operator_id, o.email, ps.dead_since IS NOT NULL AS was_dead,
               EXISTS (SELECT 1 FROM push_subscriptions q WHERE q.operator_id = o.id AND q.mode = 'graph'
                          AND q.subscription_id IS NOT NULL) AS had
          FROM operators o LEFT JOIN push_status ps ON ps.operator_id = o.id
         WHERE o.id = %s AND o.calendar_sync AND COALESCE(o.source, %s) = 'graph'
        """,
        (operator_id, default_source),
    ).fetchone()
    if row is None:
        return None
    return GraphTarget(row["operator_id"], row["email"], bool(row["was_dead"]), bool(row["had"]))


def begin_graph(
    conn: psycopg.Connection[Any],
    operator_id: int,
    email: str,
    base_url: str,
    secret_hash: bytes,
    client_state_hash: bytes,
) -> int | None:
    """The row of a Graph subscription about to be made (the listener answers its validation
    requests from here on); None if one is already being made."""
    return _begin(
        conn,
        operator_id=operator_id,
        mode="graph",
        secret_hash=secret_hash,
        client_state_hash=client_state_hash,
        base_url=base_url,
        email=email,
    )


def activate_graph(
    conn: psycopg.Connection[Any], row_id: int, subscription_id: str, expires_at: dt.datetime, renew_at: dt.datetime
) -> bool:
    """Graph answered 201: the subscription replaces the operator's active one (which Graph is
    then asked to delete) and the operator's push is healthy again. False when the row was
    given up meanwhile."""
    op = _replace_active(conn, row_id)
    if op is None:
        return False
    conn.execute(
        """
        UPDATE push_subscriptions
           SET state = 'active', subscription_id = %s, subscribed_at = now(), expires_at = %s, renew_at = %s
         WHERE id = %s
        """,
        (subscription_id, expires_at, renew_at, row_id),
    )
    # No keep-alive will come to end a dead episode: a live subscription ends it.
    conn.execute(
        "UPDATE push_status SET subscribe_attempts = 0, next_subscribe_at = NULL, last_error = NULL, "
        "dead_since = NULL, dead_notified_at = NULL WHERE operator_id = %s",
        (op,),
    )
    return True


def subscribe_attempts(conn: psycopg.Connection[Any], operator_id: int) -> int:
    """Failed subscribe attempts in a row (the back-off of the next one)."""
    row = conn.execute("SELECT subscribe_attempts FROM push_status WHERE operator_id = %s", (operator_id,)).fetchone()
    return int(row["subscribe_attempts"]) if row else 0


def needing_graph_subscription(
    conn: psycopg.Connection[Any], base_url: str, limit: int, hold_seconds: float = 120.0, default_source: str = "ews"
) -> list[int]:
    """Enabled Graph operators past their first sync without an up-to-date Graph subscription
    (none, or made for another address or notification_url), each held for `hold_seconds`."""
    return _hold_wanted(
        conn,
        "graph",
        default_source,
        "a.mode <> 'graph' OR lower(a.email) <> lower(o.email) OR a.base_url <> %(url)s",
        {"url": base_url, "limit": limit, "hold": hold_seconds},
    )


@dataclass(frozen=True, slots=True)
class Renewal:
    row_id: int
    operator_id: int
    due_in: float  # seconds from now (0 when already due)


def renewals_due(
    conn: psycopg.Connection[Any], within_seconds: float, hold_seconds: float, limit: int = 2000
) -> list[Renewal]:
    """Active Graph subscriptions whose renewal falls before the next sweep, each held so that
    the next sweeps leave it to the worker it is handed to. The caller schedules each at its own
    time (due_in), so that a sweep's batch is not a burst."""
    rows = conn.execute(
        """
        WITH due AS (
            SELECT id FROM push_subscriptions
             WHERE state = 'active' AND mode = 'graph' AND expires_at > now()
               AND renew_at <= now() + make_interval(secs => %(within)s)
               AND (renew_hold_until IS NULL OR renew_hold_until < now())
             ORDER BY renew_at LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED
        )
        UPDATE push_subscriptions p
           SET renew_hold_until = GREATEST(p.renew_at, now()) + make_interval(secs => %(hold)s)
          FROM due WHERE p.id = due.id
        RETURNING p.id, p.operator_id, greatest(extract(epoch FROM p.renew_at - now()), 0) AS due_in
        """,
        {"within": within_seconds, "hold": hold_seconds, "limit": limit},
    ).fetchall()
    return [Renewal(int(r["id"]), int(r["operator_id"]), float(r["due_in"])) for r in rows]


def renewal_target(conn: psycopg.Connection[Any], row_id: int) -> dict[str, Any] | None:
    """What renewing this subscription needs; None when it is no longer active."""
    row = conn.execute(
        """
        SELECT id, operator_id, subscription_id, email, expires_at, reauthorize, renew_failures
          FROM push_subscriptions WHERE id = %s AND state = 'active' AND mode = 'graph'
        """,
        (row_id,),
    ).fetchone()
    return dict(row) if row else None


def renewed(conn: psycopg.Connection[Any], row_id: int, expires_at: dt.datetime, renew_at: dt.datetime) -> bool:
    """Graph extended the subscription: the next renewal is scheduled from now."""
    row = conn.execute(
        """
        UPDATE push_subscriptions
           SET expires_at = %s, renew_at = %s, renew_hold_until = NULL, renewals = renewals + 1,
               renewed_at = now(), renew_failures = 0, reauthorize = false
         WHERE id = %s AND state = 'active'
        RETURNING operator_id
        """,
        (expires_at, renew_at, row_id),
    ).fetchone()
    if row is not None:
        conn.execute("UPDATE push_status SET last_error = NULL WHERE operator_id = %s", (row["operator_id"],))
    else:  # it lapsed or was replaced here while Graph renewed it: Graph holds it, delete it there
        conn.execute(
            "UPDATE push_subscriptions SET cleanup_at = now() WHERE id = %s AND mode = 'graph' AND deleted_at IS NULL",
            (row_id,),
        )
    return row is not None


def renew_failed(conn: psycopg.Connection[Any], row_id: int, error: str, retry_in_seconds: float) -> None:
    """A renewal failed (not a 404): tried again later, before the subscription lapses if it can be."""
    row = conn.execute(
        """
        UPDATE push_subscriptions
           SET renew_failures = renew_failures + 1, renew_hold_until = NULL,
               renew_at = now() + make_interval(secs => %s)
         WHERE id = %s AND state = 'active'
        RETURNING operator_id
        """,
        (retry_in_seconds, row_id),
    ).fetchone()
    if row is not None:
        conn.execute("UPDATE push_status SET last_error = %s WHERE operator_id = %s", (error[:500], row["operator_id"]))


def graph_gone(conn: psycopg.Connection[Any], row_id: int, reason: str) -> int | None:
    """Graph no longer holds the operator's live subscription (a renewal answered 404, or
    subscriptionRemoved): push is dead from now, the operator is owed a catch-up sync, and the
    next sweep subscribes it again without waiting. Returns the operator (None if not live)."""
    row = conn.execute(
        """
        UPDATE push_subscriptions
           SET state = 'dead', ended_at = now(), end_reason = %s, cleanup_at = NULL, renew_hold_until = NULL
         WHERE id = %s AND state IN ('subscribing', 'active')
        RETURNING operator_id
        """,
        (reason[:500], row_id),
    ).fetchone()
    if row is None:
        return None
    op = int(row["operator_id"])
    conn.execute(
        """
        INSERT INTO push_status (operator_id, dead_since, last_event_at) VALUES (%s, now(), now())
        ON CONFLICT (operator_id) DO UPDATE
           SET dead_since = COALESCE(push_status.dead_since, now()), last_event_at = now(), next_subscribe_at = NULL
        """,
        (op,),
    )
    return op


def find_lapsed(conn: psycopg.Connection[Any]) -> list[int]:
    """Active Graph subscriptions past their expiry (every renewal failed): dead. Returns their operators."""
    rows = conn.execute(
        """
        WITH dead AS (
            UPDATE push_subscriptions SET state = 'dead', ended_at = now(), end_reason = 'lapsed',
                   renew_hold_until = NULL
             WHERE state = 'active' AND mode = 'graph' AND expires_at <= now()
            RETURNING operator_id
        )
        UPDATE push_status ps SET dead_since = COALESCE(ps.dead_since, now()), next_subscribe_at = NULL
          FROM dead WHERE ps.operator_id = dead.operator_id
        RETURNING ps.operator_id
        """
    ).fetchall()
    return [int(r["operator_id"]) for r in rows]


def cleanups_due(conn: psycopg.Connection[Any], hold_seconds: float, limit: int = 500) -> list[int]:
    """Ended Graph subscriptions Graph may still hold, to delete there (each held while its
    delete waits in the queue). One that has expired meanwhile needs nothing."""
    conn.execute("UPDATE push_subscriptions SET cleanup_at = NULL WHERE cleanup_at IS NOT NULL AND expires_at <= now()")
    rows = conn.execute(
        """
        WITH due AS (
            SELECT id FROM push_subscriptions
             WHERE cleanup_at <= now() AND state NOT IN ('subscribing', 'active')
             ORDER BY cleanup_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        )
        UPDATE push_subscriptions p SET cleanup_at = now() + make_interval(secs => %(hold)s)
          FROM due WHERE p.id = due.id
        RETURNING p.id
        """,
        {"hold": hold_seconds, "limit": limit},
    ).fetchall()
    return sorted(int(r["id"]) for r in rows)


def cleanup_target(conn: psycopg.Connection[Any], row_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        """
        SELECT id, subscription_id, email FROM push_subscriptions
         WHERE id = %s AND mode = 'graph' AND cleanup_at IS NOT NULL AND subscription_id IS NOT NULL
           AND state NOT IN ('subscribing', 'active')
        """,
        (row_id,),
    ).fetchone()
    return dict(row) if row else None


def cleaned(conn: psycopg.Connection[Any], row_id: int) -> None:
    """Deleted at Graph (or Graph no longer knew it)."""
    conn.execute("UPDATE push_subscriptions SET cleanup_at = NULL, deleted_at = now() WHERE id = %s", (row_id,))


# --- the listener's side of Graph (autocommit connection) ------------------------------------


async def graph_validation_allowed(conn: psycopg.AsyncConnection[Any], secret_hash: bytes) -> bool:
    """Answer Graph's validation token only for a live Graph subscription of an enabled operator."""
    cur = await conn.execute(
        """
        SELECT 1 FROM push_subscriptions p JOIN operators o ON o.id = p.operator_id
         WHERE p.secret_hash = %s AND p.mode = 'graph' AND p.state IN ('subscribing', 'active') AND o.calendar_sync
        """,
        (secret_hash,),
    )
    return await cur.fetchone() is not None


_HEAR_GRAPH = """
WITH sub AS (
    UPDATE push_subscriptions p
       SET last_heard_at = now(), notifications = p.notifications + 1, events = p.events + %(events)s
      FROM operators o
     WHERE p.secret_hash = %(h)s AND p.mode = 'graph' AND p.client_state_hash = %(cs)s
       AND o.id = p.operator_id AND o.calendar_sync AND p.state IN ('subscribing', 'active')
       AND (p.subscription_id IS NULL OR p.subscription_id = %(sid)s)
    RETURNING p.operator_id
), st AS (
    UPDATE push_status ps
       SET last_event_at = now(), first_pending_at = COALESCE(ps.first_pending_at, now())
      FROM sub
     WHERE ps.operator_id = sub.operator_id AND %(events)s > 0
    RETURNING ps.operator_id
)
SELECT operator_id FROM sub
"""

_WHY_GRAPH = """
SELECT p.id, p.operator_id, p.state, p.mode, p.subscription_id, p.client_state_hash, o.calendar_sync
  FROM push_subscriptions p JOIN operators o ON o.id = p.operator_id
 WHERE p.secret_hash = %(h)s
"""


def _judge_graph(row: dict[str, Any] | None, subscription_id: str, client_state_hash: bytes) -> tuple[Heard, bool]:
    """Why a Graph notification did not match; True: the (live) row is to be ended.
    FORGED: the sender does not know this subscription's secrets or id (403, nothing recorded).
    UNSUBSCRIBE: ours but no longer wanted (202, nothing enqueued; the sweep deletes it at Graph)."""
    if row is None or row["mode"] != "graph":
        return Heard(Verdict.FORGED, reason="no Graph subscription has this secret"), False
    if row["client_state_hash"] != client_state_hash:
        return Heard(Verdict.FORGED, reason="wrong clientState"), False
    if row["subscription_id"] is not None and row["subscription_id"] != subscription_id:
        return Heard(Verdict.FORGED, reason="unknown subscription id"), False
    if row["state"] in ("subscribing", "active") and not row["calendar_sync"]:
        return Heard(Verdict.UNSUBSCRIBE, reason="operator disabled"), True
    return Heard(Verdict.UNSUBSCRIBE, reason=f"subscription {row['state']}"), False


_END_GRAPH = f"""
UPDATE push_subscriptions SET state = 'ended', ended_at = now(), end_reason = %(reason)s, cleanup_at = {_CLEANUP}
 WHERE id = %(id)s AND state IN ('subscribing', 'active')
"""


async def hear_graph(
    conn: psycopg.AsyncConnection[Any], secret_hash: bytes, subscription_id: str, client_state_hash: bytes, events: int
) -> Heard:
    """Record the change notifications of one POST (all for one subscription)."""
    params = {"h": secret_hash, "sid": subscription_id, "cs": client_state_hash, "events": events}
    row = await (await conn.execute(_HEAR_GRAPH, params)).fetchone()
    if row is not None:
        return Heard(Verdict.OK, int(row["operator_id"]))
    why = await (await conn.execute(_WHY_GRAPH, params)).fetchone()
    heard, end = _judge_graph(why, subscription_id, client_state_hash)
    if end and why is not None:
        await conn.execute(_END_GRAPH, {"id": why["id"], "reason": heard.reason})
    return heard


class Lifecycle(enum.StrEnum):
    REAUTHORIZATION_REQUIRED = "reauthorizationRequired"
    SUBSCRIPTION_REMOVED = "subscriptionRemoved"
    MISSED = "missed"


async def graph_lifecycle(
    conn: psycopg.AsyncConnection[Any], secret_hash: bytes, subscription_id: str, client_state_hash: bytes, event: str
) -> Heard:
    """One lifecycle notification. OK with the operator when it owes a sync now (the caller
    kicks it): `missed`, and `subscriptionRemoved` (the sweep subscribes it again, and that
    new subscription's activation starts one more catch-up). `reauthorizationRequired` makes
    the renewal due now; the renewal reauthorizes first."""
    params = {"h": secret_hash, "sid": subscription_id, "cs": client_state_hash}
    async with conn.transaction():
        row = await (await conn.execute(_WHY_GRAPH + " FOR UPDATE OF p", params)).fetchone()
        heard, _ = _judge_graph(row, subscription_id, client_state_hash)
        if heard.verdict is Verdict.FORGED or row is None:
            return heard
        await conn.execute(
            """
            UPDATE push_subscriptions SET lifecycle_events = lifecycle_events + 1, last_lifecycle_event = %s,
                   last_lifecycle_at = now()
             WHERE id = %s
            """,
            (event[:100], row["id"]),
        )
        live = row["state"] in ("subscribing", "active") and row["calendar_sync"]
        if not live:
            if event == Lifecycle.SUBSCRIPTION_REMOVED:  # nothing left to delete at Graph
                await conn.execute(
                    "UPDATE push_subscriptions SET cleanup_at = NULL, deleted_at = now() WHERE id = %s", (row["id"],)
                )
            return Heard(Verdict.UNSUBSCRIBE, reason=f"subscription {row['state']}")
        if event == Lifecycle.REAUTHORIZATION_REQUIRED:
            await conn.execute(
                """
                UPDATE push_subscriptions SET reauthorize = true, renew_at = LEAST(renew_at, now()),
                       renew_hold_until = NULL
                 WHERE id = %s AND state = 'active'
                """,
                (row["id"],),
            )
            return Heard(Verdict.OK, None, "reauthorize")
        if event == Lifecycle.SUBSCRIPTION_REMOVED:
            await conn.execute(
                """
                UPDATE push_subscriptions
                   SET state = 'dead', ended_at = now(), end_reason = 'subscriptionRemoved', cleanup_at = NULL,
                       renew_hold_until = NULL
                 WHERE id = %s
                """,
                (row["id"],),
            )
            await conn.execute(
                """
                UPDATE push_status SET dead_since = COALESCE(dead_since, now()), next_subscribe_at = NULL,
                       last_event_at = now(), first_pending_at = COALESCE(first_pending_at, now())
                 WHERE operator_id = %s
                """,
                (row["operator_id"],),
            )
            return Heard(Verdict.OK, int(row["operator_id"]), "removed")
        if event == Lifecycle.MISSED:
            await conn.execute(
                """
                UPDATE push_status SET last_event_at = now(), first_pending_at = COALESCE(first_pending_at, now())
                 WHERE operator_id = %s
                """,
                (row["operator_id"],),
            )
            return Heard(Verdict.OK, int(row["operator_id"]), "missed")
        return Heard(Verdict.OK, None, "ignored")
