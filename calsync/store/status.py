"""Read-only queries behind `calsync status`: what the database holds, nothing derived elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from calsync.operators.emails import key as email_key
from calsync.store.lifecycle import STATUSES


def by_status(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Operators per status, every status named (zero included)."""
    counts = {s: 0 for s in STATUSES}
    for row in conn.execute("SELECT status, count(*) AS n FROM sync_state GROUP BY status"):
        counts[row["status"]] = int(row["n"])
    return counts


def fleet(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    counts = by_status(conn)
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


@dataclass(frozen=True, slots=True)
class Gauges:
    """What the metrics exporter reads at scrape time (calsync.metrics.StatusCollector)."""

    by_status: dict[str, int]
    pause_code: str | None
    open_operator_episodes: int
    open_global_episodes: int


def gauges(conn: psycopg.Connection[Any]) -> Gauges:
    counts = by_status(conn)
    pause = conn.execute("SELECT code FROM global_pause").fetchone()
    eps = conn.execute(
        "SELECT count(*) FILTER (WHERE operator_id IS NOT NULL) AS op, "
        "count(*) FILTER (WHERE operator_id IS NULL) AS glob "
        "FROM failure_episodes WHERE recovered_at IS NULL"
    ).fetchone()
    assert eps is not None
    return Gauges(counts, pause["code"] if pause else None, int(eps["op"]), int(eps["glob"]))
