"""The sync lifecycle of an operator: the only module that writes `sync_state` (and `sync_runs`).

Every transition is one named function here; docs/lifecycle.md has the table (status x event
-> status) and says who fences what. The rules every function keeps:

- A worker acts on an operator only under a lease: a fencing token from `lease_token_seq`,
  handed out by `claim_due` (the dispatcher) or `renew` (every batch). Each renewal makes the
  token it was given the *previous* token; a batch delivered again after it committed may
  continue with it (`prev_lease_token`), nothing older may.
- Every write a worker makes names its token in its WHERE clause: a write under a stale
  token changes nothing (functions return False/None/0) or raises LeaseLost. The batch's
  rows are written after `fence`, a `SELECT ... FOR UPDATE` under the token, in the same
  transaction: that row lock is what keeps a stale batch from committing beside a live one.
- Administrative transitions (enable, disable, purge, a new mailbox address, sync now) are
  not fenced: they win over any batch in flight, whose next fenced write then fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import psycopg

from calsync.operators.emails import key as email_key


class Status(StrEnum):
    """What an administrator sees per operator (`calsync status`, metrics, the console)."""

    NOT_SYNCED = "not_synced"
    INITIAL_SYNC = "initial_sync"
    ACTIVE = "active"
    RETRYING = "retrying"
    FAILED = "failed"
    DISABLED = "disabled"


class Stage(StrEnum):
    """Where the operator's mirror stands: first full sync, change by change, or a full resync."""

    INITIAL = "initial"
    INCREMENTAL = "incremental"
    RESYNC = "resync"


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
MESSAGE_LIMIT = 2000


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


class Claim(NamedTuple):
    operator_id: int
    token: int
    # In sync and healthy: its poll can go in a chunk (calsync.runner.chunk); otherwise
    # (first sync, resync, failing) it runs as its own chain of batches.
    quiet: bool
    # It was still in flight under an expired lease: its previous message outlived the lease
    # (a killed worker, or a queue deeper than the fleet drains; calsync.backpressure).
    reclaimed: bool = False


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


@dataclass(frozen=True, slots=True)
class PageCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0


