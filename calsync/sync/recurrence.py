"""Expanding an Exchange recurrence (the master's Recurrence element, as JSON) into occurrences.

calsync expands series itself rather than asking Exchange for a CalendarView (see
docs/recurrence.md): SyncFolderItems already hands over every master with its pattern, range,
ModifiedOccurrences and DeletedOccurrences, so the occurrences cost no further EWS call, and
the daily horizon roll needs no call at all.

Exchange's rules, where they differ from RFC 5545:

* occurrences are the pattern's dates on or after the range's start date; the master's own
  Start is the first of them, never an extra one;
* an absolute monthly/yearly day a month lacks (31 in April, 29 February in 2027) falls on the
  month's last day instead of being skipped;
* occurrences keep the wall-clock time of the master's start time zone across daylight-saving
  changes; a time inside a spring-forward gap moves on by the gap, an ambiguous one takes its
  first instance (Python's fold=0 does exactly both);
* all-day occurrences are local dates: midnight to midnight in that zone.

Pure: no I/O, no Exchange types; the same code serves a sync batch and the horizon roll.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["Occurrence", "RecurrenceError", "Rule", "Timing", "occurrences", "parse_rule", "rule_dates"]

UTC = dt.UTC
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_GROUPS = {"day": frozenset(range(7)), "weekday": frozenset(range(5)), "weekendday": frozenset({5, 6})}
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_INDEXES = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": -1}
#: A series walks at most this many periods in one call: a bad pattern must not hang a worker.
MAX_PERIODS = 200_000


class RecurrenceError(ValueError):
    """A recurrence calsync cannot expand (unknown pattern type, missing field)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed recurrence. Periods are blocks of `interval` days/weeks/months/years counted from
    the block holding `start_date`; every period but the first yields the same number of dates,
    which lets a window far from the start (or a Numbered range) be reached by arithmetic."""

    kind: str  # daily | weekly | monthly | yearly
    interval: int
    start_date: dt.date
    end_date: dt.date | None = None  # inclusive
    count: int | None = None
    weekdays: frozenset[int] = frozenset()  # Monday = 0
    week_start: int = 6
    day_of_month: int | None = None  # absolute patterns
    index: int = 0  # relative patterns: 0..3, or -1 for Last
    month: int = 1  # yearly patterns

    def _week_zero(self) -> dt.date:
        return self.start_date - dt.timedelta(days=(self.start_date.weekday() - self.week_start) % 7)

    def period_of(self, day: dt.date) -> int:
        if self.kind == "daily":
            k = (day - self.start_date).days // self.interval
        elif self.kind == "weekly":
            k = (day - self._week_zero()).days // (7 * self.interval)
        elif self.kind == "monthly":
            k = ((day.year - self.start_date.year) * 12 + day.month - self.start_date.month) // self.interval
        else:
            k = (day.year - self.start_date.year) // self.interval
        return max(k, 0)

    def period(self, k: int) -> list[dt.date]:
        """The pattern's dates in period k, ascending, before the range is applied."""
        if self.kind == "daily":
            return [self.start_date + dt.timedelta(days=k * self.interval)]
        if self.kind == "weekly":
            first = self._week_zero() + dt.timedelta(weeks=k * self.interval)
            return sorted(first + dt.timedelta(days=(d - self.week_start) % 7) for d in self.weekdays)
        if self.kind == "monthly":
            year, month0 = divmod(self.start_date.year * 12 + self.start_date.month - 1 + k * self.interval, 12)
            return [self._day_in(year, month0 + 1)]
        return [self._day_in(self.start_date.year + k * self.interval, self.month)]

    def _day_in(self, year: int, month: int) -> dt.date:
        length = calendar.monthrange(year, month)[1]
        if self.day_of_month is not None:
            return dt.date(year, month, min(self.day_of_month, length))
        days = [d for d in range(1, length + 1) if dt.date(year, month, d).weekday() in self.weekdays]
        return dt.date(year, month, days[self.index])

    def per_period(self) -> int:
        return len(self.weekdays) if self.kind == "weekly" else 1

    def first_period_count(self) -> int:
        return sum(1 for d in self.period(0) if d >= self.start_date)


