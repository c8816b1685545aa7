"""Tests for the EWS recurrence expansion used by the Exchange simulator.

Hand-checked dates pin Exchange's semantics; a hypothesis property compares the
expansion with an independent one (dateutil rrule + recurring_ical_events) for every
pattern that RFC 5545 can express.
"""

from __future__ import annotations

import time as wallclock
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from dateutil import rrule
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from calsync.simulator.recurrence import (
    RecurrenceError,
    expand_occurrences,
    first_occurrence,
    last_occurrence,
    validate_recurrence,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
EVER_START = datetime(1990, 1, 1, tzinfo=UTC)
EVER_END = datetime(2100, 1, 1, tzinfo=UTC)


def rec(pattern: dict[str, Any], start: str, **range_: Any) -> dict[str, Any]:
    if "count" in range_:
        kind = "Numbered"
    elif "end_date" in range_:
        kind = "EndDate"
    else:
        kind = "NoEnd"
    return {"pattern": pattern, "range": {"type": kind, "start_date": start, **range_}}


def local_dates(recurrence: dict[str, Any], tz: ZoneInfo = BERLIN, hour: int = 9) -> list[date]:
    """Local dates of the occurrences of a one-hour series at ``hour`` over all time."""
    start_date = date.fromisoformat(recurrence["range"]["start_date"][:10])
    first = datetime.combine(start_date, time(hour), tzinfo=tz)
    pairs = expand_occurrences(recurrence, first, first + timedelta(hours=1), str(tz), EVER_START, EVER_END)
    return [s.astimezone(tz).date() for s, _ in pairs]


def d(*parts: str) -> list[date]:
    return [date.fromisoformat(p) for p in parts]


# --------------------------------------------------------------------------- patterns


def test_daily_interval_crosses_leap_day() -> None:
    r = rec({"type": "Daily", "interval": 3}, "2024-02-27", count=4)
    assert local_dates(r) == d("2024-02-27", "2024-03-01", "2024-03-04", "2024-03-07")


def test_daily_end_date_is_inclusive() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-01-01", end_date="2024-01-05")
    assert local_dates(r) == d("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05")


def test_weekly_interval_two_skips_days_before_start() -> None:
    # 2024-01-03 is a Wednesday; its Sunday-started week holds Monday Jan 1, which is before the start.
    r = rec({"type": "Weekly", "interval": 2, "days_of_week": ["Monday", "Thursday"]}, "2024-01-03", count=5)
    assert local_dates(r) == d("2024-01-04", "2024-01-15", "2024-01-18", "2024-01-29", "2024-02-01")


@pytest.mark.parametrize(
    ("first_day", "expected"),
    [
        # Weeks Sun 7-Sat 13, Sun 21-Sat 27: both days of every other such week.
        ("Sunday", d("2024-01-07", "2024-01-13", "2024-01-21", "2024-01-27")),
        # Weeks Mon 1-Sun 7 (Saturday 6 is before the start), Mon 15-Sun 21, Mon 29-Sun Feb 4.
        ("Monday", d("2024-01-07", "2024-01-20", "2024-01-21", "2024-02-03")),
    ],
)
def test_weekly_first_day_of_week_matters_for_interval(first_day: str, expected: list[date]) -> None:
    pattern = {
        "type": "Weekly",
        "interval": 2,
        "days_of_week": ["Sunday", "Saturday"],
        "first_day_of_week": first_day,
    }
    assert local_dates(rec(pattern, "2024-01-07", count=4)) == expected


def test_weekly_default_first_day_is_sunday() -> None:
    pattern = {"type": "Weekly", "interval": 2, "days_of_week": ["Sunday", "Saturday"]}
    assert local_dates(rec(pattern, "2024-01-07", count=4)) == d("2024-01-07", "2024-01-13", "2024-01-21", "2024-01-27")


def test_weekly_accepts_space_separated_days_and_pseudo_days() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": "Tuesday Friday"}, "2024-01-01", count=3)
    assert local_dates(r) == d("2024-01-02", "2024-01-05", "2024-01-09")
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["WeekendDay"]}, "2024-01-01", count=3)
    assert local_dates(r) == d("2024-01-06", "2024-01-07", "2024-01-13")


