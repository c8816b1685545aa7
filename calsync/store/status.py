"""Read-only queries behind `calsync status`: what the database holds, nothing derived elsewhere."""

from __future__ import annotations

from typing import Any

import psycopg

from calsync.operators.emails import key as email_key

STATUSES = ("not_synced", "initial_sync", "active", "retrying", "failed", "disabled")


def fleet(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    counts = {s: 0 for s in STATUSES}
    for row in conn.execute("SELECT status, count(*) AS n FROM sync_state GROUP BY status"):
        counts[row["status"]] = int(row["n"])
    tick = conn.execute(
        "SELECT slot, dispatched_at, operators FROM dispatch_ticks ORDER BY slot DESC LIMIT 1"
    ).fetchone()
    totals = conn.execute("SELECT count(*) AS appointments, max(synced_at) AS last_write FROM appointments").fetchone()
    return {
        "operators": sum(counts.values()),
        "by_status": counts,
        "last_tick": (
            {"slot": tick["slot"].isoformat(), "at": tick["dispatched_at"].isoformat(), "dispatched": tick["operators"]}
            if tick
            else None
        ),
        "appointments": int(totals["appointments"]) if totals else 0,
        "last_write": totals["last_write"].isoformat() if totals and totals["last_write"] else None,
    }


def operators(
    conn: psycopg.Connection[Any], emails: list[str] | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT o.id, o.email, o.display_name, o.calendar_sync, s.status, s.stage, s.last_success_at,
               s.last_poll_at, s.next_poll_at, s.last_error_code, s.last_error_message, s.failing_since,
               s.attempts, s.batches_total, s.items_created, s.items_updated, s.items_deleted, s.in_flight,
               (SELECT count(*) FROM appointments a WHERE a.operator_id = o.id) AS appointments
          FROM operators o JOIN sync_state s ON s.operator_id = o.id
         WHERE (%(emails)s::text[] IS NULL OR o.email_key = ANY(%(emails)s))
           AND (%(status)s::text IS NULL OR s.status = %(status)s)
         ORDER BY o.email
        """,
        {"emails": [email_key(e) for e in emails] if emails else None, "status": status},
    ).fetchall()
    out = []
    for r in rows:
        item = dict(r)
        for key in ("last_success_at", "last_poll_at", "next_poll_at", "failing_since"):
            item[key] = item[key].isoformat() if item[key] else None
        item["appointments"] = int(item["appointments"])
        out.append(item)
    return out


def request_sync(conn: psycopg.Connection[Any], emails: list[str] | None) -> list[tuple[int, str]]:
    """Make operators due now (all enabled ones when `emails` is None); returns (id, email) of those made due."""
    rows = conn.execute(
        """
        UPDATE sync_state s SET next_poll_at = now(), updated_at = now()
          FROM operators o
         WHERE o.id = s.operator_id AND o.calendar_sync
           AND (%(emails)s::text[] IS NULL OR o.email_key = ANY(%(emails)s))
        RETURNING o.id, o.email
        """,
        {"emails": [email_key(e) for e in emails] if emails else None},
    ).fetchall()
    return [(r["id"], r["email"]) for r in rows]
