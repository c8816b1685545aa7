"""Field-by-field comparison of exchangelib CalendarItems with the simulator's item JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

from exchangelib import CalendarItem
from exchangelib.properties import HTMLBody
from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP


def _t(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _people(people: Any) -> list[tuple[str, str, str]]:
    return [(a.mailbox.email_address, a.mailbox.name, a.response_type) for a in people or []]


def assert_item_matches(got: CalendarItem, want: dict[str, Any], *, full: bool = True) -> None:
    """``got`` came over EWS, ``want`` from the admin API; every field must agree."""
    where = f"{want['id']} ({want['subject']!r})"
    assert got.id == want["id"], where
    assert got.changekey == want["change_key"], where
    assert got.subject == want["subject"], where
    assert got.type == want["calendar_item_type"], where
    assert got.is_all_day == want["is_all_day"], where
    if want["is_all_day"]:
        # exchangelib turns all-day start/end into dates (end inclusive) in the item's zone.
        assert got.start == _t(want["start"]).date(), where
        assert got.end == (_t(want["end"]) - dt.timedelta(days=1)).date(), where
    else:
        assert got.start == _t(want["start"]), where
        assert got.end == _t(want["end"]), where
    ms_zone = IANA_TO_MS_TIMEZONE_MAP[want["timezone"]][0] if want["timezone"] != "UTC" else "UTC"
    assert got._start_timezone.ms_id == ms_zone, where
    assert got._end_timezone.ms_id == ms_zone, where
    assert (got.location or "") == want["location"], where
    assert got.sensitivity == want["sensitivity"], where
    assert got.is_cancelled == want["is_cancelled"], where
    assert got.legacy_free_busy_status == want["legacy_free_busy_status"], where
    assert got.uid == want["uid"], where
    assert got.organizer.email_address == want["organizer"]["email"], where
    assert got.organizer.name == want["organizer"]["name"], where
    assert got.datetime_created == _t(want["created"]), where
    assert got.last_modified_time == _t(want["last_modified"]), where
    if not full:
        return
    assert str(got.body) == want["body"], where
    assert isinstance(got.body, HTMLBody) == (want["body_type"] == "HTML"), where
    assert _people(got.required_attendees) == [
        (a["email"], a["name"], a["response"]) for a in want["required_attendees"]
    ]
    assert _people(got.optional_attendees) == [
        (a["email"], a["name"], a["response"]) for a in want["optional_attendees"]
    ]
    assert_recurrence_matches(got, want)


_INDEX = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": 5}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def assert_recurrence_matches(got: CalendarItem, want: dict[str, Any]) -> None:
    where = want["id"]
    rec = want["recurrence"]
    if rec is None:
        assert got.recurrence is None, where
        assert not got.modified_occurrences and not got.deleted_occurrences, where
        return
    pattern, rng = rec["pattern"], rec["range"]
    p = got.recurrence.pattern
    assert type(p).__name__ == pattern["type"] + "Pattern", where
    if "interval" in pattern and hasattr(p, "interval"):
        assert p.interval == pattern["interval"], where
    if pattern["type"] == "Weekly":
        assert [_DAYS[d - 1] for d in p.weekdays] == pattern["days_of_week"], where
    if pattern["type"] in ("AbsoluteMonthly", "AbsoluteYearly"):
        assert p.day_of_month == pattern["day_of_month"], where
    if pattern["type"] in ("RelativeMonthly", "RelativeYearly"):
        assert _DAYS[p.weekday - 1] == pattern["days_of_week"], where
        assert p.week_number == _INDEX[pattern["day_of_week_index"]], where
    if pattern["type"] in ("AbsoluteYearly", "RelativeYearly"):
        assert _MONTHS[p.month - 1] == pattern["month"], where
    b = got.recurrence.boundary
    assert (
        type(b).__name__
        == {"NoEnd": "NoEndPattern", "EndDate": "EndDatePattern", "Numbered": "NumberedPattern"}[rng["type"]]
    ), where
    assert b.start.isoformat() == rng["start_date"], where
    if rng["type"] == "EndDate":
        assert b.end.isoformat() == rng["end_date"], where
    if rng["type"] == "Numbered":
        assert b.number == rng["count"], where
    mods = sorted((m.original_start, m.start, m.end, m.id) for m in got.modified_occurrences or [])
    assert mods == sorted(
        (_t(m["original_start"]), _t(m["start"]), _t(m["end"]), m["id"]) for m in want["modified_occurrences"]
    ), where
    dels = sorted(d.start for d in got.deleted_occurrences or [])
    assert dels == sorted(_t(d) for d in want["deleted_occurrences"]), where
    assert got.first_occurrence is not None, where