def test_absolute_monthly_31_uses_last_day_of_short_months() -> None:
    r = rec({"type": "AbsoluteMonthly", "interval": 1, "day_of_month": 31}, "2024-01-01", count=6)
    assert local_dates(r) == d("2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30")


def test_absolute_monthly_30_in_common_year_february() -> None:
    r = rec({"type": "AbsoluteMonthly", "interval": 1, "day_of_month": 30}, "2023-01-15", count=3)
    assert local_dates(r) == d("2023-01-30", "2023-02-28", "2023-03-30")


def test_absolute_monthly_interval_is_counted_from_start_month() -> None:
    # January's 15th is before the start, so the first occurrence is two months on.
    r = rec({"type": "AbsoluteMonthly", "interval": 2, "day_of_month": 15}, "2024-01-20", count=3)
    assert local_dates(r) == d("2024-03-15", "2024-05-15", "2024-07-15")


@pytest.mark.parametrize(
    ("days", "index", "expected"),
    [
        ("Tuesday", "Second", d("2024-01-09", "2024-02-13", "2024-03-12", "2024-04-09")),
        ("Friday", "Last", d("2024-01-26", "2024-02-23", "2024-03-29", "2024-04-26")),
        ("Day", "Fourth", d("2024-01-04", "2024-02-04", "2024-03-04", "2024-04-04")),
        ("Day", "Last", d("2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30")),
        ("Weekday", "First", d("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01")),
        ("Weekday", "Last", d("2024-01-31", "2024-02-29", "2024-03-29", "2024-04-30")),
        ("WeekendDay", "First", d("2024-01-06", "2024-02-03", "2024-03-02", "2024-04-06")),
        ("WeekendDay", "Fourth", d("2024-01-14", "2024-02-11", "2024-03-10", "2024-04-14")),
    ],
)
def test_relative_monthly(days: str, index: str, expected: list[date]) -> None:
    pattern = {"type": "RelativeMonthly", "interval": 1, "days_of_week": days, "day_of_week_index": index}
    assert local_dates(rec(pattern, "2024-01-01", count=4)) == expected


def test_relative_monthly_interval_three() -> None:
    pattern = {"type": "RelativeMonthly", "interval": 3, "days_of_week": "Weekday", "day_of_week_index": "First"}
    assert local_dates(rec(pattern, "2024-05-10", count=3)) == d("2024-08-01", "2024-11-01", "2025-02-03")


def test_absolute_yearly_feb_29_falls_on_feb_28_in_common_years() -> None:
    pattern = {"type": "AbsoluteYearly", "day_of_month": 29, "month": "February"}
    assert local_dates(rec(pattern, "2024-01-01", count=5)) == d(
        "2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29"
    )


def test_absolute_yearly_start_after_this_years_date() -> None:
    pattern = {"type": "AbsoluteYearly", "day_of_month": 1, "month": "March"}
    assert local_dates(rec(pattern, "2024-03-02", end_date="2026-03-01")) == d("2025-03-01", "2026-03-01")


@pytest.mark.parametrize(
    ("days", "index", "expected"),
    [
        ("Thursday", "Fourth", d("2024-11-28", "2025-11-27", "2026-11-26")),
        ("Friday", "Last", d("2024-11-29", "2025-11-28", "2026-11-27")),
        ("Weekday", "Last", d("2024-11-29", "2025-11-28", "2026-11-30")),
    ],
)
def test_relative_yearly(days: str, index: str, expected: list[date]) -> None:
    pattern = {"type": "RelativeYearly", "days_of_week": days, "day_of_week_index": index, "month": "November"}
    assert local_dates(rec(pattern, "2024-01-01", count=3)) == expected


def test_start_date_with_xs_date_zone_suffix() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-01-01Z", count=2)
    r["range"]["start_date"] = "2024-01-01-08:00"
    first = datetime(2024, 1, 1, 9, tzinfo=BERLIN)
    pairs = expand_occurrences(r, first, first + timedelta(hours=1), "Europe/Berlin", EVER_START, EVER_END)
    assert [s.astimezone(BERLIN).date() for s, _ in pairs] == d("2024-01-01", "2024-01-02")


