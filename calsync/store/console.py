"""Read-only queries behind the admin console (calsync.console).

Nothing here writes: every change the console makes goes through the same store functions
as the CLI (calsync.store.operators, .settings, .status), so the rules about sync_state live
in one place. The operators page must stay fast at 100,000 operators, hence the narrow
queries: one page of rows, and a count that only joins when a search needs the names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from calsync.store.status import STATUSES

# Sort key -> (ORDER BY expression, whether it is unique on its own).
SORTS: dict[str, tuple[str, bool]] = {
    "email": ("lower(o.email)", True),
    "name": ("lower(o.display_name)", False),
    "status": ("s.status", False),
    "last_sync": ("s.last_success_at", False),
}


@dataclass(frozen=True)
class OperatorQuery:
    """What the operators page asks for; validated by the caller (unknown values are dropped)."""

    search: str = ""
    status: str | None = None
    error_code: str | None = None
    sort: str = "email"
    descending: bool = False
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class OperatorPage:
    rows: list[dict[str, Any]]
    total: int | None  # None: not counted (a search)
    query: OperatorQuery
    more: bool = False  # a next page exists

    @property
    def pages(self) -> int | None:
        return None if self.total is None else max(1, -(-self.total // self.query.per_page))


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(query: OperatorQuery) -> tuple[sql.Composable, dict[str, Any]]:
    parts: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if query.search.strip():
        parts.append(sql.SQL("(lower(o.email) LIKE %(q)s OR lower(o.display_name) LIKE %(q)s)"))
        params["q"] = _like(query.search.strip())
    if query.status in STATUSES:
        parts.append(sql.SQL("s.status = %(status)s"))
        params["status"] = query.status
    if query.error_code:
        parts.append(sql.SQL("s.last_error_code = %(code)s"))
        params["code"] = query.error_code
    where = sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")
    return where, params


def operator_page(conn: psycopg.Connection[Any], query: OperatorQuery) -> OperatorPage:
    """One page of operators, and how many match when that is cheap to know.

    Counting a search exactly would mean evaluating it on every operator (a term matching
    most of 100,000 addresses defeats the trigram index), so a search is not counted: the
    page fetches one row more than it shows to know whether a next page exists. Without a
    search the count reads only what it must: every operator, the partial index of
    operators that are not 'active' (also for 'active', by difference), or that index
    with the error code's.
    """
    where, params = _filters(query)
    expr, unique = SORTS.get(query.sort, SORTS["email"])
    direction = "DESC" if query.descending else "ASC"
    nulls = " NULLS LAST" if query.sort == "last_sync" else ""
    order = f"{expr} {direction}{nulls}" + ("" if unique else f", o.id {direction}")
    selective = (query.status in STATUSES and query.status != "active") or bool(query.error_code)
    if selective and not query.search.strip():
        # A few operators out of 100,000 (the partial indexes of migration 0010 find them):
        # take them from sync_state first, then sort just those. OFFSET 0 keeps the planner
        # from turning the per-row primary-key lookup into a hash of all operators.
        page_sql = sql.SQL(
            """
            WITH picked AS MATERIALIZED (
                SELECT s.operator_id, s.status, s.last_success_at, s.last_error_code
                  FROM sync_state s WHERE {where}
            )
            SELECT o.id, o.email, o.display_name, o.calendar_sync, s.status, s.last_success_at,
                   s.last_error_code
              FROM picked s
             CROSS JOIN LATERAL (SELECT * FROM operators o WHERE o.id = s.operator_id OFFSET 0) AS o
             ORDER BY {order}
             LIMIT %(limit)s OFFSET %(offset)s
            """
        )
    elif query.sort in ("status", "last_sync") and not query.search.strip():
        # Sorted by sync_state's columns: pick the page from sync_state alone (a top-N sort of
        # one table), then join only those rows; joining all 100,000 first costs twice as much.
        order = order.replace("o.id", "s.operator_id")
        page_sql = sql.SQL(
            """
            SELECT o.id, o.email, o.display_name, o.calendar_sync, s.status, s.last_success_at,
                   s.last_error_code
              FROM (SELECT s.operator_id, s.status, s.last_success_at, s.last_error_code
                      FROM sync_state s WHERE {where} ORDER BY {order}
                     LIMIT %(limit)s OFFSET %(offset)s) AS s
             CROSS JOIN LATERAL (SELECT * FROM operators o WHERE o.id = s.operator_id OFFSET 0) AS o
             ORDER BY {order}
            """
        )
    else:
        page_sql = sql.SQL(
            """
            SELECT o.id, o.email, o.display_name, o.calendar_sync, s.status, s.last_success_at,
                   s.last_error_code
              FROM operators o JOIN sync_state s ON s.operator_id = o.id
             WHERE {where}
             ORDER BY {order}
             LIMIT %(limit)s OFFSET %(offset)s
            """
        )
    rows = conn.execute(
        page_sql.format(where=where, order=sql.SQL(order)),
        {**params, "limit": query.per_page + 1, "offset": (max(1, query.page) - 1) * query.per_page},
    ).fetchall()
    shown, more = [dict(r) for r in rows[: query.per_page]], len(rows) > query.per_page
    total: int | None = None
    if not query.search.strip():
        count_sql: sql.Composable
        if query.status == "active" and not query.error_code:
            count_sql = sql.SQL(
                "SELECT (SELECT count(*) FROM operators) - "
                "(SELECT count(*) FROM sync_state WHERE status <> 'active') AS n"
            )
        elif query.status in STATUSES or query.error_code:
            count_sql = sql.SQL("SELECT count(*) AS n FROM sync_state s WHERE {}").format(where)
        else:
            count_sql = sql.SQL("SELECT count(*) AS n FROM operators o")
        counted = conn.execute(count_sql, params).fetchone()
        total = int(counted["n"]) if counted else 0
    return OperatorPage(shown, total, query, more)


def operator_by_id(conn: psycopg.Connection[Any], operator_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        """
        SELECT o.id, o.email, o.display_name, o.calendar_sync, o.created_at, o.updated_at, o.source,
               s.status, s.stage, s.last_success_at, s.last_poll_at, s.next_poll_at, s.last_error_code,
               s.last_error_message, s.failing_since, s.attempts, s.batches_total, s.items_created,
               s.items_updated, s.items_deleted, s.in_flight, s.polls_total,
               (SELECT count(*) FROM appointments a WHERE a.operator_id = o.id) AS appointments
          FROM operators o JOIN sync_state s ON s.operator_id = o.id
         WHERE o.id = %s
        """,
        (operator_id,),
    ).fetchone()
    return dict(row) if row else None


def emails_of(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, str]:
    rows = conn.execute("SELECT id, email FROM operators WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(r["id"]): r["email"] for r in rows}


def last_runs(conn: psycopg.Connection[Any], operator_id: int, limit: int = 10) -> list[dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT id, stage, status, started_at, finished_at, batches, created, updated, deleted, unchanged,
               error_code
          FROM sync_runs WHERE operator_id = %s ORDER BY started_at DESC LIMIT %s
        """,
        (operator_id, limit),
    ).fetchall()
    return [dict(r) for r in rows]


