"""Where push moves an operator's sync_state: the few statements, in one place.

Moves into calsync.store.lifecycle at merge (issue 13: one module writes sync_state).

- `claim_pushed`: a notification makes the operator's sync start now, through the same claim
  the dispatcher makes (in flight, a fresh fencing token, last_poll_at), never around it.
- `after_success`: at the end of a sync, in its transaction: a notification that came in
  while it ran makes the operator due again at once; otherwise, while push is healthy,
  the next poll is stretched to push_safety_poll_minutes.
- `make_due`: a catch-up sync now (a subscription found dead, a new subscription, an owed
  sync whose kick was lost).

"Owed": push_status.last_event_at > sync_state.last_poll_at. last_poll_at is set by every
claim before Exchange is read, and a notification is recorded after the change it reports,
so a sync claimed after a notification was recorded has seen that change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from calsync.store.dispatch import Claim


def claim_pushed(conn: psycopg.Connection[Any], operator_id: int, lease_seconds: float) -> tuple[Claim | None, str]:
    """Claim an operator that owes a sync. Returns (claim, "") or (None, why): "in_flight",
    "not_owed" or "disabled"."""
    row = conn.execute(
        """
        UPDATE sync_state s
           SET in_flight = true, prev_lease_token = NULL, lease_token = nextval('lease_token_seq'),
               lease_owner = 'push', lease_expires_at = now() + make_interval(secs => %(lease)s),
               last_poll_at = now(), updated_at = now()
          FROM operators o, push_status ps
         WHERE s.operator_id = %(op)s AND o.id = s.operator_id AND ps.operator_id = s.operator_id
           AND o.calendar_sync
           AND ps.last_event_at > COALESCE(s.last_poll_at, '-infinity')
           AND (NOT s.in_flight OR s.lease_expires_at IS NULL OR s.lease_expires_at < now())
        RETURNING s.operator_id, s.lease_token,
                  s.stage = 'incremental' AND s.status = 'active' AND s.failing_since IS NULL AS quiet
        """,
        {"op": operator_id, "lease": lease_seconds},
    ).fetchone()
    if row is not None:
        return Claim(row["operator_id"], row["lease_token"], row["quiet"]), ""
    why = conn.execute(
        """
        SELECT o.calendar_sync, s.in_flight AND s.lease_expires_at >= now() AS busy,
               ps.last_event_at > COALESCE(s.last_poll_at, '-infinity') AS owed
          FROM operators o JOIN sync_state s ON s.operator_id = o.id
          LEFT JOIN push_status ps ON ps.operator_id = o.id
         WHERE o.id = %s
        """,
        (operator_id,),
    ).fetchone()
    if why is None or not why["calendar_sync"]:
        return None, "disabled"
    if not why["owed"]:
        return None, "not_owed"
    return None, "in_flight"


def after_success(
    conn: psycopg.Connection[Any], operator_ids: Sequence[int], safety_minutes: float, minute_seconds: float
) -> list[float]:
    """Inside the transaction that finished these operators' syncs (next_poll_at already set
    by the normal interval). Returns the notification-to-commit latencies (seconds) of the
    notifications these syncs covered."""
    if not operator_ids:
        return []
    conn.execute(
        """
        UPDATE sync_state s
           SET next_poll_at = CASE
                   WHEN ps.last_event_at > s.last_poll_at THEN now()
                   WHEN a.id IS NOT NULL
                        AND COALESCE(a.last_heard_at, a.subscribed_at)
                            >= now() - make_interval(secs => 2 * a.status_frequency_minutes * %(m)s)
                   THEN GREATEST(s.next_poll_at, s.last_poll_at + make_interval(secs => %(safety)s * 60))
                   ELSE s.next_poll_at END
          FROM push_status ps
          LEFT JOIN push_subscriptions a ON a.operator_id = ps.operator_id AND a.state = 'active'
         WHERE ps.operator_id = s.operator_id AND s.operator_id = ANY(%(ops)s)
        """,
        {"ops": list(operator_ids), "safety": safety_minutes, "m": minute_seconds},
    )
    rows = conn.execute(
        """
        WITH covered AS (
            SELECT ps.operator_id, ps.first_pending_at AS was,
                   CASE WHEN ps.last_event_at > s.last_poll_at THEN ps.last_event_at END AS still
              FROM push_status ps JOIN sync_state s ON s.operator_id = ps.operator_id
             WHERE ps.operator_id = ANY(%(ops)s) AND ps.first_pending_at <= s.last_poll_at
               FOR UPDATE OF ps
        )
        UPDATE push_status ps SET first_pending_at = covered.still
          FROM covered WHERE covered.operator_id = ps.operator_id
        RETURNING extract(epoch FROM clock_timestamp() - covered.was) AS secs
        """,
        {"ops": list(operator_ids)},
    ).fetchall()
    return [float(r["secs"]) for r in rows]


def make_due(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> int:
    """A catch-up sync at the dispatcher's next tick (or at once, if the caller kicks it)."""
    if not operator_ids:
        return 0
    cur = conn.execute(
        "UPDATE sync_state SET next_poll_at = now(), updated_at = now() "
        "WHERE operator_id = ANY(%s) AND next_poll_at > now()",
        (list(operator_ids),),
    )
    return cur.rowcount


def owed_and_idle(conn: psycopg.Connection[Any], older_than_seconds: float) -> list[int]:
    """Operators owed a sync for a while with nothing running: their kick was lost."""
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