# --------------------------------------------------------------------------- time zones


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_berlin_weekly_keeps_local_time_across_both_transitions() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]}, "2024-03-18")
    first = datetime(2024, 3, 18, 9, tzinfo=BERLIN)
    pairs = expand_occurrences(
        r, first, first + timedelta(minutes=30), "Europe/Berlin", utc(2024, 3, 18), utc(2024, 4, 2)
    )
    assert pairs == [
        (utc(2024, 3, 18, 8), utc(2024, 3, 18, 8, 30)),  # CET
        (utc(2024, 3, 25, 8), utc(2024, 3, 25, 8, 30)),  # CET (change is Sunday 31 March)
        (utc(2024, 4, 1, 7), utc(2024, 4, 1, 7, 30)),  # CEST
    ]
    pairs = expand_occurrences(
        r, first, first + timedelta(minutes=30), "Europe/Berlin", utc(2024, 10, 21), utc(2024, 10, 29)
    )
    assert [s for s, _ in pairs] == [utc(2024, 10, 21, 7), utc(2024, 10, 28, 8)]


def test_berlin_gap_time_shifts_forward_and_duration_is_absolute() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-03-30", count=3)
    first = datetime(2024, 3, 30, 2, 30, tzinfo=BERLIN)
    pairs = expand_occurrences(r, first, first + timedelta(hours=1), "Europe/Berlin", EVER_START, EVER_END)
    local = [(s.astimezone(BERLIN).replace(tzinfo=None), e - s) for s, e in pairs]
    assert local == [
        (datetime(2024, 3, 30, 2, 30), timedelta(hours=1)),
        (datetime(2024, 3, 31, 3, 30), timedelta(hours=1)),  # 02:30 does not exist that night
        (datetime(2024, 4, 1, 2, 30), timedelta(hours=1)),
    ]


def test_timed_duration_spanning_the_transition_stays_absolute() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-03-30", count=2)
    first = datetime(2024, 3, 30, 1, 0, tzinfo=BERLIN)
    pairs = expand_occurrences(r, first, first + timedelta(hours=3), "Europe/Berlin", EVER_START, EVER_END)
    start, end = pairs[1]
    assert (start, end) == (utc(2024, 3, 31, 0), utc(2024, 3, 31, 3))
    assert end.astimezone(BERLIN).hour == 5  # three real hours, five on the wall clock


def test_new_york_weekly_across_dst() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Friday"]}, "2024-03-01")
    first = datetime(2024, 3, 1, 9, tzinfo=NEW_YORK)
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "America/New_York", utc(2024, 3, 1), utc(2024, 3, 16)
    )
    assert [s for s, _ in pairs] == [utc(2024, 3, 1, 14), utc(2024, 3, 8, 14), utc(2024, 3, 15, 13)]
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "America/New_York", utc(2024, 10, 30), utc(2024, 11, 9)
    )
    assert [s for s, _ in pairs] == [utc(2024, 11, 1, 13), utc(2024, 11, 8, 14)]


def test_new_york_gap_and_ambiguous_hour() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Sunday"]}, "2024-03-03")
    # 02:30: missing on 10 March (-> 03:30 EDT); 01:30 is ambiguous on 3 November (-> first, EDT).
    first = datetime(2024, 3, 3, 2, 30, tzinfo=NEW_YORK)
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "America/New_York", utc(2024, 3, 10), utc(2024, 3, 11)
    )
    assert pairs == [(utc(2024, 3, 10, 7, 30), utc(2024, 3, 10, 8, 30))]
    first = datetime(2024, 3, 3, 1, 30, tzinfo=NEW_YORK)
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "America/New_York", utc(2024, 11, 3), utc(2024, 11, 4)
    )
    assert pairs == [(utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30))]


def test_sydney_southern_hemisphere_dst() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Sunday"]}, "2024-03-31")
    first = datetime(2024, 3, 31, 9, tzinfo=SYDNEY)
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "Australia/Sydney", utc(2024, 3, 30), utc(2024, 4, 8)
    )
    # AEDT (+11) until the first Sunday in April, AEST (+10) from then on.
    assert [s for s, _ in pairs] == [utc(2024, 3, 30, 22), utc(2024, 4, 6, 23)]
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "Australia/Sydney", utc(2024, 9, 28), utc(2024, 10, 7)
    )
    assert [s for s, _ in pairs] == [utc(2024, 9, 28, 23), utc(2024, 10, 5, 22)]


