"""What the mirror must hold, computed from the simulator's truth (its admin JSON) alone.

Independent of calsync's code paths: it reads the admin API's item JSON and applies the
window rule and the privacy rule as the README states them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP


def same_zone(iana: str | None) -> str | None:
    """Exchange keeps Windows zone ids; IANA names that map to the same id are the same zone."""
    if iana is None:
        return None
    return str(IANA_TO_MS_TIMEZONE_MAP.get(iana, (iana,))[0])


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC)


def expected_rows(
    items: list[dict[str, Any]], now: dt.datetime, past_days: int = 180, private_details: bool = False
) -> dict[str, dict[str, Any]]:
    cutoff = now - dt.timedelta(days=past_days)
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        recurring = it.get("recurrence") is not None
        if not recurring and _ts(it["end"]) < cutoff:
            continue
        private = it["sensitivity"] == "Private" and not private_details
        row: dict[str, Any] = {
            "change_key": it["change_key"],
            "kind": "series" if recurring else "single",
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
            "start_date", "end_date",
        )}  # fmt: skip
        row["attendees"] = sorted((e, role, resp or None) for e, role, resp in r["att"])
        row["timezone"] = same_zone(row["timezone"])
        out[r["item_id"]] = row
    return out


def diff(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    problems = [f"missing {i}" for i in expected.keys() - actual.keys()]
    problems += [f"unexpected {i}" for i in actual.keys() - expected.keys()]
    for item_id in expected.keys() & actual.keys():
        for field, want in expected[item_id].items():
            got = actual[item_id].get(field)
            if got != want:
                problems.append(f"{item_id}.{field}: mirror {got!r} != exchange {want!r}")
    return sorted(problems)
