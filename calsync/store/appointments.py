"""The CRM calendar tables: reading change keys and applying a batch plan.

Upserts key on (operator_id, item_id) and only touch a row whose change key differs, so a
batch replayed after a crash writes nothing and `synced_at` keeps telling when calsync last
really changed the row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from calsync.sync.model import Appointment, Attendee, BatchPlan, Kind

_COLUMNS = (
    "item_id, change_key, kind, series_item_id, original_start, uid, subject, body, body_type, "
    "location, start_at, end_at, timezone, is_all_day, start_date, end_date, is_cancelled, "
    "sensitivity, details_withheld, show_as, organizer_email, organizer_name, is_organizer, "
    "recurrence, exchange_created_at, exchange_modified_at, deleted_occurrences, attendees_total"
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
    # Occurrence and exception rows, counted apart from Exchange items.
    occurrences_written: int = 0
    occurrences_deleted: int = 0


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
        list(a.deleted_occurrences) if a.kind is Kind.SERIES else None,
        a.attendees_total,
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


def replace_occurrences(
    conn: psycopg.Connection[Any], operator_id: int, occurrences: Mapping[str, Sequence[Appointment]]
) -> tuple[int, int]:
    """Make each listed item's occurrence rows exactly the given ones; returns (written, deleted).

    Rows are upserted by item id with the change-key check (an unchanged occurrence is not
    written), and every other occurrence row of those items goes, in the caller's transaction:
    a reader never sees a series twice or with leftovers of its old pattern.
    """
    if not occurrences:
        return 0, 0
    keep_ids = [row.item_id for rows in occurrences.values() for row in rows]
    cur = conn.execute(
        "DELETE FROM appointments WHERE operator_id = %s AND series_item_id = ANY(%s) AND NOT (item_id = ANY(%s))",
        (operator_id, list(occurrences), keep_ids),
    )
    deleted = cur.rowcount
    created, updated = upsert(conn, operator_id, [row for rows in occurrences.values() for row in rows])
    return created + updated, deleted


def apply_plan(conn: psycopg.Connection[Any], operator_id: int, plan: BatchPlan) -> WriteCounts:
    created, updated = upsert(conn, operator_id, plan.upserts)
    deleted = delete_items(conn, operator_id, plan.deletes)
    written, occ_deleted = replace_occurrences(conn, operator_id, plan.occurrences)
    return WriteCounts(
        created=created, updated=updated, deleted=deleted, occurrences_written=written, occurrences_deleted=occ_deleted
    )


def _appointment(row: Mapping[str, Any], attendees: Sequence[Attendee]) -> Appointment:
    def utc(value: dt.datetime | None) -> dt.datetime | None:
        return value.astimezone(dt.UTC) if value is not None else None

    return Appointment(
        item_id=row["item_id"],
        change_key=row["change_key"],
        kind=Kind(row["kind"]),
        start=row["start_at"].astimezone(dt.UTC),
        end=row["end_at"].astimezone(dt.UTC),
        subject=row["subject"],
        body=row["body"],
        body_type=row["body_type"],
        location=row["location"],
        uid=row["uid"],
        series_item_id=row["series_item_id"],
        original_start=utc(row["original_start"]),
        timezone=row["timezone"],
        is_all_day=row["is_all_day"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        is_cancelled=row["is_cancelled"],
        sensitivity=row["sensitivity"],
        details_withheld=row["details_withheld"],
        show_as=row["show_as"],
        organizer_email=row["organizer_email"],
        organizer_name=row["organizer_name"],
        is_organizer=row["is_organizer"],
        recurrence=row["recurrence"],
        exchange_created_at=utc(row["exchange_created_at"]),
        exchange_modified_at=utc(row["exchange_modified_at"]),
        attendees=tuple(attendees),
        attendees_total=row["attendees_total"],
        deleted_occurrences=tuple(sorted(d.astimezone(dt.UTC) for d in row["deleted_occurrences"] or ())),
    )


def operators_with_series(conn: psycopg.Connection[Any]) -> list[int]:
    rows = conn.execute("SELECT DISTINCT operator_id FROM appointments WHERE kind = 'series' ORDER BY 1").fetchall()
    return [r["operator_id"] for r in rows]


def series_masters(conn: psycopg.Connection[Any], operator_id: int) -> list[tuple[Appointment, frozenset[dt.datetime]]]:
    """Every stored series of an operator, with the original starts its rows already cover."""
    masters = conn.execute(
        "SELECT * FROM appointments WHERE operator_id = %s AND kind = 'series' ORDER BY item_id", (operator_id,)
    ).fetchall()
    if not masters:
        return []
    people: dict[int, list[Attendee]] = {}
    for r in conn.execute(
        "SELECT appointment_id, email, name, role, response FROM appointment_attendees "
        "WHERE appointment_id = ANY(%s) ORDER BY appointment_id, position",
        ([m["id"] for m in masters],),
    ):
        people.setdefault(r["appointment_id"], []).append(Attendee(r["email"], r["name"], r["role"], r["response"]))
    covered: dict[str, frozenset[dt.datetime]] = {
        r["series_item_id"]: frozenset(d.astimezone(dt.UTC) for d in r["starts"])
        for r in conn.execute(
            "SELECT series_item_id, array_agg(original_start) AS starts FROM appointments "
            "WHERE operator_id = %s AND series_item_id IS NOT NULL AND original_start IS NOT NULL "
            "GROUP BY series_item_id",
            (operator_id,),
        )
    }
    return [(_appointment(m, people.get(m["id"], ())), covered.get(m["item_id"], frozenset())) for m in masters]


def mark_seen(conn: psycopg.Connection[Any], operator_id: int, generation: int, item_ids: Sequence[str]) -> None:
    if not item_ids:
        return
    conn.execute(
        "INSERT INTO resync_seen (operator_id, generation, item_id) "
        "SELECT %s, %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (operator_id, generation, list(item_ids)),
    )


def adopt_by_uid(conn: psycopg.Connection[Any], operator_id: int, generation: int, plan: BatchPlan) -> int:
    """During a full sync, give rows listed under new ids the old rows of the same meeting.

    When an operator's source switches (EWS to Graph), every item comes back under another
    id. A row not yet seen in this generation with the same iCalendar UID, original start
    and kind of row (series-level or occurrence) takes the new id, so the upsert that follows
    updates it in place and the CRM sees an update, not a delete and a create.
    """
    rows = [*plan.upserts, *(r for rows in plan.occurrences.values() for r in rows)]
    rows = [r for r in rows if r.uid]
    if not rows:
        return 0
    cur = conn.execute(
        """
        WITH cand AS (
            SELECT * FROM unnest(%(ids)s::text[], %(uids)s::text[], %(orig)s::timestamptz[], %(series)s::text[])
                AS c (item_id, uid, original_start, series_item_id)
        ), pick AS (
            SELECT DISTINCT ON (c.item_id) a.id, c.item_id, c.series_item_id
              FROM cand c
              JOIN appointments a
                ON a.operator_id = %(op)s AND a.uid = c.uid
               AND a.original_start IS NOT DISTINCT FROM c.original_start
               AND (a.series_item_id IS NULL) = (c.series_item_id IS NULL)
             WHERE a.item_id <> c.item_id
               AND NOT EXISTS (SELECT 1 FROM appointments b WHERE b.operator_id = %(op)s AND b.item_id = c.item_id)
               AND NOT EXISTS (SELECT 1 FROM resync_seen s WHERE s.operator_id = %(op)s AND s.generation = %(gen)s
                                  AND s.item_id = COALESCE(a.series_item_id, a.item_id))
             ORDER BY c.item_id, a.id
        ), uniq AS (
            SELECT DISTINCT ON (id) id, item_id, series_item_id FROM pick ORDER BY id, item_id
        )
        UPDATE appointments a SET item_id = u.item_id, series_item_id = u.series_item_id
          FROM uniq u WHERE a.id = u.id
        """,
        {
            "op": operator_id,
            "gen": generation,
            "ids": [r.item_id for r in rows],
            "uids": [r.uid for r in rows],
            "orig": [r.original_start for r in rows],
            "series": [r.series_item_id for r in rows],
        },
    )
    return cur.rowcount


def delete_series_except(conn: psycopg.Connection[Any], operator_id: int, series_ids: Iterable[str]) -> int:
    """Remove the series (with their occurrence rows) the source no longer lists."""
    cur = conn.execute(
        """
        WITH gone AS (
            SELECT item_id FROM appointments
             WHERE operator_id = %(op)s AND kind = 'series' AND NOT (item_id = ANY(%(keep)s))
        )
        DELETE FROM appointments a USING gone
         WHERE a.operator_id = %(op)s AND COALESCE(a.series_item_id, a.item_id) = gone.item_id
        """,
        {"op": operator_id, "keep": list(series_ids)},
    )
    return cur.rowcount


def sweep_unseen(
    conn: psycopg.Connection[Any],
    operator_id: int,
    generation: int,
    listed_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> int:
    """End of a full sync: remove every singles/series row Exchange did not list, then forget the list.

    Occurrences and exceptions go with their series (their ids are derived, never listed).

    resync_seen was filled during this very sync, so its statistics are stale and the planner
    would pick a nested-loop anti join: minutes for a 50,000-item mailbox with its
    occurrences. A hash anti join is always right here (one pass over each side).

    `listed_window`: the source listed only what overlaps this window (Graph), so only an item
    (a single, or a series with a row) overlapping it can be missing for being deleted; the
    rest aged out of the window and stays, as with EWS. An occurrence row whose series row
    is gone (the series came back under another id after a switch of source) goes too.
    """
    conn.execute("SET LOCAL enable_nestloop = off")
    params: dict[str, Any] = {"op": operator_id, "gen": generation}
    where = ""
    if listed_window is not None:
        where = """
          AND (COALESCE(a.series_item_id, a.item_id) IN (
                 SELECT COALESCE(w.series_item_id, w.item_id) FROM appointments w
                  WHERE w.operator_id = %(op)s AND w.start_at < %(hi)s AND w.end_at >= %(lo)s)
               OR (a.series_item_id IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM appointments m WHERE m.operator_id = %(op)s AND m.item_id = a.series_item_id)))
        """
        params.update(lo=listed_window[0], hi=listed_window[1])
    cur = conn.execute(
        """
        DELETE FROM appointments a
        WHERE a.operator_id = %(op)s
          AND NOT EXISTS (
            SELECT 1 FROM resync_seen s
            WHERE s.operator_id = %(op)s AND s.generation = %(gen)s
              AND s.item_id = COALESCE(a.series_item_id, a.item_id))
        """
        + where,
        params,
    )
    conn.execute("DELETE FROM resync_seen WHERE operator_id = %s", (operator_id,))
    conn.execute("SET LOCAL enable_nestloop = on")
    return cur.rowcount
