"""Operators: their address, name and Calendar Sync flag, one by one or imported in bulk.

The flag lives on `operators`, but what workers act on is `sync_state`; every switch of the
flag, purge or new address is handed to calsync.store.lifecycle (disable: stop being polled
at once, lease revoked; enable: due again). Every function here runs on the caller's
connection and does not commit, so the CLI keeps one command = one transaction.

Re-enabling: an operator that never completed a sync, or whose sync state was purged,
goes to 'not_synced' (a first full sync follows); one that has a usable EWS sync state goes
to 'active' and resumes incrementally. Only 'disabled' rows are touched: an operator
enabled while failing or retrying keeps that status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from calsync.operators.csv_import import OperatorRow
from calsync.operators.emails import key as email_key
from calsync.store import lifecycle, refusals

# Serialises bulk imports: two large imports touching the same rows in different orders
# would otherwise deadlock. Arbitrary constant, unique to this purpose.
_IMPORT_LOCK_KEY = 0x0CA15_0001


class OperatorError(Exception):
    """A request about operators that cannot be done; str() is the one line to show."""


class OperatorExists(OperatorError):
    def __init__(self, email: str, existing: str) -> None:
        self.email, self.existing = email, existing
        same = "" if existing == email else f" as {existing} (addresses are case-insensitive)"
        super().__init__(f"an operator with email {email} already exists{same}")


class OperatorNotFound(OperatorError):
    def __init__(self, emails: Sequence[str]) -> None:
        self.emails = list(emails)
        super().__init__("no operator with email " + ", ".join(emails) + "; see `calsync operators list`")


@dataclass(frozen=True)
class Operator:
    id: int
    email: str
    display_name: str
    calendar_sync: bool
    status: str
    last_success_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    source: str | None = None  # ews | graph; None: the deployment's `source` setting

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.display_name,
            "calendar_sync": self.calendar_sync,
            "status": self.status,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "source": self.source,
        }


@dataclass(frozen=True)
class PlannedChange:
    """What an import does to one row, for --dry-run."""

    line: int
    email: str
    action: str  # new | updated | unchanged
    name: str
    calendar_sync: bool
    old_name: str | None = None
    old_calendar_sync: bool | None = None


@dataclass
class ImportResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    disabled: int = 0  # sync_state rows switched to 'disabled'
    enabled: int = 0  # sync_state rows switched from 'disabled' to due
    changes: list[PlannedChange] = field(default_factory=list)  # dry run only


_SELECT = """
    SELECT o.id, o.email, o.display_name, o.calendar_sync, s.status, s.last_success_at,
           o.created_at, o.updated_at, o.source
    FROM operators o JOIN sync_state s ON s.operator_id = o.id