def test_sydney_gap_and_ambiguous_hour() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Sunday"]}, "2024-03-31")
    first = datetime(2024, 3, 31, 2, 30, tzinfo=SYDNEY)
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "Australia/Sydney", utc(2024, 4, 6), utc(2024, 4, 7)
    )
    assert [s for s, _ in pairs] == [utc(2024, 4, 6, 15, 30)]  # ambiguous 02:30 -> first (AEDT)
    pairs = expand_occurrences(
        r, first, first + timedelta(hours=1), "Australia/Sydney", utc(2024, 10, 5), utc(2024, 10, 6)
    )
    assert [s for s, _ in pairs] == [utc(2024, 10, 5, 16, 30)]  # missing 02:30 -> 03:30 AEDT


# --------------------------------------------------------------------------- all-day


def test_all_day_series_is_local_midnight_to_midnight_across_dst() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-03-30", count=3)
    first = datetime(2024, 3, 30, tzinfo=BERLIN)
    pairs = expand_occurrences(r, first, first + timedelta(days=1), "Europe/Berlin", EVER_START, EVER_END)
    assert pairs == [
        (utc(2024, 3, 29, 23), utc(2024, 3, 30, 23)),
        (utc(2024, 3, 30, 23), utc(2024, 3, 31, 22)),  # the 23-hour day
        (utc(2024, 3, 31, 22), utc(2024, 4, 1, 22)),
    ]


def test_multi_day_all_day_series_keeps_local_days() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Saturday"]}, "2024-10-26", count=2)
    first = datetime(2024, 10, 26, tzinfo=NEW_YORK)
    end = datetime(2024, 10, 28, tzinfo=NEW_YORK)
    pairs = expand_occurrences(r, first, end, "America/New_York", EVER_START, EVER_END)
    local = [
        (s.astimezone(NEW_YORK).replace(tzinfo=None), e.astimezone(NEW_YORK).replace(tzinfo=None)) for s, e in pairs
    ]
    assert local == [
        (datetime(2024, 10, 26), datetime(2024, 10, 28)),
        (datetime(2024, 11, 2), datetime(2024, 11, 4)),  # 49 real hours: clocks fall back on 3 Nov
    ]
    assert pairs[1][1] - pairs[1][0] == timedelta(hours=49)


def test_all_day_given_in_utc_is_detected_in_the_series_zone() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-07-01", count=1)
    first = datetime(2024, 7, 1, tzinfo=SYDNEY).astimezone(UTC)
    pairs = expand_occurrences(r, first, first + timedelta(days=1), "Australia/Sydney", EVER_START, EVER_END)
    assert pairs == [(utc(2024, 6, 30, 14), utc(2024, 7, 1, 14))]


def test_all_day_flag_overrides_detection() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-03-30", count=2)
    first = datetime(2024, 3, 30, tzinfo=BERLIN)
    timed = expand_occurrences(
        r, first, first + timedelta(days=1), "Europe/Berlin", EVER_START, EVER_END, all_day=False
    )
    assert timed[1] == (utc(2024, 3, 30, 23), utc(2024, 3, 31, 23))


# --------------------------------------------------------------------------- window


def test_window_overlap_rules() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2024-01-01", count=5)
    first = datetime(2024, 1, 1, 10, tzinfo=UTC)
    one_hour = first + timedelta(hours=1)
    # Ends exactly at window start: out.  Starts exactly at window end: out.
    assert expand_occurrences(r, first, one_hour, "UTC", utc(2024, 1, 2, 11), utc(2024, 1, 3, 10)) == []
    # Started before the window and still running: in.
    assert expand_occurrences(r, first, one_hour, "UTC", utc(2024, 1, 2, 10, 30), utc(2024, 1, 2, 10, 31)) == [
        (utc(2024, 1, 2, 10), utc(2024, 1, 2, 11))
    ]
    # Zero-length occurrence exactly at window start: in; at window end: out.
    assert expand_occurrences(r, first, first, "UTC", utc(2024, 1, 2, 10), utc(2024, 1, 3, 10)) == [
        (utc(2024, 1, 2, 10), utc(2024, 1, 2, 10))
    ]
    # Empty or inverted window.
    assert expand_occurrences(r, first, one_hour, "UTC", utc(2024, 1, 3), utc(2024, 1, 2)) == []