def open_episode(conn: psycopg.Connection[Any], operator_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT code, started_at, last_failed_at, attempts, failed_at, notified_at FROM failure_episodes "
        "WHERE operator_id = %s AND recovered_at IS NULL",
        (operator_id,),
    ).fetchone()
    return dict(row) if row else None


def failures_by_code(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Operators currently failing or retrying, grouped by the code of their last error."""
    rows = conn.execute(
        """
        SELECT last_error_code AS code, count(*) AS operators,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'retrying') AS retrying
          FROM sync_state
         WHERE last_error_code IS NOT NULL AND status IN ('failed', 'retrying')
         GROUP BY last_error_code
         ORDER BY count(*) DESC, last_error_code
        """
    ).fetchall()
    return [dict(r) for r in rows]


def history(conn: psycopg.Connection[Any], hours: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per hour, oldest first, every hour present: runs, changes applied, failed runs, global failures begun.

    A run is a sync_runs row: first syncs, resyncs and polls that found changes or failed.
    Polls that found nothing are only counted on sync_state (migration 0004) and are not
    in this history. An operator's failure is its failed (or cancelled) run; its failure
    episode is the same event and is not counted again. A global failure (everyone paused)
    has no run, so it counts by its episode.
    """
    rows = conn.execute(
        """
        WITH hours AS (
            SELECT generate_series(date_trunc('hour', %(now)s::timestamptz) - make_interval(hours => %(h)s - 1),
                                   date_trunc('hour', %(now)s::timestamptz), interval '1 hour') AS hour
        ), runs AS (
            SELECT date_trunc('hour', started_at) AS hour, count(*) AS syncs,
                   coalesce(sum(created + updated + deleted), 0) AS changes,
                   count(*) FILTER (WHERE status IN ('failed', 'cancelled')) AS failed_runs
              FROM sync_runs
             WHERE started_at >= date_trunc('hour', %(now)s::timestamptz) - make_interval(hours => %(h)s - 1)
             GROUP BY 1
        ), episodes AS (
            SELECT date_trunc('hour', started_at) AS hour, count(*) AS failures
              FROM failure_episodes
             WHERE operator_id IS NULL AND started_at >= date_trunc('hour', %(now)s::timestamptz) - make_interval(hours => %(h)s - 1)
             GROUP BY 1
        )
        SELECT h.hour, coalesce(r.syncs, 0) AS syncs, coalesce(r.changes, 0) AS changes,
               coalesce(r.failed_runs, 0) AS failed_runs, coalesce(e.failures, 0) AS failures
          FROM hours h LEFT JOIN runs r USING (hour) LEFT JOIN episodes e USING (hour)
         ORDER BY h.hour
        """,
        {"now": now or dt.datetime.now(dt.UTC), "h": hours},
    ).fetchall()
    return [{k: (int(v) if k != "hour" else v) for k, v in dict(r).items()} for r in rows]