"""


def _operator(row: Any) -> Operator:
    return Operator(**{k: row[k] for k in Operator.__dataclass_fields__})


def get(conn: psycopg.Connection[Any], email: str) -> Operator | None:
    row = conn.execute(_SELECT + " WHERE o.email_key = %s", (email_key(email),)).fetchone()
    return _operator(row) if row else None


def list_operators(conn: psycopg.Connection[Any], status: str | None = None) -> list[Operator]:
    query = _SELECT + (" WHERE s.status = %s" if status else "") + " ORDER BY o.email_key"
    return [_operator(r) for r in conn.execute(query, (status,) if status else ())]


def resolve(conn: psycopg.Connection[Any], emails: Iterable[str]) -> list[int]:
    """Operator ids for the emails, in order; all-or-nothing so a typo changes nobody."""
    wanted = list(dict.fromkeys(e.strip() for e in emails))
    rows = conn.execute(
        "SELECT id, email_key AS key FROM operators WHERE email_key = ANY(%s)",
        ([email_key(e) for e in wanted],),
    ).fetchall()
    ids = {r["key"]: r["id"] for r in rows}
    missing = [e for e in wanted if email_key(e) not in ids]
    if missing:
        raise OperatorNotFound(missing)
    return list(dict.fromkeys(ids[email_key(e)] for e in wanted))


def add(conn: psycopg.Connection[Any], email: str, name: str, calendar_sync: bool) -> Operator:
    """Create an operator; the insert trigger creates its sync_state (due when enabled)."""
    row = conn.execute(
        "INSERT INTO operators (email, email_key, display_name, calendar_sync) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (email_key) DO NOTHING RETURNING id",
        (email, email_key(email), name, calendar_sync),
    ).fetchone()
    if row is None:
        existing = get(conn, email)
        raise OperatorExists(email, existing.email if existing else email)
    created = get(conn, email)
    assert created is not None
    return created


def update(
    conn: psycopg.Connection[Any], email: str, name: str | None = None, new_email: str | None = None
) -> Operator:
    """Rename an operator or change its address.

    A different address is a different mailbox, so its EWS sync state is worthless: the
    operator gets a full resync (stage 'resync', which removes at its end every mirror row
    the new mailbox does not have). Changing only the case of the address changes nothing
    for Exchange and keeps the sync state.
    """
    [operator_id] = resolve(conn, [email])
    current = conn.execute(
        "SELECT email, display_name FROM operators WHERE id = %s FOR UPDATE", (operator_id,)
    ).fetchone()
    assert current is not None
    mailbox_changed = new_email is not None and email_key(new_email) != email_key(current["email"])
    if new_email is not None and mailbox_changed:
        other = get(conn, new_email)
        if other is not None:
            raise OperatorExists(new_email, other.email)
    target_email = new_email if new_email is not None else current["email"]
    target_name = name if name is not None else current["display_name"]
    if (target_email, target_name) != (current["email"], current["display_name"]):
        try:
            conn.execute(
                "UPDATE operators SET email = %s, email_key = %s, display_name = %s, updated_at = now() WHERE id = %s",
                (target_email, email_key(target_email), target_name, operator_id),
            )
        except psycopg.errors.UniqueViolation as exc:  # added by someone else meanwhile
            raise OperatorExists(target_email, target_email) from exc
    if mailbox_changed:
        lifecycle.new_mailbox(conn, operator_id)
    updated = get(conn, target_email)
    assert updated is not None
    return updated


def source_overrides(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Operators with a source of their own (lower-cased email -> ews|graph)."""
    rows = conn.execute("SELECT lower(email) AS email, source FROM operators WHERE source IS NOT NULL").fetchall()
    return {r["email"]: r["source"] for r in rows}


def source_of(conn: psycopg.Connection[Any], email: str) -> str | None:
    """One operator's own source (None: the `source` setting, or no such operator)."""
    row = conn.execute("SELECT source FROM operators WHERE lower(email) = lower(%s)", (email,)).fetchone()
    return row["source"] if row else None


def set_source(conn: psycopg.Connection[Any], ids: Sequence[int], source: str | None, default: str) -> int:
    """Give operators their own source (None: follow the setting); returns how many switched.

    An operator whose effective source changes is resynced from scratch: the other API's
    cursor means nothing, and its items come back under other ids. The resync matches them
    to the mirror's rows by iCalendar UID and original start (calsync.store.appointments.
    adopt_by_uid), so rows keep their ids.
    """
    if not ids:
        return 0
    lifecycle.lock(conn, ids)
    rows = conn.execute(
        """
        UPDATE operators o SET source = %(src)s, updated_at = now()
          FROM (SELECT id, COALESCE(source, %(default)s) AS was FROM operators WHERE id = ANY(%(ids)s)) old
         WHERE o.id = old.id
        RETURNING o.id, old.was <> COALESCE(%(src)s, %(default)s) AS switched
        """,
        {"src": source, "default": default, "ids": list(ids)},
    ).fetchall()
    switched = [r["id"] for r in rows if r["switched"]]
    for operator_id in switched:  # the other API's cursor means nothing: resync, due now
        lifecycle.new_mailbox(conn, operator_id)
    return len(switched)


def set_calendar_sync(conn: psycopg.Connection[Any], ids: Sequence[int], enabled: bool) -> int:
    """Switch the flag for these operators; returns how many operators actually changed."""
    lifecycle.lock(conn, ids)
    changed = conn.execute(
        "UPDATE operators SET calendar_sync = %s, updated_at = now() WHERE id = ANY(%s) AND calendar_sync <> %s",
        (enabled, list(ids), enabled),
    ).rowcount
    lifecycle.reconcile(conn, ids)
    return changed


def purge(conn: psycopg.Connection[Any], ids: Sequence[int]) -> int:
    """Drop the mirror of these operators and restart their sync from scratch; returns rows deleted.

    Attendees go with their appointments (ON DELETE CASCADE). The generation is bumped so
    resync_seen rows of an interrupted full sync cannot count for the next one.
    """
    lifecycle.lock(conn, ids)
    deleted = conn.execute("DELETE FROM appointments WHERE operator_id = ANY(%s)", (list(ids),)).rowcount
    refusals.purge(conn, ids)
    lifecycle.restart_from_scratch(conn, ids)
    return deleted