def test_far_window_on_no_end_series_is_fast() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2000-01-01")
    first = datetime(2000, 1, 1, 9, tzinfo=BERLIN)
    began = wallclock.perf_counter()
    pairs = expand_occurrences(r, first, first + timedelta(hours=1), "Europe/Berlin", utc(2600, 1, 1), utc(2600, 1, 8))
    assert wallclock.perf_counter() - began < 0.5
    assert [s.astimezone(BERLIN).date() for s, _ in pairs] == [date(2600, 1, n) for n in range(1, 8)]
    assert all(s.astimezone(BERLIN).hour == 9 for s, _ in pairs)


def test_window_near_the_end_of_a_long_numbered_series_matches_full_expansion() -> None:
    pattern = {
        "type": "Weekly",
        "interval": 3,
        "days_of_week": ["Monday", "Wednesday", "Saturday"],
        "first_day_of_week": "Monday",
    }
    r = rec(pattern, "2024-01-04", count=1000)
    first = datetime(2024, 1, 6, 8, tzinfo=NEW_YORK)
    end = first + timedelta(minutes=45)
    everything = expand_occurrences(r, first, end, "America/New_York", EVER_START, datetime(2300, 1, 1, tzinfo=UTC))
    assert len(everything) == 1000
    window = expand_occurrences(r, first, end, "America/New_York", everything[-5][0], datetime(2300, 1, 1, tzinfo=UTC))
    assert window == everything[-5:]
    assert last_occurrence(r, first, end, "America/New_York") == everything[-1]


def test_window_spanning_too_many_periods_is_refused() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2000-01-01")
    first = datetime(2000, 1, 1, 9, tzinfo=UTC)
    with pytest.raises(RecurrenceError, match="narrow the window"):
        expand_occurrences(r, first, first, "UTC", utc(2000, 1, 1), utc(2400, 1, 1))


def test_window_at_the_end_of_time() -> None:
    r = rec({"type": "AbsoluteMonthly", "interval": 1, "day_of_month": 31}, "2000-01-01")
    first = datetime(2000, 1, 31, 9, tzinfo=UTC)
    pairs = expand_occurrences(r, first, first, "UTC", utc(9999, 11, 1), datetime.max.replace(tzinfo=UTC))
    assert [s.date() for s, _ in pairs] == d("9999-11-30", "9999-12-31")


# --------------------------------------------------------------------------- first / last


def test_first_occurrence_moves_to_the_pattern() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Friday"]}, "2024-03-04")
    first = datetime(2024, 3, 4, 9, tzinfo=BERLIN)  # a Monday, not on the pattern
    start, end = first_occurrence(r, first, first + timedelta(hours=1), "Europe/Berlin")
    assert (start, end) == (utc(2024, 3, 8, 8), utc(2024, 3, 8, 9))
    assert last_occurrence(r, first, first + timedelta(hours=1), "Europe/Berlin") is None


@pytest.mark.parametrize(
    ("range_", "expected_date"),
    [
        ({"count": 1}, date(2024, 1, 31)),
        ({"count": 14}, date(2025, 2, 28)),
        ({"end_date": "2024-06-29"}, date(2024, 5, 31)),
        ({"end_date": "2024-06-30"}, date(2024, 6, 30)),
    ],
)
def test_last_occurrence(range_: dict[str, Any], expected_date: date) -> None:
    r = rec({"type": "AbsoluteMonthly", "interval": 1, "day_of_month": 31}, "2024-01-01", **range_)
    first = datetime(2024, 1, 31, 9, tzinfo=SYDNEY)
    last = last_occurrence(r, first, first + timedelta(hours=2), "Australia/Sydney")
    assert last is not None
    assert last[0].astimezone(SYDNEY) == datetime.combine(expected_date, time(9), tzinfo=SYDNEY)
    assert last[1] - last[0] == timedelta(hours=2)