def _int(value: Any, what: str, lowest: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RecurrenceError(f"{what}: expected an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError as exc:
        raise RecurrenceError(f"{what}: expected an integer, got {value!r}") from exc
    if number < lowest:
        raise RecurrenceError(f"{what}: must be at least {lowest}, got {number}")
    return number


def _date(value: Any, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise RecurrenceError(f"{what}: expected YYYY-MM-DD, got {value!r}") from exc


def _days(value: Any, what: str) -> frozenset[int]:
    names = value.split() if isinstance(value, str) else list(value or ())
    out: set[int] = set()
    for name in names:
        key = str(name).lower()
        if key in _DAY_NAMES:
            out.add(_DAY_NAMES.index(key))
        elif key in _DAY_GROUPS:
            out |= _DAY_GROUPS[key]
        else:
            raise RecurrenceError(f"{what}: unknown day {name!r}")
    if not out:
        raise RecurrenceError(f"{what}: no day given")
    return frozenset(out)


def _month(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12:
        return value
    key = str(value).lower()
    if key not in _MONTH_NAMES:
        raise RecurrenceError(f"unknown month {value!r}")
    return _MONTH_NAMES.index(key) + 1


def parse_rule(recurrence: Mapping[str, Any]) -> Rule:
    """The recurrence JSON calsync stores (EWS names, see calsync.source.ews.convert) as a Rule."""
    pattern = recurrence.get("pattern") or {}
    rng = recurrence.get("range") or {}
    ptype = pattern.get("type")
    rtype = rng.get("type")
    start = _date(rng.get("start_date"), "range.start_date")
    end = _date(rng.get("end_date"), "range.end_date") if rtype == "EndDate" else None
    count = _int(rng.get("count"), "range.count") if rtype == "Numbered" else None
    if rtype not in ("NoEnd", "EndDate", "Numbered"):
        raise RecurrenceError(f"unknown range type {rtype!r}")
    interval = _int(pattern.get("interval", 1), "pattern.interval")
    common: dict[str, Any] = {"interval": interval, "start_date": start, "end_date": end, "count": count}
    if ptype == "Daily":
        return Rule("daily", **common)
    if ptype == "Weekly":
        first_day = str(pattern.get("first_day_of_week") or "Sunday").lower()
        if first_day not in _DAY_NAMES:
            raise RecurrenceError(f"unknown first day of week {first_day!r}")
        weekdays = _days(pattern.get("days_of_week"), "pattern.days_of_week")
        return Rule("weekly", **common, weekdays=weekdays, week_start=_DAY_NAMES.index(first_day))
    if ptype in ("AbsoluteMonthly", "AbsoluteYearly"):
        dom = _int(pattern.get("day_of_month"), "pattern.day_of_month")
        if dom > 31:
            raise RecurrenceError(f"pattern.day_of_month: {dom} is past any month's end")
        if ptype == "AbsoluteMonthly":
            return Rule("monthly", **common, day_of_month=dom)
        return Rule("yearly", **{**common, "interval": 1}, day_of_month=dom, month=_month(pattern.get("month")))
    if ptype in ("RelativeMonthly", "RelativeYearly"):
        weekdays = _days(pattern.get("days_of_week"), "pattern.days_of_week")
        index = _INDEXES.get(str(pattern.get("day_of_week_index", "")).lower())
        if index is None:
            raise RecurrenceError(f"unknown day_of_week_index {pattern.get('day_of_week_index')!r}")
        if ptype == "RelativeMonthly":
            return Rule("monthly", **common, weekdays=weekdays, index=index)
        return Rule(
            "yearly", **{**common, "interval": 1}, weekdays=weekdays, index=index, month=_month(pattern.get("month"))
        )
    raise RecurrenceError(f"unknown pattern type {ptype!r}")


def rule_dates(rule: Rule, lower: dt.date | None = None) -> Iterator[dt.date]:
    """The series' dates in order, from the period holding `lower` on (a few may precede it)."""
    k = rule.period_of(lower) if lower is not None and lower > rule.start_date else 0
    # How many occurrences the periods before k hold: what a Numbered range counts.
    seen = 0 if k == 0 else rule.first_period_count() + (k - 1) * rule.per_period()
    for walked in range(MAX_PERIODS):
        try:
            days = rule.period(k + walked)
        except (OverflowError, ValueError):
            return  # past the year 9999
        for day in days:
            if day < rule.start_date:
                continue
            if rule.end_date is not None and day > rule.end_date:
                return
            if rule.count is not None and seen >= rule.count:
                return
            seen += 1
            yield day
    raise RecurrenceError(f"more than {MAX_PERIODS} periods walked")


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One occurrence as the pattern puts it (an exception may move it later)."""

    start: dt.datetime  # UTC; also the original start that identifies it
    end: dt.datetime  # UTC
    start_date: dt.date | None = None  # all-day only
    end_date: dt.date | None = None  # all-day only, exclusive


@dataclass(frozen=True, slots=True)
class Timing:
    """How a series date becomes an occurrence: the master's wall-clock time and length."""

    zone: dt.tzinfo
    time_of_day: dt.time
    duration: dt.timedelta
    all_day_days: int | None = None

    @classmethod
    def of_master(
        cls,
        start: dt.datetime,
        end: dt.datetime,
        zone_name: str | None,
        all_day: bool = False,
        start_date: dt.date | None = None,
        end_date: dt.date | None = None,
    ) -> Timing:
        """The master's Start/End are its first occurrence; its start time zone rules the rest."""
        zone: dt.tzinfo = ZoneInfo(zone_name) if zone_name else UTC
        local = start.astimezone(zone)
        if all_day:
            first = start_date or local.date()
            last = end_date or end.astimezone(zone).date()
            return cls(zone, dt.time(), dt.timedelta(0), max((last - first).days, 1))
        return cls(zone, local.time().replace(fold=0, tzinfo=None), end - start)

    def at(self, day: dt.date) -> Occurrence:
        if self.all_day_days is not None:
            last = day + dt.timedelta(days=self.all_day_days)
            return Occurrence(
                dt.datetime.combine(day, dt.time(), tzinfo=self.zone).astimezone(UTC),
                dt.datetime.combine(last, dt.time(), tzinfo=self.zone).astimezone(UTC),
                day,
                last,
            )
        start = dt.datetime.combine(day, self.time_of_day, tzinfo=self.zone).astimezone(UTC)
        return Occurrence(start, start + self.duration)

    def earliest_date(self, instant: dt.datetime) -> dt.date:
        """No occurrence on a local date before this one can still end at or after `instant`."""
        if self.all_day_days is not None:
            return instant.astimezone(self.zone).date() - dt.timedelta(days=self.all_day_days + 1)
        return (instant - self.duration).astimezone(self.zone).date() - dt.timedelta(days=1)


def occurrences(
    rule: Rule, timing: Timing, ends_from: dt.datetime, starts_before: dt.datetime | None
) -> Iterator[Occurrence]:
    """Occurrences with end >= ends_from and (if given) start < starts_before, in order."""
    try:
        lower = timing.earliest_date(ends_from)
    except OverflowError:
        lower = dt.date.min
    for day in rule_dates(rule, lower):
        try:
            occ = timing.at(day)
        except OverflowError:
            return
        if starts_before is not None and occ.start >= starts_before:
            return
        if occ.end >= ends_from:
            yield occ