def import_rows(conn: psycopg.Connection[Any], rows: Sequence[OperatorRow], dry_run: bool = False) -> ImportResult:
    """Upsert checked rows in one statement; with dry_run nothing is written.

    COPY into a temporary table and one INSERT ... ON CONFLICT keep 100,000 rows to
    seconds; the WHERE on the conflict branch leaves unchanged operators (and their
    updated_at) alone, which makes importing the same file twice a no-op.
    """
    conn.execute(sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(_IMPORT_LOCK_KEY)))
    conn.execute(
        "CREATE TEMP TABLE operator_import (line integer NOT NULL, email text NOT NULL, email_key text NOT NULL, "
        "display_name text NOT NULL, calendar_sync boolean NOT NULL) ON COMMIT DROP"
    )
    columns = "line, email, email_key, display_name, calendar_sync"
    with conn.cursor().copy(f"COPY operator_import ({columns}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row((r.line, r.email, email_key(r.email), r.name, r.calendar_sync))
    conn.execute("ANALYZE operator_import")
    if dry_run:
        return _plan(conn)
    counts = conn.execute(
        """
        WITH up AS (
            INSERT INTO operators (email, email_key, display_name, calendar_sync)
            SELECT email, email_key, display_name, calendar_sync FROM operator_import ORDER BY line
            ON CONFLICT (email_key) DO UPDATE SET
                display_name = CASE WHEN EXCLUDED.display_name = '' THEN operators.display_name
                                    ELSE EXCLUDED.display_name END,
                calendar_sync = EXCLUDED.calendar_sync,
                updated_at = now()
            WHERE operators.calendar_sync <> EXCLUDED.calendar_sync
               OR (EXCLUDED.display_name <> '' AND operators.display_name <> EXCLUDED.display_name)
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS new, count(*) FILTER (WHERE NOT inserted) AS updated
        FROM up
        """
    ).fetchone()
    assert counts is not None
    imported = [
        r["id"]
        for r in conn.execute(
            "SELECT o.id FROM operators o JOIN operator_import i ON o.email_key = i.email_key ORDER BY o.id"
        )
    ]
    disabled, enabled = lifecycle.reconcile(conn, imported)
    _import_sources(conn, rows)
    return ImportResult(
        new=counts["new"],
        updated=counts["updated"],
        unchanged=len(rows) - counts["new"] - counts["updated"],
        disabled=disabled,
        enabled=enabled,
    )


def _import_sources(conn: psycopg.Connection[Any], rows: Sequence[OperatorRow]) -> None:
    """The optional `source` column: operators it names get that source (a switch resyncs them)."""
    wanted: dict[str, list[str]] = {}
    for r in rows:
        if r.source is not None:
            wanted.setdefault(r.source, []).append(r.email.lower())
    if not wanted:
        return
    from calsync.store import settings as settings_store

    default = settings_store.load(conn).source.value
    for source, emails in wanted.items():
        ids = [
            row["id"]
            for row in conn.execute(
                "SELECT id FROM operators WHERE lower(email) = ANY(%s) AND source IS DISTINCT FROM %s",
                (emails, source),
            )
        ]
        set_source(conn, ids, source, default)


def _plan(conn: psycopg.Connection[Any]) -> ImportResult:
    result = ImportResult()
    for r in conn.execute(
        """
        SELECT i.line, i.email, i.display_name, i.calendar_sync, o.id,
               o.display_name AS old_name, o.calendar_sync AS old_sync
        FROM operator_import i LEFT JOIN operators o ON o.email_key = i.email_key
        ORDER BY i.line
        """
    ):
        if r["id"] is None:
            action = "new"
        elif r["old_sync"] != r["calendar_sync"] or r["display_name"] not in ("", r["old_name"]):
            action = "updated"
        else:
            action = "unchanged"
        setattr(result, action, getattr(result, action) + 1)
        result.changes.append(
            PlannedChange(
                line=r["line"],
                email=r["email"],
                action=action,
                name=r["display_name"] or (r["old_name"] or ""),
                calendar_sync=r["calendar_sync"],
                old_name=r["old_name"],
                old_calendar_sync=r["old_sync"],
            )
        )
    return result