# --------------------------------------------------------------------------- validation

DAILY = {"type": "Daily", "interval": 1}


@pytest.mark.parametrize(
    ("recurrence", "message"),
    [
        (rec({"type": "Hourly", "interval": 1}, "2024-01-01"), "unknown pattern type"),
        (rec({"type": "Daily", "interval": 0}, "2024-01-01"), "interval must be >= 1"),
        (rec({"type": "Daily"}, "2024-01-01"), "missing 'interval'"),
        (rec({"type": "Daily", "interval": True}, "2024-01-01"), "must be an integer"),
        (rec({"type": "Weekly", "interval": 1, "days_of_week": []}, "2024-01-01"), "must not be empty"),
        (rec({"type": "Weekly", "interval": 1, "days_of_week": ["Funday"]}, "2024-01-01"), "unknown day"),
        (
            rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"], "first_day_of_week": "X"}, "2024-01-01"),
            "unknown day",
        ),
        (rec({"type": "AbsoluteMonthly", "interval": 1, "day_of_month": 32}, "2024-01-01"), "1..31"),
        (rec({"type": "AbsoluteMonthly", "interval": 1, "day_of_month": 0}, "2024-01-01"), ">= 1"),
        (rec({"type": "AbsoluteYearly", "day_of_month": 30, "month": "February"}, "2024-01-01"), "1..29"),
        (rec({"type": "AbsoluteYearly", "day_of_month": 31, "month": "April"}, "2024-01-01"), "1..30"),
        (rec({"type": "AbsoluteYearly", "day_of_month": 1, "month": "Smarch"}, "2024-01-01"), "unknown month"),
        (
            rec(
                {"type": "RelativeMonthly", "interval": 1, "days_of_week": "Monday", "day_of_week_index": "Fifth"},
                "2024-01-01",
            ),
            "day_of_week_index",
        ),
        (
            rec(
                {
                    "type": "RelativeMonthly",
                    "interval": 1,
                    "days_of_week": ["Monday", "Friday"],
                    "day_of_week_index": "First",
                },
                "2024-01-01",
            ),
            "single day name",
        ),
        (rec(DAILY, "2024-01-01", count=0), "count must be >= 1"),
        (rec(DAILY, "2024-01-05", end_date="2024-01-04"), "before range.start_date"),
        (rec(DAILY, "2024-13-01"), "YYYY-MM-DD"),
        ({"pattern": DAILY, "range": {"type": "Forever", "start_date": "2024-01-01"}}, "unknown range type"),
        ({"pattern": DAILY}, "missing 'range'"),
        (
            rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]}, "2024-01-02", end_date="2024-01-07"),
            "no occurrence",
        ),
    ],
)
def test_invalid_recurrences(recurrence: dict[str, Any], message: str) -> None:
    with pytest.raises(RecurrenceError, match=message):
        validate_recurrence(recurrence)
    first = datetime(2024, 1, 1, 9, tzinfo=UTC)
    with pytest.raises(RecurrenceError, match=message):
        expand_occurrences(recurrence, first, first, "UTC", EVER_START, EVER_END)
    assert issubclass(RecurrenceError, ValueError)


def test_invalid_times() -> None:
    r = rec(DAILY, "2024-01-01")
    first = datetime(2024, 1, 1, 9, tzinfo=UTC)
    with pytest.raises(RecurrenceError, match="timezone-aware"):
        expand_occurrences(r, first.replace(tzinfo=None), first, "UTC", EVER_START, EVER_END)
    with pytest.raises(RecurrenceError, match="timezone-aware"):
        expand_occurrences(r, first, first, "UTC", EVER_START.replace(tzinfo=None), EVER_END)
    with pytest.raises(RecurrenceError, match="before first_start"):
        expand_occurrences(r, first, first - timedelta(seconds=1), "UTC", EVER_START, EVER_END)
    with pytest.raises(RecurrenceError, match="unknown time zone"):
        expand_occurrences(r, first, first, "Mars/Olympus_Mons", EVER_START, EVER_END)


