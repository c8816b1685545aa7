"""The dispatcher's two statements: take a tick slot once, and claim the due operators.

Claiming is one UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) ... RETURNING: it marks
the operators in flight and hands each a fresh fencing token, so two dispatchers (a lock
race between beats) can never claim the same operator twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import psycopg


def take_slot(conn: psycopg.Connection[Any], slot: dt.datetime) -> bool:
    row = conn.execute(
        "INSERT INTO dispatch_ticks (slot) VALUES (%s) ON CONFLICT DO NOTHING RETURNING slot", (slot,)
    ).fetchone()
    return row is not None


class Claim(NamedTuple):
    operator_id: int
    token: int
    # In sync and healthy: its poll can go in a chunk (calsync.tasks.poll); otherwise
    # (first sync, resync, failing) it runs as its own chain of batches.
    quiet: bool


def claim_due(conn: psycopg.Connection[Any], slack_seconds: float, lease_seconds: float, limit: int) -> list[Claim]:
    rows = conn.execute(
        """
        WITH due AS (
            SELECT s.operator_id
              FROM sync_state s JOIN operators o ON o.id = s.operator_id
             WHERE o.calendar_sync
               AND s.next_poll_at <= now() + make_interval(secs => %(slack)s)
               AND (NOT s.in_flight OR s.lease_expires_at IS NULL OR s.lease_expires_at < now())
             ORDER BY s.next_poll_at
             LIMIT %(limit)s
               FOR UPDATE OF s SKIP LOCKED
        )
        UPDATE sync_state s
           SET in_flight = true, prev_lease_token = NULL, lease_token = nextval('lease_token_seq'),
               lease_owner = 'dispatcher',
               lease_expires_at = now() + make_interval(secs => %(lease)s), last_poll_at = now(),
               updated_at = now()
          FROM due
         WHERE s.operator_id = due.operator_id
        RETURNING s.operator_id, s.lease_token,
                  s.stage = 'incremental' AND s.status = 'active' AND s.failing_since IS NULL AS quiet
        """,
        {"slack": slack_seconds, "lease": lease_seconds, "limit": limit},
    ).fetchall()
    return [Claim(r["operator_id"], r["lease_token"], r["quiet"]) for r in rows]


def record_tick(conn: psycopg.Connection[Any], slot: dt.datetime, operators: int) -> None:
    conn.execute("UPDATE dispatch_ticks SET operators = %s WHERE slot = %s", (operators, slot))
