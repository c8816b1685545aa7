"""Failure episodes, for the emails (the operator's own failure state is calsync.store.lifecycle's).

`failing_since` (sync_state) marks the start of a failure episode and survives retries; the
runner compares it with the notification frequency to decide when to give up and notify. A row in
failure_episodes exists only once an operator's sync was given up (cancelled after the
timeout, or a permanent failure): transient blips that heal in time leave no trace but the
counters. One email per episode: `notified_at`, then `recovery_notified_at`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from calsync.errors import Disposition

SENDER_LOCK = 0x6361_6C73_6E74  # pg advisory lock key: "calsnt"


def lock_sender(conn: psycopg.Connection[Any]) -> None:
    """One notification sender at a time: two never split or duplicate a digest."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SENDER_LOCK,))


def open_episode(
    conn: psycopg.Connection[Any], operator_id: int, code: str, disposition: Disposition, message: str
) -> bool:
    """The operator's sync was given up: its episode becomes due for an email (once).

    Returns True when an email is still owed for it (new, or not yet sent).
    """
    row = conn.execute(
        """
        INSERT INTO failure_episodes (operator_id, code, disposition, message, started_at, attempts, failed_at)
        SELECT s.operator_id, %(code)s, %(disp)s, %(msg)s, COALESCE(s.failing_since, now()), s.attempts, now()
          FROM sync_state s WHERE s.operator_id = %(op)s
        ON CONFLICT (operator_id) WHERE recovered_at IS NULL AND operator_id IS NOT NULL
        DO UPDATE SET last_failed_at = now(), attempts = EXCLUDED.attempts, message = EXCLUDED.message,
                      failed_at = COALESCE(failure_episodes.failed_at, now())
        RETURNING notified_at
        """,
        {"code": code, "disp": disposition.value, "msg": message[:2000], "op": operator_id},
    ).fetchone()
    return row is not None and row["notified_at"] is None


def close_episode(conn: psycopg.Connection[Any], operator_id: int) -> bool:
    """The operator synced again. Returns True when a recovery email is owed (the failure was emailed)."""
    row = conn.execute(
        """
        UPDATE failure_episodes
           SET recovered_at = now(),
               -- never emailed as failed: nothing to recover from in anyone's inbox
               recovery_notified_at = CASE WHEN notified_at IS NULL THEN now() END
         WHERE operator_id = %s AND recovered_at IS NULL
        RETURNING notified_at IS NOT NULL AS owed
        """,
        (operator_id,),
    ).fetchone()
    return bool(row and row["owed"])


@dataclass(frozen=True, slots=True)
class Episode:
    id: int
    operator_id: int | None
    email: str | None
    display_name: str | None
    code: str
    disposition: str
    message: str
    started_at: dt.datetime
    attempts: int
    operators_affected: int
    recovered_at: dt.datetime | None


_EPISODE_COLUMNS = """
    e.id, e.operator_id, o.email, o.display_name, e.code, e.disposition, e.message, e.started_at,
    e.attempts, e.operators_affected, e.recovered_at
"""


def lock_pending(conn: psycopg.Connection[Any]) -> tuple[list[Episode], list[Episode]]:
    """Episodes owed a failure email and episodes owed a recovery email, locked for this sender."""
    failures = conn.execute(
        f"""
        SELECT {_EPISODE_COLUMNS} FROM failure_episodes e LEFT JOIN operators o ON o.id = e.operator_id
         WHERE e.failed_at IS NOT NULL AND e.notified_at IS NULL AND e.recovered_at IS NULL
         ORDER BY e.operator_id NULLS FIRST, e.id
           FOR UPDATE OF e SKIP LOCKED
        """
    ).fetchall()
    recoveries = conn.execute(
        f"""
        SELECT {_EPISODE_COLUMNS} FROM failure_episodes e LEFT JOIN operators o ON o.id = e.operator_id
         WHERE e.recovered_at IS NOT NULL AND e.notified_at IS NOT NULL AND e.recovery_notified_at IS NULL
         ORDER BY e.operator_id NULLS FIRST, e.id
           FOR UPDATE OF e SKIP LOCKED
        """
    ).fetchall()
    return [Episode(**r) for r in failures], [Episode(**r) for r in recoveries]


def mark_notified(conn: psycopg.Connection[Any], failures: list[int], recoveries: list[int]) -> None:
    if failures:
        conn.execute("UPDATE failure_episodes SET notified_at = now() WHERE id = ANY(%s)", (failures,))
    if recoveries:
        conn.execute("UPDATE failure_episodes SET recovery_notified_at = now() WHERE id = ANY(%s)", (recoveries,))
