"""The two statements of a chunk of quiet polls (calsync.tasks.poll).

An operator that is in sync and healthy needs, per poll, only its cursor and, when
Exchange reports no change, a new due time. For a chunk of such operators both are one
statement each: the leased states are read together (the dispatcher's fencing token is
the lease; nothing is written until the end), and every poll that found nothing is
settled by one UPDATE, fenced per row by that same token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class PollTarget:
    operator_id: int
    email: str
    cursor: str | None
    token: int  # the token the chunk was handed
    current: bool  # the token is the current lease (not the one before it)


@dataclass(frozen=True, slots=True)
class QuietPoll:
    operator_id: int
    token: int
    cursor: str


def leased(conn: psycopg.Connection[Any], claims: Sequence[tuple[int, int]]) -> list[PollTarget]:
    """The claimed operators this chunk may still poll, in the order given.

    Left out: a lease that moved on (the dispatcher re-claimed an overdue operator), an
    operator disabled since, or one already settled (a chunk delivered twice). The token
    before the current one is accepted: that chunk's batch committed and its worker died
    before handing on, and calsync.runner continues such a chain safely.
    """
    if not claims:
        return []
    rows = conn.execute(
        """
        SELECT c.operator_id, o.email, s.ews_sync_state AS cursor, c.token, c.token = s.lease_token AS current
          FROM unnest(%(ops)s::bigint[], %(tokens)s::bigint[]) WITH ORDINALITY AS c (operator_id, token, n)
          JOIN sync_state s ON s.operator_id = c.operator_id
          JOIN operators o ON o.id = s.operator_id
         WHERE o.calendar_sync AND s.in_flight AND s.stage = 'incremental'
           AND c.token IN (s.lease_token, s.prev_lease_token)
         ORDER BY c.n
        """,
        {"ops": [op for op, _ in claims], "tokens": [t for _, t in claims]},
    ).fetchall()
    return [PollTarget(**r) for r in rows]


def settle_quiet(conn: psycopg.Connection[Any], polls: Sequence[QuietPoll], poll_interval_minutes: float) -> int:
    """Polls that found nothing: store the cursor, release the lease, schedule the next poll.

    Returns how many rows were still leased to their poll (the others lost their lease
    meanwhile and are left to whoever holds it now).
    """
    if not polls:
        return 0
    cur = conn.execute(
        """
        UPDATE sync_state s
           SET ews_sync_state = q.cursor, in_flight = false, lease_expires_at = NULL, lease_owner = NULL,
               status = 'active', last_success_at = now(), polls_total = s.polls_total + 1,
               -- As calsync.store.sync_state.finish_success: the interval counts from the claim.
               next_poll_at = GREATEST(now(), COALESCE(s.last_poll_at, now()) + make_interval(secs => %(secs)s)),
               updated_at = now()
          FROM unnest(%(ops)s::bigint[], %(tokens)s::bigint[], %(cursors)s::text[]) AS q (operator_id, token, cursor)
         WHERE s.operator_id = q.operator_id AND s.lease_token = q.token AND s.in_flight
        """,
        {
            "ops": [p.operator_id for p in polls],
            "tokens": [p.token for p in polls],
            "cursors": [p.cursor for p in polls],
            "secs": poll_interval_minutes * 60.0,
        },
    )
    return cur.rowcount
