"""The global pause: when the service account or the endpoint is broken, nobody calls Exchange.

One row in `global_pause` (Postgres, so it survives Redis restarts and `calsync status` can
show it). While `until` lies ahead every batch gives its lease back untouched, with its next
poll at `until`; the first batch after `until` claims the probe atomically (and pushes
`until` further out, doubling), so exactly one real request per period tests whether
Exchange is back. A probe that gets anything but a global error ends the pause. Without the
probe discipline, 401s from every operator could lock the service account out in AD.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from calsync.store import lifecycle

PAUSE_MIN_SECONDS = 2.0
PAUSE_MAX_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class Pause:
    code: str
    message: str
    since: dt.datetime
    until: dt.datetime
    probes: int


@dataclass(frozen=True, slots=True)
class Gate:
    kind: Literal["open", "probe", "paused"]
    pause: Pause | None = None


def period_seconds(poll_interval_minutes: float, probes: int) -> float:
    """Probe once per poll interval at first, doubling per failed probe up to 15 minutes."""
    base = min(max(poll_interval_minutes * 60.0, PAUSE_MIN_SECONDS), PAUSE_MAX_SECONDS)
    return min(base * (2 ** min(probes, 16)), max(base, PAUSE_MAX_SECONDS))


def _pause(row: dict[str, Any] | None) -> Pause | None:
    return Pause(**row) if row else None


def current(conn: psycopg.Connection[Any]) -> Pause | None:
    return _pause(conn.execute("SELECT code, message, since, until, probes FROM global_pause").fetchone())


def active(conn: psycopg.Connection[Any]) -> bool:
    """True while no batch may call Exchange (the dispatcher skips its tick)."""
    row = conn.execute("SELECT until > now() AS active FROM global_pause").fetchone()
    return bool(row and row["active"])


def gate(conn: psycopg.Connection[Any], poll_interval_minutes: float) -> Gate:
    """What a batch may do: go on, be the one probe of this period, or stand back."""
    row = conn.execute(
        "SELECT code, message, since, until, probes, until <= now() AS expired FROM global_pause"
    ).fetchone()
    if row is None:
        return Gate("open")
    expired = row.pop("expired")
    pause = Pause(**row)
    if expired:
        won = conn.execute(
            """
            UPDATE global_pause SET until = now() + make_interval(secs => %(period)s), probes = probes + 1
             WHERE until <= now()
            RETURNING code, message, since, until, probes
            """,
            {"period": period_seconds(poll_interval_minutes, pause.probes + 1)},
        ).fetchone()
        if won is not None:
            return Gate("probe", _pause(won))
        again = current(conn)
        if again is None:
            return Gate("open")
        pause = again
    return Gate("paused", pause)


def trip(conn: psycopg.Connection[Any], code: str, message: str, poll_interval_minutes: float) -> tuple[Pause, bool]:
    """A global failure: start the pause unless one runs. Returns (pause, started_now)."""
    row = conn.execute(
        """
        INSERT INTO global_pause (code, message, until)
        VALUES (%(code)s, %(msg)s, now() + make_interval(secs => %(period)s))
        ON CONFLICT (singleton) DO NOTHING
        RETURNING code, message, since, until, probes
        """,
        {"code": code, "msg": message[:2000], "period": period_seconds(poll_interval_minutes, 0)},
    ).fetchone()
    if row is not None:
        conn.execute(
            """
            INSERT INTO failure_episodes (operator_id, code, disposition, message)
            VALUES (NULL, %(code)s, 'global', %(msg)s)
            ON CONFLICT ((operator_id IS NULL)) WHERE recovered_at IS NULL AND operator_id IS NULL
            DO UPDATE SET last_failed_at = now(), attempts = failure_episodes.attempts + 1
            """,
            {"code": code, "msg": message[:2000]},
        )
        pause = _pause(row)
        assert pause is not None
        return pause, True
    conn.execute(
        "UPDATE failure_episodes SET last_failed_at = now(), attempts = attempts + 1 "
        "WHERE operator_id IS NULL AND recovered_at IS NULL"
    )
    pause = current(conn)
    assert pause is not None
    return pause, False


def stand_back(
    conn: psycopg.Connection[Any], operator_id: int, token: int | None, pause: Pause, attempted: bool
) -> None:
    """Give the lease back untouched; the operator is due again when the pause ends."""
    lifecycle.stand_back(conn, operator_id, token, pause.until, pause.since, pause.code, pause.message, attempted)


def due_for_alert(conn: psycopg.Connection[Any], timeout_minutes: float) -> bool:
    """The pause has lasted the notification timeout: its episode becomes owed an email (once).

    The operators it stopped are then failed with its code (the seed: cancel, mark, email).
    """
    row = conn.execute(
        """
        UPDATE failure_episodes
           SET failed_at = now(),
               operators_affected = (SELECT count(*) FROM operators WHERE calendar_sync)
         WHERE operator_id IS NULL AND recovered_at IS NULL AND failed_at IS NULL
           AND started_at <= now() - make_interval(secs => %(secs)s)
        RETURNING code
        """,
        {"secs": timeout_minutes * 60.0},
    ).fetchone()
    if row is None:
        return False
    lifecycle.fail_paused(conn, row["code"])
    return True


def clear(conn: psycopg.Connection[Any]) -> bool:
    """The probe got through: end the pause, make the paused operators due now.

    Returns True when a recovery email is owed (the outage was emailed).
    """
    row = conn.execute("DELETE FROM global_pause RETURNING code").fetchone()
    if row is None:
        return False
    lifecycle.resume_paused(conn, row["code"])
    episode = conn.execute(
        """
        UPDATE failure_episodes
           SET recovered_at = now(), recovery_notified_at = CASE WHEN notified_at IS NULL THEN now() END
         WHERE operator_id IS NULL AND recovered_at IS NULL
        RETURNING notified_at IS NOT NULL AS owed
        """
    ).fetchone()
    return bool(episode and episode["owed"])