# --------------------------------------------------------------------------- property: RFC 5545 oracle

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
ICAL_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
EWS_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
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
POSITIONS = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
SET_DAYS = {"Day": ICAL_DAYS, "Weekday": ICAL_DAYS[:5], "WeekendDay": ICAL_DAYS[5:]}


def to_rrule(pattern: dict[str, Any]) -> str:
    """The RFC 5545 rule for an EWS pattern, written independently of the module."""
    kind = pattern["type"]
    interval = pattern.get("interval", 1)
    if kind == "Daily":
        return f"FREQ=DAILY;INTERVAL={interval}"
    if kind == "Weekly":
        byday = ",".join(ICAL_DAYS[EWS_DAYS.index(x)] for x in pattern["days_of_week"])
        wkst = ICAL_DAYS[EWS_DAYS.index(pattern["first_day_of_week"])]
        return f"FREQ=WEEKLY;INTERVAL={interval};BYDAY={byday};WKST={wkst}"

    def day_of_month(dom: int) -> str:
        # Exchange's "day 31, or the last day" is the first of {dom, last day} in the month.
        return f"BYMONTHDAY={dom}" if dom <= 28 else f"BYMONTHDAY={dom},-1;BYSETPOS=1"

    def relative() -> str:
        days = pattern["days_of_week"]
        byday = ",".join(SET_DAYS[days]) if days in SET_DAYS else ICAL_DAYS[EWS_DAYS.index(days)]
        return f"BYDAY={byday};BYSETPOS={POSITIONS[pattern['day_of_week_index']]}"

    if kind == "AbsoluteMonthly":
        return f"FREQ=MONTHLY;INTERVAL={interval};{day_of_month(pattern['day_of_month'])}"
    if kind == "RelativeMonthly":
        return f"FREQ=MONTHLY;INTERVAL={interval};{relative()}"
    month = MONTHS.index(pattern["month"]) + 1
    if kind == "AbsoluteYearly":
        return f"FREQ=YEARLY;BYMONTH={month};{day_of_month(pattern['day_of_month'])}"
    return f"FREQ=YEARLY;BYMONTH={month};{relative()}"