def _interval(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# Claims and leases
# ---------------------------------------------------------------------------------------------


def claim_due(conn: psycopg.Connection[Any], slack_seconds: float, lease_seconds: float, limit: int) -> list[Claim]:
    """The dispatcher's claim: up to `limit` due, enabled, unleased operators get a fresh token.

    Most overdue first (`next_poll_at`; a failing operator's retry time is its next poll), so
    a limit set by backpressure (calsync.backpressure) delays the least urgent.

    One UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED): two dispatchers (a lock race
    between beats) can never claim the same operator twice.
    """
    rows = conn.execute(
        """
        WITH due AS (
            SELECT s.operator_id, s.in_flight AS reclaimed
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
                  s.stage = 'incremental' AND s.status = 'active' AND s.failing_since IS NULL AS quiet,
                  due.reclaimed
        """,
        {"slack": slack_seconds, "lease": lease_seconds, "limit": limit},
    ).fetchall()
    return [Claim(r["operator_id"], r["lease_token"], r["quiet"], r["reclaimed"]) for r in rows]


def renew(
    conn: psycopg.Connection[Any], operator_id: int, token: int | None, owner: str, ttl_seconds: float
) -> OperatorState | None:
    """Renew the lease held under `token` (or take a free/expired one when token is None).

    `token` may also be the previous token: that is a batch delivered again after it
    committed, and continuing is safe because the work is idempotent and the commit is
    fenced by the token handed out here. A lease that is no longer in flight (the chain
    ended) is not renewed. A first batch moves a never-synced operator to `initial_sync`.

    Returns None when the operator is not ours to sync: disabled, or leased to someone else.
    """
    if token is None:
        # A fresh lease: whatever token the last (expired) holder had is worthless from now on.
        guard = "AND (NOT s.in_flight OR s.lease_expires_at IS NULL OR s.lease_expires_at < now())"
        first = ", last_poll_at = now()"
        previous = "NULL"
        params: dict[str, Any] = {"op": operator_id}
    else:
        # Only a lease still in flight: a chain that ended (finished, failed, stood back,
        # released) is not taken up again by a late duplicate of its last message.
        guard = "AND s.in_flight AND %(token)s IN (s.lease_token, s.prev_lease_token)"
        first = ""
        previous = "s.lease_token"
        params = {"op": operator_id, "token": token}
    params.update(owner=owner, ttl=_interval(ttl_seconds))
    row = conn.execute(
        f"""
        UPDATE sync_state s
           SET prev_lease_token = {previous}, lease_token = nextval('lease_token_seq'), lease_owner = %(owner)s,
               lease_expires_at = now() + %(ttl)s, in_flight = true, updated_at = now(),
               status = CASE WHEN s.stage = 'initial' AND s.status IN ('not_synced', 'disabled')
                             THEN 'initial_sync' ELSE s.status END{first}
          FROM operators o
         WHERE s.operator_id = %(op)s AND o.id = s.operator_id AND o.calendar_sync {guard}
        RETURNING s.operator_id, o.email, s.ews_sync_state AS cursor, s.stage, s.status, s.generation,
                  s.lease_token, s.current_run_id AS run_id
        """,
        params,
    ).fetchone()
    return OperatorState(**row) if row else None


def leased(conn: psycopg.Connection[Any], claims: Sequence[tuple[int, int]]) -> list[PollTarget]:
    """The claimed operators a poll chunk may still poll, in the order given (a read).

    Left out: a lease that moved on (the dispatcher re-claimed an overdue operator), an
    operator disabled since, or one already settled (a chunk delivered twice). The token
    before the current one is accepted: that chunk's batch committed and its worker died
    before handing on, and the batch code continues such a chain safely.
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


def fence(conn: psycopg.Connection[Any], operator_id: int, token: int) -> None:
    """Inside a batch's transaction: hold the row, or raise LeaseLost if the token is stale.

    This row lock is the fence: a batch whose lease was taken over blocks here or fails here,
    never writes beside the new holder.
    """
    row = conn.execute(
        "SELECT 1 FROM sync_state WHERE operator_id = %s AND lease_token = %s FOR UPDATE",
        (operator_id, token),
    ).fetchone()
    if row is None:
        raise LeaseLost(f"operator {operator_id}: lease token {token} is no longer current")


def lock(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> None:
    """Wait for any batch transaction in progress on these operators, in id order (no deadlock)."""
    conn.execute(
        "SELECT operator_id FROM sync_state WHERE operator_id = ANY(%s) ORDER BY operator_id FOR UPDATE",
        (list(operator_ids),),
    )


def release(
    conn: psycopg.Connection[Any],
    operator_id: int,
    token: int,
    code: str,
    message: str,
    retry_in_seconds: float,
) -> bool:
    """Give the lease back without success (a task stopped by its time limit), noting why.

    The operator counts as failing (so a mailbox that always overruns ends `failed`, with an
    email, after the notification timeout) and is due again after `retry_in_seconds`.
    Returns False when the token was stale (nothing changed).
    """
    cur = conn.execute(
        """
        UPDATE sync_state
           SET in_flight = false, lease_expires_at = NULL, lease_owner = NULL,
               status = CASE WHEN status IN ('not_synced', 'initial_sync', 'active') THEN 'retrying'
                             ELSE status END,
               attempts = attempts + 1, failing_since = COALESCE(failing_since, now()),
               last_error_code = %(code)s, last_error_message = %(msg)s,
               next_poll_at = now() + make_interval(secs => %(secs)s), updated_at = now()
         WHERE operator_id = %(op)s AND lease_token = %(token)s
        """,
        {"code": code, "msg": message[:MESSAGE_LIMIT], "secs": retry_in_seconds, "op": operator_id, "token": token},
    )
    return cur.rowcount == 1


def release_in_flight(conn: psycopg.Connection[Any], claimed_before: dt.datetime | None = None) -> list[int]:
    """Give back every lease taken before `claimed_before` (default: this transaction's start).

    For when the broker lost its data (FLUSHDB, a restart without persistence, a failover to
    an empty replica): the message carrying such a lease may be gone, and its chain would
    otherwise wait out the whole lease. Nothing failed, so nothing is counted (no attempt, no
    failure episode); the operator keeps its status and its `next_poll_at`, so the dispatcher
    claims it again at once. A batch still running under such a lease loses it: its next
    fenced write fails with LeaseLost, and the new holder does that batch again, idempotently.
    Returns the operators released.
    """
    rows = conn.execute(
        """
        UPDATE sync_state
           SET in_flight = false, lease_expires_at = NULL, lease_owner = NULL, updated_at = now()
         WHERE in_flight AND last_poll_at < COALESCE(%(before)s::timestamptz, now())
        RETURNING operator_id
        """,
        {"before": claimed_before},
    ).fetchall()
    return sorted(r["operator_id"] for r in rows)


# ---------------------------------------------------------------------------------------------
# Runs and pages
# ---------------------------------------------------------------------------------------------


def start_run(conn: psycopg.Connection[Any], state: OperatorState) -> int:
    """The run row of this sync (created by its first batch, reused by the others)."""
    if state.run_id is not None:
        return state.run_id
    row = conn.execute(
        """
        WITH run AS (
            INSERT INTO sync_runs (operator_id, stage)
            SELECT %(op)s, %(stage)s WHERE EXISTS (
                SELECT 1 FROM sync_state WHERE operator_id = %(op)s AND lease_token = %(token)s)
            RETURNING id
        )
        UPDATE sync_state s SET current_run_id = run.id FROM run
         WHERE s.operator_id = %(op)s AND s.lease_token = %(token)s
        RETURNING run.id
        """,
        {"op": state.operator_id, "stage": state.stage, "token": state.lease_token},
    ).fetchone()
    if row is None:
        raise LeaseLost(f"operator {state.operator_id}: lease token {state.lease_token} is no longer current")
    return int(row["id"])


def commit_page(
    conn: psycopg.Connection[Any], operator_id: int, token: int, run_id: int, cursor: str, counts: PageCounts
) -> None:
    """A page's rows were written: store the cursor that produced them, in the same transaction."""
    cur = conn.execute(
        """
        UPDATE sync_state SET ews_sync_state = %(cursor)s, batches_total = batches_total + 1,
               items_created = items_created + %(c)s, items_updated = items_updated + %(u)s,
               items_deleted = items_deleted + %(d)s, updated_at = now()
         WHERE operator_id = %(op)s AND lease_token = %(token)s
        """,
        {"cursor": cursor, "c": counts.created, "u": counts.updated, "d": counts.deleted, "op": operator_id,
         "token": token},
    )  # fmt: skip
    if cur.rowcount != 1:
        raise LeaseLost(f"operator {operator_id}: lease token {token} is no longer current")
    conn.execute(
        """
        UPDATE sync_runs SET batches = batches + 1, created = created + %(c)s, updated = updated + %(u)s,
               deleted = deleted + %(d)s, unchanged = unchanged + %(n)s
         WHERE id = %(run)s
        """,
        {"c": counts.created, "u": counts.updated, "d": counts.deleted, "n": counts.unchanged, "run": run_id},
    )


_NEXT_POLL = (
    # The interval counts from when the poll was claimed, so a mailbox is polled every
    # interval, not every interval plus its own sync time.
    "GREATEST(now(), COALESCE({s}last_poll_at, now()) + make_interval(secs => %(secs)s))"
)


def finish(
    conn: psycopg.Connection[Any], operator_id: int, token: int, run_id: int, poll_interval_minutes: float
) -> float | None:
    """Last batch: the mailbox is in sync (a first sync or a resync ends here too); release the
    lease, clear the failure, schedule the next poll.

    Returns how long the run took (seconds), for the run-duration metric.
    """
    cur = conn.execute(
        f"""
        UPDATE sync_state SET stage = 'incremental', status = 'active', in_flight = false,
               lease_expires_at = NULL, lease_owner = NULL, current_run_id = NULL,
               last_success_at = now(), attempts = 0, failing_since = NULL, polls_total = polls_total + 1,
               last_error_code = NULL, last_error_message = NULL,
               next_poll_at = {_NEXT_POLL.format(s="")}, updated_at = now()
         WHERE operator_id = %(op)s AND lease_token = %(token)s
        """,
        {"op": operator_id, "token": token, "secs": poll_interval_minutes * 60.0},
    )
    if cur.rowcount != 1:
        raise LeaseLost(f"operator {operator_id}: lease token {token} is no longer current")
    row = conn.execute(
        "UPDATE sync_runs SET status = 'succeeded', finished_at = now() WHERE id = %s "
        "RETURNING extract(epoch FROM finished_at - started_at) AS secs",
        (run_id,),
    ).fetchone()
    return float(row["secs"]) if row and row["secs"] is not None else None


def settle_quiet(conn: psycopg.Connection[Any], polls: Sequence[QuietPoll], poll_interval_minutes: float) -> int:
    """Polls that found nothing (a chunk's): store the cursor, release, schedule the next poll.

    One UPDATE for the whole chunk, fenced per row by the token the chunk was handed. An
    empty poll writes no sync_runs row (28.8 million a day at 100,000 mailboxes), only
    `polls_total`. Returns how many rows were still leased to their poll (the others lost
    their lease meanwhile and are left to whoever holds it now).
    """
    if not polls:
        return 0
    cur = conn.execute(
        f"""
        UPDATE sync_state s
           SET ews_sync_state = q.cursor, in_flight = false, lease_expires_at = NULL, lease_owner = NULL,
               status = 'active', last_success_at = now(), polls_total = s.polls_total + 1,
               next_poll_at = {_NEXT_POLL.format(s="s.")}, updated_at = now()
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


def start_resync(conn: psycopg.Connection[Any], operator_id: int, token: int) -> None:
    """The cursor is unusable: a new full-sync generation; the mirror stays readable meanwhile.

    It ends in `finish`, after the batch code swept what the new generation did not see.
    """
    cur = conn.execute(
        """
        UPDATE sync_state SET ews_sync_state = NULL, stage = 'resync', generation = generation + 1,
               updated_at = now()
         WHERE operator_id = %s AND lease_token = %s
        """,
        (operator_id, token),
    )
    if cur.rowcount != 1:
        raise LeaseLost(f"operator {operator_id}: lease token {token} is no longer current")
    conn.execute("DELETE FROM resync_seen WHERE operator_id = %s", (operator_id,))


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------


def fail_transient(
    conn: psycopg.Connection[Any], operator_id: int, token: int, code: str, message: str, hold_seconds: float
) -> tuple[dt.datetime, int] | None:
    """A batch failed and will be retried under the same lease: keep the lease long enough for
    the retry (`hold_seconds`) and note the error; the failure episode starts here.

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
        {"code": code, "msg": message[:MESSAGE_LIMIT], "hold": hold_seconds, "op": operator_id, "token": token},
    ).fetchone()
    return (row["failing_since"], int(row["attempts"])) if row else None


def fail(
    conn: psycopg.Connection[Any], operator_id: int, token: int, code: str, message: str, recheck_minutes: float
) -> bool:
    """Give up for now (a permanent failure, or the notification timeout passed): release the
    lease, keep the mirror, close the run as failed, look again after `recheck_minutes`.

    Returns False when the lease was no longer ours (nothing changed).
    """
    row = conn.execute(
        """
        WITH before AS (SELECT current_run_id FROM sync_state WHERE operator_id = %(op)s AND lease_token = %(token)s)
        UPDATE sync_state s SET status = 'failed', in_flight = false, lease_expires_at = NULL,
               lease_owner = NULL, attempts = attempts + 1, failing_since = COALESCE(failing_since, now()),
               last_error_code = %(code)s, last_error_message = %(msg)s, current_run_id = NULL,
               next_poll_at = now() + make_interval(secs => %(secs)s), updated_at = now()
          FROM before
         WHERE s.operator_id = %(op)s AND s.lease_token = %(token)s
        RETURNING before.current_run_id
        """,
        {"code": code, "msg": message[:MESSAGE_LIMIT], "secs": recheck_minutes * 60.0, "op": operator_id,
         "token": token},
    ).fetchone()  # fmt: skip
    if row is None:
        return False
    if row["current_run_id"] is not None:
        conn.execute(
            "UPDATE sync_runs SET status = 'failed', finished_at = now(), error_code = %s, error_message = %s "
            "WHERE id = %s",
            (code, message[:MESSAGE_LIMIT], row["current_run_id"]),
        )
    return True


def stand_back(
    conn: psycopg.Connection[Any],
    operator_id: int,
    token: int | None,
    until: dt.datetime,
    since: dt.datetime,
    code: str,
    message: str,
    attempted: bool,
) -> bool:
    """A global pause holds (calsync.store.pause): give the lease back untouched, due again at
    `until`, marked with the pause's code. `attempted`: this batch's own request met the
    global failure (it counts as an attempt). Returns False when the token was stale.
    """
    if token is None:
        return False
    cur = conn.execute(
        """
        UPDATE sync_state
           SET in_flight = false, lease_expires_at = NULL, lease_owner = NULL, next_poll_at = %(until)s,
               status = CASE WHEN status IN ('failed', 'disabled') THEN status ELSE 'retrying' END,
               failing_since = COALESCE(failing_since, %(since)s),
               attempts = attempts + %(tried)s,
               last_error_code = CASE WHEN status = 'failed' THEN last_error_code ELSE %(code)s END,
               last_error_message = CASE WHEN status = 'failed' THEN last_error_message ELSE %(msg)s END,
               updated_at = now()
         WHERE operator_id = %(op)s AND lease_token = %(token)s
        """,
        {
            "until": until,
            "since": since,
            "tried": 1 if attempted else 0,
            "code": code,
            "msg": message[:MESSAGE_LIMIT],
            "op": operator_id,
            "token": token,
        },
    )
    return cur.rowcount == 1


def fail_paused(conn: psycopg.Connection[Any], code: str) -> int:
    """A global pause lasted the notification timeout: the operators it stopped are failed with
    its code (the seed: cancel, mark, email). Returns how many."""
    return conn.execute(
        "UPDATE sync_state SET status = 'failed', updated_at = now() WHERE status = 'retrying' AND last_error_code = %s",
        (code,),
    ).rowcount


def resume_paused(conn: psycopg.Connection[Any], code: str) -> int:
    """The global pause with `code` ended: the operators it stopped are due now, their failure
    forgotten. Returns how many."""
    return conn.execute(
        """
        UPDATE sync_state SET next_poll_at = now(), failing_since = NULL, attempts = 0,
               last_error_code = NULL, last_error_message = NULL,
               status = CASE WHEN last_success_at IS NULL THEN 'not_synced' ELSE 'active' END,
               updated_at = now()
         WHERE last_error_code = %s AND status IN ('retrying', 'failed') AND NOT in_flight
        """,
        (code,),
    ).rowcount


# ---------------------------------------------------------------------------------------------
# Administration (not fenced: an administrator's decision wins over a batch in flight)
# ---------------------------------------------------------------------------------------------


def _cancel_runs(conn: psycopg.Connection[Any], operator_ids: Sequence[int], disabled_only: bool = False) -> None:
    """Close the run rows an administrative transition interrupts (their batches are fenced
    out), so the next sync starts a run of its own with the right stage."""
    conn.execute(
        """
        WITH cut AS (
            UPDATE sync_state s SET current_run_id = NULL
              FROM operators o
             WHERE o.id = s.operator_id AND s.operator_id = ANY(%(ids)s) AND s.current_run_id IS NOT NULL
               AND (NOT %(disabled_only)s OR NOT o.calendar_sync)
            RETURNING s.operator_id
        )
        UPDATE sync_runs r SET status = 'cancelled', finished_at = now()
          FROM cut WHERE r.operator_id = cut.operator_id AND r.status = 'running'
        """,
        {"ids": list(operator_ids), "disabled_only": disabled_only},
    )


def disable(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> int:
    """Operators whose Calendar Sync flag is off: status disabled, lease revoked (a batch in
    flight fails its next fenced write), its run cancelled. Idempotent. Returns how many rows
    changed."""
    _cancel_runs(conn, operator_ids, disabled_only=True)
    return conn.execute(
        """
        UPDATE sync_state s SET status = 'disabled', in_flight = false, lease_token = NULL, prev_lease_token = NULL,
               lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
          FROM operators o
         WHERE o.id = s.operator_id AND NOT o.calendar_sync
           AND (s.status <> 'disabled' OR s.in_flight) AND s.operator_id = ANY(%s)
        """,
        (list(operator_ids),),
    ).rowcount


def enable(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> int:
    """Operators whose Calendar Sync flag is on again: due now; a mirror with a cursor continues
    incrementally, one without starts its first sync. Idempotent. Returns how many changed."""
    return conn.execute(
        """
        UPDATE sync_state s SET
               status = CASE WHEN s.last_success_at IS NULL OR s.ews_sync_state IS NULL
                             THEN 'not_synced' ELSE 'active' END,
               attempts = 0, failing_since = NULL, next_poll_at = now(), updated_at = now()
          FROM operators o
         WHERE o.id = s.operator_id AND o.calendar_sync AND s.status = 'disabled' AND s.operator_id = ANY(%s)
        """,
        (list(operator_ids),),
    ).rowcount


def reconcile(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> tuple[int, int]:
    """Bring sync_state in line with operators.calendar_sync; returns (disabled, enabled)."""
    return disable(conn, operator_ids), enable(conn, operator_ids)


def restart_from_scratch(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> int:
    """The mirror was purged: the next sync is a first sync (a new generation, so resync_seen
    rows of an interrupted full sync cannot count for it); a lease in flight is revoked and its
    run cancelled. Returns how many rows changed."""
    conn.execute("DELETE FROM resync_seen WHERE operator_id = ANY(%s)", (list(operator_ids),))
    _cancel_runs(conn, operator_ids)
    return conn.execute(
        """
        UPDATE sync_state SET ews_sync_state = NULL, stage = 'initial', generation = generation + 1,
               in_flight = false, lease_token = NULL, prev_lease_token = NULL, lease_owner = NULL,
               lease_expires_at = NULL, updated_at = now()
         WHERE operator_id = ANY(%s)
        """,
        (list(operator_ids),),
    ).rowcount


def new_mailbox(conn: psycopg.Connection[Any], operator_id: int) -> None:
    """The operator's address changed: a different mailbox, so the cursor is worthless.

    A full resync (which removes at its end every row the new mailbox does not have), or a
    first sync when nothing is mirrored yet; the lease is revoked, its run cancelled, and the
    operator is due now.
    """
    _cancel_runs(conn, [operator_id])
    conn.execute(
        """
        UPDATE sync_state s SET
            ews_sync_state = NULL,
            stage = CASE WHEN EXISTS (SELECT 1 FROM appointments a WHERE a.operator_id = s.operator_id)
                         THEN 'resync' ELSE 'initial' END,
            generation = generation + 1,
            status = CASE WHEN s.status = 'disabled' THEN 'disabled' ELSE 'not_synced' END,
            in_flight = false, lease_token = NULL, prev_lease_token = NULL, lease_owner = NULL,
            lease_expires_at = NULL, attempts = 0, failing_since = NULL, next_poll_at = now(), updated_at = now()
        WHERE s.operator_id = %s
        """,
        (operator_id,),
    )


def request_sync(conn: psycopg.Connection[Any], emails: list[str] | None) -> list[tuple[int, str]]:
    """Sync now: make operators due (all enabled ones when `emails` is None); a lease in flight
    is left alone. Returns (id, email) of those made due."""
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


# ---------------------------------------------------------------------------------------------
# Push (issue 15)
#
# A change notification is recorded in push_status.last_event_at (calsync.store.push); an
# operator is "owed" a sync while last_event_at > last_poll_at. last_poll_at is set by every
# claim before Exchange is read, and a notification is recorded after the change it reports,
# so a sync claimed after a notification was recorded has seen that change.
# ---------------------------------------------------------------------------------------------


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
    return None, _why_not_pushed(conn, operator_id)


def _why_not_pushed(conn: psycopg.Connection[Any], operator_id: int) -> str:
    why = conn.execute(
        """
        SELECT o.calendar_sync, ps.last_event_at > COALESCE(s.last_poll_at, '-infinity') AS owed
          FROM operators o JOIN sync_state s ON s.operator_id = o.id
          LEFT JOIN push_status ps ON ps.operator_id = o.id
         WHERE o.id = %s
        """,
        (operator_id,),
    ).fetchone()
    if why is None or not why["calendar_sync"]:
        return "disabled"
    if not why["owed"]:
        return "not_owed"
    # Owed but not claimed: a sync of it is running (or another kick holds its row this instant).
    return "in_flight"


def push_after_finish(
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
                   -- push healthy (calsync.store.push.HEALTHY_SQL): EWS heard within twice
                   -- StatusFrequency, Graph active and not expired
                   WHEN a.id IS NOT NULL
                        AND CASE WHEN a.mode = 'graph' THEN a.expires_at > now()
                                 ELSE COALESCE(a.last_heard_at, a.subscribed_at)
                                      >= now() - make_interval(secs => 2 * a.status_frequency_minutes * %(m)s) END
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
             ORDER BY ps.operator_id  -- the listener locks push_status rows in this order too
               FOR UPDATE OF ps
        ), done AS (
            UPDATE push_status ps SET first_pending_at = covered.still
              FROM covered WHERE covered.operator_id = ps.operator_id
            RETURNING ps.operator_id, greatest(extract(epoch FROM clock_timestamp() - covered.was), 0) AS secs
        ), kept AS (
            -- the console's history reads latency from Postgres (migration 0021)
            INSERT INTO push_latencies (operator_id, seconds) SELECT operator_id, secs FROM done
        )
        SELECT secs FROM done
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
