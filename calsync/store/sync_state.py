"""Per-operator sync state: the lease that keeps two workers off one mailbox, and the fenced commit.

Every batch renews the lease and gets a NEW fencing token; the token it was handed becomes
worthless. A duplicate delivery of the same task (Redis visibility timeout, a worker killed
and its task re-queued) therefore finds its token stale and stops, and a batch whose lease
was taken over cannot commit: its final UPDATE matches no row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg


class LeaseLost(Exception):
    """Another worker holds this operator now; this batch must not write."""


@dataclass(frozen=True, slots=True)
class OperatorState:
    operator_id: int
    email: str
    cursor: str | None
    stage: str
    status: str
    generation: int
    lease_token: int
    run_id: int | None


_RETURNING = """
    RETURNING s.operator_id, o.email, s.ews_sync_state AS cursor, s.stage, s.status, s.generation,
              s.lease_token, s.current_run_id AS run_id
"""


def _state(row: dict[str, Any] | None) -> OperatorState | None:
    return OperatorState(**row) if row else None


def take_lease(
    conn: psycopg.Connection[Any], operator_id: int, token: int | None, owner: str, ttl_seconds: float
) -> OperatorState | None:
    """Renew the lease held under `token` (or take a free/expired one when token is None).

    `token` may also be the previous token: that is a batch delivered again after it
    committed, and continuing is safe because the work is idempotent and the commit is
    fenced by the token handed out here.

    Returns None when the operator is not ours to sync: disabled, or leased to someone else.
    """
    if token is None:
        guard = "AND (NOT s.in_flight OR s.lease_expires_at IS NULL OR s.lease_expires_at < now())"
        first = ", last_poll_at = now()"
        params: dict[str, Any] = {"op": operator_id}
    else:
        guard = "AND %(token)s IN (s.lease_token, s.prev_lease_token)"
        first = ""
        params = {"op": operator_id, "token": token}
    params.update(owner=owner, ttl=dt.timedelta(seconds=ttl_seconds))
    row = conn.execute(
        f"""
        UPDATE sync_state s
           SET prev_lease_token = s.lease_token, lease_token = nextval('lease_token_seq'), lease_owner = %(owner)s,
               lease_expires_at = now() + %(ttl)s, in_flight = true, updated_at = now(),
               status = CASE WHEN s.stage = 'initial' AND s.status IN ('not_synced', 'disabled')
                             THEN 'initial_sync' ELSE s.status END{first}
          FROM operators o
         WHERE s.operator_id = %(op)s AND o.id = s.operator_id AND o.calendar_sync {guard}
        {_RETURNING}
        """,
        params,
    ).fetchone()
    return _state(row)


def lock_fenced(conn: psycopg.Connection[Any], operator_id: int, token: int) -> None:
    """Inside the batch's transaction: hold the row, or raise LeaseLost if the token is stale."""
    row = conn.execute(
        "SELECT 1 FROM sync_state WHERE operator_id = %s AND lease_token = %s FOR UPDATE",
        (operator_id, token),
    ).fetchone()
    if row is None:
        raise LeaseLost(f"operator {operator_id}: lease token {token} is no longer current")


def ensure_run(conn: psycopg.Connection[Any], state: OperatorState) -> int:
    if state.run_id is not None:
        return state.run_id
    run_id = conn.execute(
        "INSERT INTO sync_runs (operator_id, stage) VALUES (%s, %s) RETURNING id",
        (state.operator_id, state.stage),
    ).fetchone()["id"]  # type: ignore[index]
    conn.execute("UPDATE sync_state SET current_run_id = %s WHERE operator_id = %s", (run_id, state.operator_id))
    return int(run_id)


def record_batch(
    conn: psycopg.Connection[Any],
    operator_id: int,
    run_id: int,
    cursor: str,
    created: int,
    updated: int,
    deleted: int,
    unchanged: int,
) -> None:
    conn.execute(
        """
        UPDATE sync_state SET ews_sync_state = %(cursor)s, batches_total = batches_total + 1,
               items_created = items_created + %(c)s, items_updated = items_updated + %(u)s,
               items_deleted = items_deleted + %(d)s, updated_at = now()
         WHERE operator_id = %(op)s
        """,
        {"cursor": cursor, "c": created, "u": updated, "d": deleted, "op": operator_id},
    )
    conn.execute(
        """
        UPDATE sync_runs SET batches = batches + 1, created = created + %(c)s, updated = updated + %(u)s,
               deleted = deleted + %(d)s, unchanged = unchanged + %(n)s
         WHERE id = %(run)s
        """,
        {"c": created, "u": updated, "d": deleted, "n": unchanged, "run": run_id},
    )


def finish_success(
    conn: psycopg.Connection[Any], operator_id: int, run_id: int, poll_interval_minutes: float
) -> float | None:
    """Last batch: the mailbox is in sync; release the lease and schedule the next poll.

    Returns how long the run took (seconds), for the run-duration metric.
    """
    conn.execute(
        """
        UPDATE sync_state SET stage = 'incremental', status = 'active', in_flight = false,
               lease_expires_at = NULL, lease_owner = NULL, current_run_id = NULL,
               last_success_at = now(), attempts = 0, failing_since = NULL, polls_total = polls_total + 1,
               last_error_code = NULL, last_error_message = NULL,
               -- The interval counts from when the poll was claimed, so a mailbox is polled
               -- every interval, not every interval plus its own sync time.
               next_poll_at = GREATEST(now(), COALESCE(last_poll_at, now()) + make_interval(secs => %(secs)s)),
               updated_at = now()
         WHERE operator_id = %(op)s
        """,
        {"op": operator_id, "secs": poll_interval_minutes * 60.0},
    )
    row = conn.execute(
        "UPDATE sync_runs SET status = 'succeeded', finished_at = now() WHERE id = %s "
        "RETURNING extract(epoch FROM finished_at - started_at) AS secs",
        (run_id,),
    ).fetchone()
    return float(row["secs"]) if row and row["secs"] is not None else None


def restart_full_sync(conn: psycopg.Connection[Any], operator_id: int) -> None:
    """The cursor is unusable: start a resync generation; the mirror stays readable meanwhile."""
    conn.execute(
        """
        UPDATE sync_state SET ews_sync_state = NULL, stage = 'resync', generation = generation + 1,
               updated_at = now()
         WHERE operator_id = %s
        """,
        (operator_id,),
    )
    conn.execute("DELETE FROM resync_seen WHERE operator_id = %s", (operator_id,))


def release(conn: psycopg.Connection[Any], operator_id: int, token: int) -> None:
    """Give the lease back without success (the caller records why)."""
    conn.execute(
        """
        UPDATE sync_state SET in_flight = false, lease_expires_at = NULL, lease_owner = NULL, updated_at = now()
         WHERE operator_id = %s AND lease_token = %s
        """,
        (operator_id, token),
    )
