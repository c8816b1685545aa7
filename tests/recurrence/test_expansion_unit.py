"""calsync.sync.recurrence and calsync.sync.occurrences as pure functions: hand-checked dates for
Exchange's rules, daylight saving in three hemispheres' zones, and a property against rrule."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calsync.sync.model import Appointment, Attendee, Kind, ModifiedOccurrence, Window
from calsync.sync.occurrences import (
    content_change_key,
    exceptions_to_fetch,
    expand_series,
    occurrence_item_id,
    plain_occurrences,
    series_in_window,
)
from calsync.sync.recurrence import RecurrenceError, Timing, occurrences, parse_rule, rule_dates
from tests.recurrence.oracle import MONTHS, rule_of

UTC = dt.UTC
BERLIN, NEW_YORK, SYDNEY = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Australia/Sydney")
EVER = dt.datetime(1990, 1, 1, tzinfo=UTC)


def rec(pattern: dict[str, Any], start: str, **rng: Any) -> dict[str, Any]:
    kind = "Numbered" if "count" in rng else "EndDate" if "end_date" in rng else "NoEnd"
    return {"pattern": pattern, "range": {"type": kind, "start_date": start, **rng}}


def dates(recurrence: dict[str, Any], limit: int = 50) -> list[dt.date]:
    out = []
    for day in rule_dates(parse_rule(recurrence)):
        out.append(day)
        if len(out) == limit:
            break
    return out


def d(*values: str) -> list[dt.date]:
    return [dt.date.fromisoformat(v) for v in values]


def local_times(
    recurrence: dict[str, Any], zone: ZoneInfo, at: dt.time, until: dt.datetime
) -> list[tuple[dt.date, dt.time]]:
    first = dt.datetime.combine(dt.date.fromisoformat(recurrence["range"]["start_date"]), at, tzinfo=zone)
    timing = Timing.of_master(first.astimezone(UTC), first.astimezone(UTC) + dt.timedelta(hours=1), zone.key)
    return [
        (o.start.astimezone(zone).date(), o.start.astimezone(zone).time())
        for o in occurrences(parse_rule(recurrence), timing, EVER, until)
    ]


# --- Exchange's rules --------------------------------------------------------------------------


def test_absolute_monthly_31_falls_on_the_last_day_of_short_months() -> None:
    r = rec({"type": "AbsoluteMonthly", "interval": 1, "day_of_month": 31}, "2027-01-01", count=5)
    assert dates(r) == d("2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31")


def test_absolute_yearly_29_february_in_common_years() -> None:
    r = rec({"type": "AbsoluteYearly", "day_of_month": 29, "month": "February"}, "2027-01-01", count=3)
    assert dates(r) == d("2027-02-28", "2028-02-29", "2029-02-28")


def test_relative_monthly_last_weekday_and_second_weekend_day() -> None:
    last = rec({"type": "RelativeMonthly", "interval": 1, "days_of_week": "Weekday", "day_of_week_index": "Last"},
               "2027-01-01", count=3)  # fmt: skip
    assert dates(last) == d("2027-01-29", "2027-02-26", "2027-03-31")
    second = rec({"type": "RelativeMonthly", "interval": 2, "days_of_week": "WeekendDay", "day_of_week_index": "Second"},
                 "2027-01-01", count=2)  # fmt: skip
    assert dates(second) == d("2027-01-03", "2027-03-07")


def test_relative_yearly_third_thursday_of_november() -> None:
    r = rec({"type": "RelativeYearly", "days_of_week": "Thursday", "day_of_week_index": "Fourth", "month": "November"},
            "2026-12-01", count=2)  # fmt: skip
    assert dates(r) == d("2027-11-25", "2028-11-23")


def test_weekly_interval_counts_weeks_from_the_first_day_of_week() -> None:
    pattern = {"type": "Weekly", "interval": 2, "days_of_week": ["Sunday", "Saturday"]}
    assert dates(rec({**pattern, "first_day_of_week": "Sunday"}, "2024-01-07", count=4)) == d(
        "2024-01-07", "2024-01-13", "2024-01-21", "2024-01-27"
    )
    assert dates(rec({**pattern, "first_day_of_week": "Monday"}, "2024-01-07", count=4)) == d(
        "2024-01-07", "2024-01-20", "2024-01-21", "2024-02-03"
    )


def test_start_date_off_pattern_is_not_an_occurrence_and_end_date_is_inclusive() -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Friday"]}, "2027-01-04", end_date="2027-01-22")
    assert dates(r) == d("2027-01-08", "2027-01-15", "2027-01-22")


def test_skipping_ahead_to_a_far_window_counts_a_numbered_range_exactly() -> None:
    r = parse_rule(rec({"type": "Weekly", "interval": 3, "days_of_week": ["Monday", "Thursday"]}, "2020-01-02",
                       count=300))  # fmt: skip
    full = list(rule_dates(r))
    lower = dt.date(2024, 6, 1)
    assert [x for x in rule_dates(r, lower) if x >= lower] == [x for x in full if x >= lower]
    assert len(full) == 300


def test_unknown_pattern_is_refused() -> None:
    with pytest.raises(RecurrenceError):
        parse_rule(rec({"type": "Hourly", "interval": 1}, "2027-01-01"))


# --- wall-clock time and daylight saving ---------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "start", "winter", "summer"),
    [
        # Berlin: CET +1 in January, CEST +2 in July.
        (BERLIN, "2027-01-04", dt.time(8, 0), dt.time(7, 0)),
        # New York: EST -5, EDT -4.
        (NEW_YORK, "2027-01-04", dt.time(14, 0), dt.time(13, 0)),
        # Sydney: AEDT +11 in January (southern summer), AEST +10 in July.
        (SYDNEY, "2027-01-04", dt.time(22, 0), dt.time(23, 0)),
    ],
)
def test_weekly_meeting_keeps_its_local_time_across_daylight_saving(
    zone: ZoneInfo, start: str, winter: dt.time, summer: dt.time
) -> None:
    r = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]}, start, count=30)
    got = local_times(r, zone, dt.time(9, 0), dt.datetime(2028, 1, 1, tzinfo=UTC))
    assert len(got) == 30 and {t for _, t in got} == {dt.time(9, 0)}
    first = dt.datetime.combine(dt.date(2027, 1, 4), dt.time(9, 0), tzinfo=zone)
    timing = Timing.of_master(first.astimezone(UTC), first.astimezone(UTC) + dt.timedelta(hours=1), zone.key)
    utc_times = {o.start.astimezone(UTC).time() for o in occurrences(parse_rule(r), timing, EVER, None)}
    assert utc_times == {winter, summer}


def test_time_in_the_spring_forward_gap_moves_on_by_the_gap() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2027-03-27", count=3)
    got = local_times(r, BERLIN, dt.time(2, 30), dt.datetime(2028, 1, 1, tzinfo=UTC))
    assert got == [
        (dt.date(2027, 3, 27), dt.time(2, 30)),
        (dt.date(2027, 3, 28), dt.time(3, 30)),  # 02:30 does not exist that night
        (dt.date(2027, 3, 29), dt.time(2, 30)),
    ]


def test_ambiguous_time_at_fall_back_takes_the_first_instance() -> None:
    r = rec({"type": "Daily", "interval": 1}, "2027-10-31", count=1)
    first = dt.datetime(2027, 10, 30, 2, 30, tzinfo=BERLIN)
    timing = Timing.of_master(first.astimezone(UTC), first.astimezone(UTC) + dt.timedelta(hours=1), "Europe/Berlin")
    (occ,) = occurrences(parse_rule(r), timing, EVER, None)
    assert occ.start == dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST, not 02:30 CET


@pytest.mark.parametrize("zone", ["Pacific/Auckland", "America/Los_Angeles", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_all_day_occurrences_are_local_dates_in_zones_east_and_west_of_utc(zone: str) -> None:
    tz = ZoneInfo(zone)
    start = dt.datetime(2027, 3, 1, tzinfo=tz)
    timing = Timing.of_master(
        start.astimezone(UTC), (start + dt.timedelta(days=2)).astimezone(UTC), zone, True, start.date(),
        dt.date(2027, 3, 3),
    )  # fmt: skip
    r = parse_rule(rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]}, "2027-03-01", count=40))
    got = list(occurrences(r, timing, EVER, None))
    assert [o.start_date for o in got] == [dt.date(2027, 3, 1) + dt.timedelta(weeks=i) for i in range(40)]
    assert all(o.end_date == o.start_date + dt.timedelta(days=2) for o in got if o.start_date and o.end_date)
    assert all(o.start.astimezone(tz).time() == dt.time(0, 0) for o in got)


# --- against an independent expansion --------------------------------------------------------------

DAY = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
pattern_strategy = st.one_of(
    st.builds(lambda i: {"type": "Daily", "interval": i}, st.integers(1, 40)),
    st.builds(
        lambda i, ds, f: {"type": "Weekly", "interval": i, "days_of_week": ds, "first_day_of_week": f},
        st.integers(1, 5), st.lists(st.sampled_from(DAY), min_size=1, max_size=7, unique=True), st.sampled_from(DAY),
    ),
    st.builds(lambda i, m: {"type": "AbsoluteMonthly", "interval": i, "day_of_month": m}, st.integers(1, 13),
              st.integers(1, 31)),
    st.builds(
        lambda i, w, x: {"type": "RelativeMonthly", "interval": i, "days_of_week": w, "day_of_week_index": x},
        st.integers(1, 13), st.sampled_from((*DAY, "Day", "Weekday", "WeekendDay")),
        st.sampled_from(("First", "Second", "Third", "Fourth", "Last")),
    ),
    st.builds(lambda m, x: {"type": "AbsoluteYearly", "month": MONTHS[m], "day_of_month": x},
              st.integers(0, 11), st.integers(1, 28)),
    st.builds(
        lambda m, w, x: {"type": "RelativeYearly", "month": m, "days_of_week": w, "day_of_week_index": x},
        st.sampled_from(MONTHS), st.sampled_from((*DAY, "Day", "Weekday", "WeekendDay")),
        st.sampled_from(("First", "Second", "Third", "Fourth", "Last")),
    ),
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    pattern=pattern_strategy,
    start=st.dates(dt.date(2000, 1, 1), dt.date(2040, 1, 1)),
    count=st.integers(1, 60),
    zone=st.sampled_from(("Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata")),
    at=st.times(),
)
def test_expansion_equals_rrule(pattern: dict[str, Any], start: dt.date, count: int, zone: str, at: dt.time) -> None:
    at = at.replace(microsecond=0, second=0)
    recurrence = rec(pattern, start.isoformat(), count=count)
    tz = ZoneInfo(zone)
    want = [x.replace(fold=0).astimezone(UTC) for x in rule_of(recurrence, dt.datetime.combine(start, at, tzinfo=tz))]
    first = want[0]
    timing = Timing.of_master(first, first + dt.timedelta(minutes=30), zone)
    assert [o.start for o in occurrences(parse_rule(recurrence), timing, EVER, None)] == want


# --- rows of a series --------------------------------------------------------------------------------

NOW = dt.datetime(2027, 1, 11, 10, 0, tzinfo=UTC)
WINDOW = Window(now=NOW, past_days=30, future_days=60)


def master(**changes: Any) -> Appointment:
    first = dt.datetime(2026, 11, 2, 9, 0, tzinfo=BERLIN).astimezone(UTC)
    base = Appointment(
        item_id="M1",
        change_key="ck1",
        kind=Kind.SERIES,
        start=first,
        end=first + dt.timedelta(hours=1),
        subject="Weekly customer call",
        location="Teams",
        uid="UID-1",
        timezone="Europe/Berlin",
        organizer_email="rep@example.com",
        attendees=(Attendee("buyer@customer.example", "Buyer", "required", "Accept"),),
        recurrence=rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]}, "2026-11-02"),
        exchange_modified_at=NOW,
    )
    return dataclasses.replace(base, **changes)


def test_occurrences_inherit_the_master_and_are_keyed_by_original_start() -> None:
    rows = expand_series(master(), {}, WINDOW)
    starts = [r.start.astimezone(BERLIN) for r in rows]
    assert starts[0].date() == dt.date(2026, 12, 14) and starts[-1].date() == dt.date(2027, 3, 8)
    assert all(s.time() == dt.time(9, 0) and s.weekday() == 0 for s in starts)
    r = rows[0]
    assert r.item_id == "M1@2026-12-14T08:00:00Z" == occurrence_item_id("M1", r.start)
    assert (r.kind, r.series_item_id, r.original_start, r.subject, r.attendees[0].email, r.uid) == (
        Kind.OCCURRENCE, "M1", r.start, "Weekly customer call", "buyer@customer.example", "UID-1",
    )  # fmt: skip
    assert r.change_key == content_change_key(r) and r.recurrence is None


def test_exceptions_carry_their_own_fields_and_deleted_occurrences_have_no_row() -> None:
    moved_from = dt.datetime(2027, 1, 18, 8, 0, tzinfo=UTC)
    gone = dt.datetime(2027, 1, 25, 8, 0, tzinfo=UTC)
    ref = ModifiedOccurrence("EX1", moved_from + dt.timedelta(days=1), moved_from + dt.timedelta(days=1, hours=2),
                             moved_from)  # fmt: skip
    m = master(modified_occurrences=(ref,), deleted_occurrences=(gone,))
    fetched = dataclasses.replace(
        m, item_id="EX1", kind=Kind.EXCEPTION, start=ref.start, end=ref.end, subject="At the customer", recurrence=None
    )
    assert exceptions_to_fetch([m], WINDOW) == ["EX1"]
    rows = {r.item_id: r for r in expand_series(m, {"EX1": fetched}, WINDOW)}
    assert occurrence_item_id("M1", gone) not in rows
    exc = rows[occurrence_item_id("M1", moved_from)]
    assert (exc.kind, exc.subject, exc.start, exc.original_start) == (Kind.EXCEPTION, "At the customer", ref.start,
                                                                      moved_from)  # fmt: skip


def test_a_new_master_change_key_alone_rewrites_no_occurrence() -> None:
    before = {r.item_id: r.change_key for r in expand_series(master(), {}, WINDOW)}
    after = {r.item_id: r.change_key for r in expand_series(master(change_key="ck2",
                                                                   exchange_modified_at=NOW + dt.timedelta(hours=1)),
                                                            {}, WINDOW)}  # fmt: skip
    assert before == after
    renamed = {r.item_id: r.change_key for r in expand_series(master(subject="Renamed"), {}, WINDOW)}
    assert set(renamed) == set(before) and all(renamed[k] != before[k] for k in before)


def test_private_series_occurrences_show_busy_time_only() -> None:
    rows = expand_series(master(sensitivity="Private"), {}, WINDOW)
    assert rows and all(r.details_withheld and r.subject is None and r.attendees == () for r in rows)


def test_roll_skips_covered_and_deleted_starts() -> None:
    m = master()
    all_rows = plain_occurrences(m, WINDOW)
    covered = frozenset(r.original_start for r in all_rows[:5] if r.original_start)
    deleted = all_rows[6].original_start
    assert deleted is not None
    rolled = plain_occurrences(dataclasses.replace(m, deleted_occurrences=(deleted,)), WINDOW, covered)
    assert [r.item_id for r in rolled] == [r.item_id for r in all_rows[5:] if r.original_start != deleted]


def test_series_window_rule_uses_the_last_occurrence() -> None:
    ended = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]}, "2026-01-05", end_date="2026-11-30")
    assert not series_in_window(master(recurrence=ended, start=dt.datetime(2026, 1, 5, 8, tzinfo=UTC),
                                       end=dt.datetime(2026, 1, 5, 9, tzinfo=UTC)), WINDOW)  # fmt: skip
    later = rec({"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]}, "2026-01-05", end_date="2026-12-21")
    assert series_in_window(master(recurrence=later, start=dt.datetime(2026, 1, 5, 8, tzinfo=UTC),
                                   end=dt.datetime(2026, 1, 5, 9, tzinfo=UTC)), WINDOW)  # fmt: skip
    assert series_in_window(master(), WINDOW)  # no end
