"""What the mirror must hold, computed from the simulator's truth (its admin JSON) alone.

Independent of calsync's code paths: it reads the admin API's item JSON and applies the
window rule and the privacy rule as the README states them. Occurrences of series come from
tests.recurrence.oracle (dateutil's rrule); rows whose window membership flips within EDGE
of the window's ends may be present or absent (the mirror's "now" is not the check's).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP

from tests.recurrence.oracle import Instance, in_window, instances, occurrence_key

EDGE = dt.timedelta(minutes=2)
SERIES_REACH = dt.timedelta(days=800)  # beyond any generated series' gap between occurrences


def same_zone(iana: str | None) -> str | None:
    """Exchange keeps Windows zone ids; IANA names that map to the same id are the same zone."""
    if iana is None:
        return None
    return str(IANA_TO_MS_TIMEZONE_MAP.get(iana, (iana,))[0])


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC)


def _row(it: dict[str, Any], private_details: bool) -> dict[str, Any]:
    private = it["sensitivity"] == "Private" and not private_details
    row: dict[str, Any] = {
        "uid": it["uid"],
        "subject": None if private else it["subject"],
        "location": None if private else (it.get("location") or None),
        "start_at": _ts(it["start"]),
        "end_at": _ts(it["end"]),
        "is_all_day": it["is_all_day"],
        "is_cancelled": it["is_cancelled"],
        "sensitivity": it["sensitivity"],
        "details_withheld": private,
        "show_as": it["legacy_free_busy_status"],
        "organizer_email": (it.get("organizer") or {}).get("email"),
        "timezone": same_zone(it["timezone"]),
    }
    if it["is_all_day"]:
        tz = ZoneInfo(it["timezone"])
        row["start_date"] = dt.datetime.fromisoformat(it["start"]).astimezone(tz).date()
        row["end_date"] = dt.datetime.fromisoformat(it["end"]).astimezone(tz).date()
    else:
        row["start_date"] = row["end_date"] = None
    attendees = []
    if not private:
        for role, key in (("required", "required_attendees"), ("optional", "optional_attendees")):
            for a in it.get(key) or []:
                attendees.append((a["email"], role, a.get("response")))
    row["attendees"] = sorted(attendees)
    return row


def _near(a: dt.datetime, b: dt.datetime) -> bool:
    return abs(a - b) < EDGE


def occurrence_rows(
    it: dict[str, Any], insts: list[Instance], cutoff: dt.datetime, horizon: dt.datetime, private_details: bool
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for inst in insts:
        edge = _near(inst.end, cutoff) or (inst.exception is None and _near(inst.start, horizon))
        if not in_window(inst, cutoff, horizon) and not edge:
            continue
        fields = {**it, **{k: v for k, v in (inst.exception or {}).items() if k not in ("id", "change_key")}}
        row = _row(fields, private_details)
        row.update(
            kind="exception" if inst.exception is not None else "occurrence",
            series_item_id=it["id"],
            original_start=inst.original_start,
            start_at=inst.start,
            end_at=inst.end,
            start_date=inst.start_date,
            end_date=inst.end_date,
        )
        if edge:
            row["_edge"] = True
        out[occurrence_key(it["id"], inst.original_start)] = row
    return out


def expected_rows(
    items: list[dict[str, Any]],
    now: dt.datetime,
    past_days: int = 180,
    private_details: bool = False,
    future_days: int = 365,
    occurrences: bool = True,
    known: frozenset[str] = frozenset(),
) -> dict[str, dict[str, Any]]:
    """Rows keyed by item id; rows marked "_edge" may be missing from the mirror.

    `known`: ids the mirror held before; such an item that has since left the past window may
    stay (calsync follows what it has, as the README says) and then must be up to date.
    """
    cutoff = now - dt.timedelta(days=past_days)
    horizon = now + dt.timedelta(days=future_days)
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        recurring = it.get("recurrence") is not None
        edge = False
        if recurring:
            insts = instances(it, until=horizon + SERIES_REACH)
            ends = [i.end for i in insts]
            if not any(e >= cutoff for e in ends):
                if not any(_near(e, cutoff) for e in ends) and it["id"] not in known:
                    continue
                edge = True
            if occurrences:
                out.update(occurrence_rows(it, insts, cutoff, horizon, private_details))
        elif _ts(it["end"]) < cutoff:
            if not _near(_ts(it["end"]), cutoff) and it["id"] not in known:
                continue
            edge = True
        row = _row(it, private_details)
        row.update(change_key=it["change_key"], kind="series" if recurring else "single")
        if edge:
            row["_edge"] = True
        out[it["id"]] = row
    return out


def mirror_rows(conn: psycopg.Connection[Any], operator_id: int) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT a.*, COALESCE(
                 (SELECT array_agg(ARRAY[t.email, t.role, COALESCE(t.response, '')] ORDER BY t.email, t.role)
                    FROM appointment_attendees t WHERE t.appointment_id = a.id), '{}') AS att
          FROM appointments a WHERE a.operator_id = %s
        """,
        (operator_id,),
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        row = {k: r[k] for k in (
            "change_key", "kind", "uid", "subject", "location", "start_at", "end_at", "is_all_day",
            "is_cancelled", "sensitivity", "details_withheld", "show_as", "organizer_email", "timezone",
            "start_date", "end_date", "series_item_id", "original_start",
        )}  # fmt: skip
        row["attendees"] = sorted((e, role, resp or None) for e, role, resp in r["att"])
        row["timezone"] = same_zone(row["timezone"])
        out[r["item_id"]] = row
    return out


def diff(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    problems = [f"missing {i}" for i in expected.keys() - actual.keys() if not expected[i].get("_edge")]
    problems += [f"unexpected {i}" for i in actual.keys() - expected.keys()]
    for item_id in expected.keys() & actual.keys():
        for field, want in expected[item_id].items():
            if field == "_edge":
                continue
            got = actual[item_id].get(field)
            if got != want:
                problems.append(f"{item_id}.{field}: mirror {got!r} != exchange {want!r}")
    return sorted(problems)