def recent_audit(conn: psycopg.Connection[Any], limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT at, actor, action, target, detail FROM console_audit ORDER BY at DESC, id DESC LIMIT %s", (limit,)
    ).fetchall()
    return [dict(r) for r in rows]


def push_detail(conn: psycopg.Connection[Any], operator_id: int) -> dict[str, Any]:
    """The operator's active subscription, else its newest one Exchange answered (a failed
    Subscribe shows as last_error), and push health. The secret's hash is never selected, so
    no page can show it."""
    row = conn.execute(
        """
        SELECT p.state, p.subscription_id IS NOT NULL AS has_id, p.subscribed_at, p.last_heard_at,
               p.status_frequency_minutes, p.end_reason, p.notifications, p.events,
               p.mode AS subscription_mode, p.expires_at, p.renew_at, p.renewals, p.last_lifecycle_event,
               p.last_lifecycle_at,
               ps.last_event_at, ps.dead_since, ps.last_error, ps.subscribe_attempts, ps.next_subscribe_at
          FROM operators o
          LEFT JOIN push_status ps ON ps.operator_id = o.id
          LEFT JOIN LATERAL (SELECT q.state, q.subscription_id, q.subscribed_at, q.last_heard_at,
                                    q.status_frequency_minutes, q.end_reason, q.notifications, q.events,
                                    q.mode, q.expires_at, q.renew_at, q.renewals, q.last_lifecycle_event,
                                    q.last_lifecycle_at
                               FROM push_subscriptions q WHERE q.operator_id = o.id
                              ORDER BY (q.state = 'active') DESC, (q.subscription_id IS NOT NULL) DESC, q.id DESC
                              LIMIT 1) p ON true
         WHERE o.id = %s
        """,
        (operator_id,),
    ).fetchone()
    out = dict(row) if row else {}
    out["subscribed"] = out.get("state") == "active"
    return out


def push_latency_history(
    conn: psycopg.Connection[Any], hours: int, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Per hour, oldest first, every hour present: notification-to-commit latency (p50, p95,
    seconds; None in an hour without covered notifications) and how many were covered."""
    rows = conn.execute(
        """
        WITH hours AS (
            SELECT generate_series(date_trunc('hour', %(now)s::timestamptz) - make_interval(hours => %(h)s - 1),
                                   date_trunc('hour', %(now)s::timestamptz), interval '1 hour') AS hour
        ), lat AS (
            SELECT date_trunc('hour', at) AS hour, count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS p95
              FROM push_latencies
             WHERE at >= date_trunc('hour', %(now)s::timestamptz) - make_interval(hours => %(h)s - 1)
             GROUP BY 1
        )
        SELECT h.hour, coalesce(l.n, 0) AS n, l.p50, l.p95
          FROM hours h LEFT JOIN lat l USING (hour)
         ORDER BY h.hour
        """,
        {"now": now or dt.datetime.now(dt.UTC), "h": hours},
    ).fetchall()
    return [
        {"hour": r["hour"], "n": int(r["n"]),
         "p50": None if r["p50"] is None else round(float(r["p50"]), 2),
         "p95": None if r["p95"] is None else round(float(r["p95"]), 2)}
        for r in rows
    ]  # fmt: skip
