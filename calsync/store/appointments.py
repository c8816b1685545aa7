"""The CRM calendar tables: reading change keys and applying a batch plan.

Upserts key on (operator_id, item_id) and only touch a row whose change key differs, so a
batch replayed after a crash writes nothing and `synced_at` keeps telling when calsync last
really changed the row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from calsync.sync.model import Appointment, BatchPlan

_COLUMNS = (
    "item_id, change_key, kind, series_item_id, original_start, uid, subject, body, body_type, "
    "location, start_at, end_at, timezone, is_all_day, start_date, end_date, is_cancelled, "
    "sensitivity, details_withheld, show_as, organizer_email, organizer_name, is_organizer, "
    "recurrence, exchange_created_at, exchange_modified_at"
)
_NCOLS = len(_COLUMNS.split(","))
_UPDATE_SET = ", ".join(f"{c.strip()} = EXCLUDED.{c.strip()}" for c in _COLUMNS.split(",") if c.strip() != "item_id")
UPSERT_SQL = (
    f"INSERT INTO appointments (operator_id, {_COLUMNS}, synced_at) "
    f"VALUES (%s, {', '.join(['%s'] * _NCOLS)}, now()) "
    f"ON CONFLICT (operator_id, item_id) DO UPDATE SET {_UPDATE_SET}, synced_at = now() "
    "WHERE appointments.change_key IS DISTINCT FROM EXCLUDED.change_key "
    "RETURNING id, item_id, (xmax = 0) AS inserted"
)


@dataclass(frozen=True, slots=True)
class WriteCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0


def _row(operator_id: int, a: Appointment) -> tuple[Any, ...]:
    return (
        operator_id,
        a.item_id,
        a.change_key,
        a.kind.value,
        a.series_item_id,
        a.original_start,
        a.uid,
        a.subject,
        a.body,
        a.body_type,
        a.location,
        a.start,
        a.end,
        a.timezone,
        a.is_all_day,
        a.start_date,
        a.end_date,
        a.is_cancelled,
        a.sensitivity,
        a.details_withheld,
        a.show_as,
        a.organizer_email,
        a.organizer_name,
        a.is_organizer,
        Jsonb(a.recurrence) if a.recurrence is not None else None,
        a.exchange_created_at,
        a.exchange_modified_at,
    )


def known_change_keys(conn: psycopg.Connection[Any], operator_id: int, item_ids: Iterable[str]) -> dict[str, str]:
    ids = list(dict.fromkeys(item_ids))
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT item_id, change_key FROM appointments WHERE operator_id = %s AND item_id = ANY(%s)",
        (operator_id, ids),
        prepare=True,
    ).fetchall()
    return {r["item_id"]: r["change_key"] for r in rows}


def upsert(conn: psycopg.Connection[Any], operator_id: int, appts: Sequence[Appointment]) -> tuple[int, int]:
    """Insert or update rows whose change key changed; returns (created, updated)."""
    if not appts:
        return 0, 0
    created = updated = 0
    by_id = {a.item_id: a for a in appts}
    written: list[tuple[int, Appointment]] = []
    with conn.cursor() as cur:
        cur.executemany(UPSERT_SQL, [_row(operator_id, a) for a in by_id.values()], returning=True)
        while True:
            for rec in cur.fetchall():
                written.append((rec["id"], by_id[rec["item_id"]]))
                if rec["inserted"]:
                    created += 1
                else:
                    updated += 1
            if not cur.nextset():
                break
        if written:
            updated_ids = [row_id for row_id, _ in written]
            cur.execute("DELETE FROM appointment_attendees WHERE appointment_id = ANY(%s)", (updated_ids,))
            att_rows = [
                (row_id, pos, att.email, att.name, att.role, att.response)
                for row_id, a in written
                for pos, att in enumerate(a.attendees)
            ]
            if att_rows:
                with cur.copy(
                    "COPY appointment_attendees (appointment_id, position, email, name, role, response) FROM STDIN"
                ) as copy:
                    for r in att_rows:
                        copy.write_row(r)
    return created, updated


def delete_items(conn: psycopg.Connection[Any], operator_id: int, item_ids: Sequence[str]) -> int:
    """Delete rows by item id; a series takes its occurrences and exceptions with it."""
    if not item_ids:
        return 0
    cur = conn.execute(
        "DELETE FROM appointments WHERE operator_id = %s AND (item_id = ANY(%s) OR series_item_id = ANY(%s))",
        (operator_id, list(item_ids), list(item_ids)),
    )
    return cur.rowcount


def apply_plan(conn: psycopg.Connection[Any], operator_id: int, plan: BatchPlan) -> WriteCounts:
    created, updated = upsert(conn, operator_id, plan.upserts)
    deleted = delete_items(conn, operator_id, plan.deletes)
    return WriteCounts(created=created, updated=updated, deleted=deleted)


def mark_seen(conn: psycopg.Connection[Any], operator_id: int, generation: int, item_ids: Sequence[str]) -> None:
    if not item_ids:
        return
    conn.execute(
        "INSERT INTO resync_seen (operator_id, generation, item_id) "
        "SELECT %s, %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (operator_id, generation, list(item_ids)),
    )


def sweep_unseen(conn: psycopg.Connection[Any], operator_id: int, generation: int) -> int:
    """End of a full sync: remove every singles/series row Exchange did not list, then forget the list.

    Occurrences and exceptions go with their series (their ids are derived, never listed).
    """
    cur = conn.execute(
        """
        DELETE FROM appointments a
        WHERE a.operator_id = %(op)s
          AND NOT EXISTS (
            SELECT 1 FROM resync_seen s
            WHERE s.operator_id = %(op)s AND s.generation = %(gen)s
              AND s.item_id = COALESCE(a.series_item_id, a.item_id))
        """,
        {"op": operator_id, "gen": generation},
    )
    conn.execute("DELETE FROM resync_seen WHERE operator_id = %s", (operator_id,))
    return cur.rowcount