day_names = st.sampled_from(EWS_DAYS)
relative_days = st.sampled_from([*EWS_DAYS, "Day", "Weekday", "WeekendDay"])
positions = st.sampled_from(list(POSITIONS))
patterns = st.one_of(
    st.builds(lambda n: {"type": "Daily", "interval": n}, st.integers(1, 10)),
    st.builds(
        lambda n, days, fdow: {
            "type": "Weekly",
            "interval": n,
            "days_of_week": sorted(days, key=EWS_DAYS.index),
            "first_day_of_week": fdow,
        },
        st.integers(1, 4),
        st.sets(day_names, min_size=1),
        day_names,
    ),
    st.builds(
        lambda n, dom: {"type": "AbsoluteMonthly", "interval": n, "day_of_month": dom},
        st.integers(1, 6),
        st.integers(1, 31),
    ),
    st.builds(
        lambda n, days, pos: {"type": "RelativeMonthly", "interval": n, "days_of_week": days, "day_of_week_index": pos},
        st.integers(1, 6),
        relative_days,
        positions,
    ),
    st.builds(
        lambda m, dom: {
            "type": "AbsoluteYearly",
            "month": MONTHS[m - 1],
            "day_of_month": min(dom, 29 if m == 2 else [31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]),
        },
        st.integers(1, 12),
        st.integers(1, 31),
    ),
    st.builds(
        lambda m, days, pos: {
            "type": "RelativeYearly",
            "month": MONTHS[m - 1],
            "days_of_week": days,
            "day_of_week_index": pos,
        },
        st.integers(1, 12),
        relative_days,
        positions,
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=patterns,
    zone=st.sampled_from(ZONES),
    start_date=st.dates(date(2000, 1, 1), date(2035, 12, 31)),
    # Quarter hours over the whole day, so gap and overlap hours come up.
    minute_of_day=st.integers(0, 95).map(lambda q: q * 15),
    duration_minutes=st.integers(0, 3 * 24 * 60),
    count=st.one_of(st.none(), st.integers(1, 40)),
    window_offset_days=st.integers(-30, 3000),
    window_days=st.integers(1, 800),
)
def test_matches_rfc5545_expansion(
    pattern: dict[str, Any],
    zone: str,
    start_date: date,
    minute_of_day: int,
    duration_minutes: int,
    count: int | None,
    window_offset_days: int,
    window_days: int,
) -> None:
    tz = ZoneInfo(zone)
    rule = to_rrule(pattern)
    # dateutil yields only matching dates (it does not force DTSTART in), so its first date
    # from start_date is the Exchange series' first date; RFC 5545 then anchors on it.
    first_date = rrule.rrulestr(rule, dtstart=datetime.combine(start_date, time(0)))[0].date()
    tod = time(minute_of_day // 60, minute_of_day % 60)
    first_start = datetime.combine(first_date, tod, tzinfo=tz)
    duration = timedelta(minutes=duration_minutes)

    recurrence = rec(pattern, start_date.isoformat(), **({"count": count} if count else {}))
    window_start = datetime.combine(start_date, time(0), tzinfo=UTC) + timedelta(days=window_offset_days)
    window_end = window_start + timedelta(days=window_days)
    got = expand_occurrences(
        recurrence, first_start, first_start + duration, zone, window_start, window_end, all_day=False
    )

    vevent = icalendar.Event()
    vevent.add("uid", "oracle")
    vevent.add("dtstart", first_start)
    vevent.add("duration", duration)
    vevent.add("rrule", icalendar.vRecur.from_ical(rule + (f";COUNT={count}" if count else "")))
    calendar_ = icalendar.Calendar()
    calendar_.add_component(vevent)
    margin = duration + timedelta(days=2)
    starts = sorted(
        component["DTSTART"].dt.astimezone(UTC)
        for component in recurring_ical_events.of(calendar_).between(window_start - margin, window_end + margin)
    )
    expected = [
        (s, s + duration)
        for s in starts
        if s < window_end and (s + duration > window_start or (duration == timedelta(0) and s >= window_start))
    ]
    event("window has occurrences" if expected else "window is empty")
    assert got == expected
    assert all(start.tzinfo is UTC for start, _ in got)


@settings(max_examples=150, deadline=None)
@given(
    pattern=patterns,
    zone=st.sampled_from(ZONES),
    start_date=st.dates(date(2000, 1, 1), date(2035, 12, 31)),
    days=st.integers(1, 3),
    range_=st.one_of(
        st.builds(lambda n: {"count": n}, st.integers(1, 60)),
        st.builds(lambda n: {"end_days": n}, st.integers(0, 2000)),
    ),
)
def test_all_day_and_last_occurrence_properties(
    pattern: dict[str, Any], zone: str, start_date: date, days: int, range_: dict[str, int]
) -> None:
    tz = ZoneInfo(zone)
    if "count" in range_:
        recurrence = rec(pattern, start_date.isoformat(), count=range_["count"])
    else:
        end_date = start_date + timedelta(days=range_["end_days"])
        recurrence = rec(pattern, start_date.isoformat(), end_date=end_date.isoformat())
    first = datetime.combine(start_date, time(0), tzinfo=tz)
    try:
        validate_recurrence(recurrence)
    except RecurrenceError:
        assert "end_days" in range_  # only an EndDate range can leave no occurrence
        return
    end = datetime.combine(start_date + timedelta(days=days), time(0), tzinfo=tz)
    everything = expand_occurrences(recurrence, first, end, zone, EVER_START, datetime(2200, 1, 1, tzinfo=UTC))
    assert everything
    if "count" in range_:
        assert len(everything) == range_["count"]
    assert everything[0] == first_occurrence(recurrence, first, end, zone)
    assert everything[-1] == last_occurrence(recurrence, first, end, zone)
    previous: datetime | None = None
    for start, stop in everything:
        local_start, local_stop = start.astimezone(tz), stop.astimezone(tz)
        assert local_start.time() == time(0)
        assert (local_stop.date() - local_start.date()).days == days
        assert local_start.date() >= start_date
        if previous is not None:
            assert start > previous
        previous = start
