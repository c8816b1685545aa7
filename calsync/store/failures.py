"""Recording a failed batch on the operator's sync state.

`failing_since` marks the start of a failure episode and survives retries; the task layer
compares it with the notification frequency to decide when to give up and notify.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg


def record_retry(
    conn: psycopg.Connection[Any], operator_id: int, token: int, code: str, message: str, countdown: float
) -> tuple[dt.datetime, int] | None:
    """Keep the lease (the retry continues the chain) and note the error.

    Returns (failing_since, attempts), or None when the lease is no longer ours.
    """
    row = conn.execute(
        """
        UPDATE sync_state SET status = 'retrying', attempts = attempts + 1,
               failing_since = COALESCE(failing_since, now()), last_error_code = %(code)s,
               last_error_message = %(msg)s,
               lease_expires_at = now() + make_interval(secs => %(hold)s), updated_at = now()
         WHERE operator_id = %(op)s AND lease_token = %(token)s
        RETURNING failing_since, attempts
        """,
        {"code": code, "msg": message[:2000], "hold": countdown + 300.0, "op": operator_id, "token": token},
    ).fetchone()
    return (row["failing_since"], int(row["attempts"])) if row else None


def mark_failed(
    conn: psycopg.Connection[Any],
    operator_id: int,
    token: int | None,
    code: str,
    message: str,
    recheck_minutes: float,
) -> None:
    """Give up for now: release the lease, keep the mirror, look again after `recheck_minutes`."""
    conn.execute(
        """
        UPDATE sync_state SET status = 'failed', in_flight = false, lease_expires_at = NULL,
               lease_owner = NULL, attempts = attempts + 1, failing_since = COALESCE(failing_since, now()),
               last_error_code = %(code)s, last_error_message = %(msg)s,
               next_poll_at = now() + make_interval(secs => %(secs)s), updated_at = now()
         WHERE operator_id = %(op)s AND (%(token)s::bigint IS NULL OR lease_token = %(token)s)
        """,
        {"code": code, "msg": message[:2000], "secs": recheck_minutes * 60.0, "op": operator_id, "token": token},
    )
    conn.execute(
        """
        UPDATE sync_runs SET status = 'failed', finished_at = now(), error_code = %(code)s, error_message = %(msg)s
         WHERE id = (SELECT current_run_id FROM sync_state WHERE operator_id = %(op)s)
        """,
        {"code": code, "msg": message[:2000], "op": operator_id},
    )
    conn.execute("UPDATE sync_state SET current_run_id = NULL WHERE operator_id = %s", (operator_id,))
