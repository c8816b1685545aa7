"""What the demo (and anyone watching a run) reads: progress counts and a per-operator summary.

Kept in store/ so that SQL lives in one layer; the demo only prints what these return.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from calsync.operators.emails import key as email_key


def reset(conn: psycopg.Connection[Any]) -> None:
    """Empty every calsync table (the demo's own database only): operators cascade to their
    sync state, mirror, runs and everything else keyed by operator."""
    conn.execute(
        "TRUNCATE operators, settings, dispatch_ticks, failure_episodes, global_pause RESTART IDENTITY CASCADE"
    )


def synced_count(conn: psycopg.Connection[Any]) -> int:
    """Operators that completed at least one sync."""
    row = conn.execute("SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL").fetchone()
    return int(row["n"]) if row else 0


def polled_since(conn: psycopg.Connection[Any], emails: list[str], since: dt.datetime) -> int:
    """Of these operators, how many completed a sync after `since`."""
    row = conn.execute(
        "SELECT count(*) AS n FROM sync_state s JOIN operators o ON o.id = s.operator_id "
        "WHERE o.email_key = ANY(%s) AND s.last_success_at > %s",
        ([email_key(e) for e in emails], since),
    ).fetchone()
    return int(row["n"]) if row else 0


def per_operator(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Each operator's status, last sync, and mirror counts (singles+series, occurrences, cancelled)."""
    rows = conn.execute(
        """
        SELECT o.email, s.status, s.last_success_at,
               (SELECT count(*) FROM appointments a WHERE a.operator_id = o.id
                   AND a.kind IN ('single', 'series')) AS appointments,
               (SELECT count(*) FROM appointments a WHERE a.operator_id = o.id
                   AND a.kind IN ('occurrence', 'exception')) AS occurrences,
               (SELECT count(*) FROM appointments a WHERE a.operator_id = o.id AND a.is_cancelled) AS cancelled
          FROM operators o JOIN sync_state s ON s.operator_id = o.id ORDER BY o.email
        """
    ).fetchall()
    return [dict(r) for r in rows]


def changes_since(conn: psycopg.Connection[Any], since: dt.datetime) -> dict[str, int]:
    """Rows created/updated/deleted by the successful runs that started after `since`."""
    row = conn.execute(
        "SELECT COALESCE(sum(created), 0) AS c, COALESCE(sum(updated), 0) AS u, COALESCE(sum(deleted), 0) AS d, "
        "count(*) AS runs FROM sync_runs WHERE started_at > %s AND status = 'succeeded'",
        (since,),
    ).fetchone()
    assert row is not None
    return {k: int(v) for k, v in row.items()}
