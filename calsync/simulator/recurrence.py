"""Expansion of Exchange (EWS) recurrence patterns for the Exchange simulator.

The simulator stores a recurring master the way EWS describes it (a ``RecurrenceType``
pattern plus range, see ``types.xsd``) and must answer CalendarView queries with the
occurrences Exchange itself would produce.  The rules here follow Exchange rather than
RFC 5545 where the two differ:

* Occurrences are the pattern dates on or after ``range.start_date``; the series' Start is
  not an extra occurrence (RFC 5545 always counts DTSTART).
* ``AbsoluteMonthly``/``AbsoluteYearly`` with a day the month lacks fall on the month's
  last day (RFC 5545 / ``rrule`` would skip the month).
* Occurrences keep their local wall-clock time across daylight-saving changes; a local
  time inside a spring-forward gap is pushed forward by the gap's length (02:30 becomes
  03:30) and an ambiguous one resolves to its first instance (``fold=0``).

Dates are generated arithmetically per *period* (a day, week, month or year block of
``interval`` units) so a query far in the future jumps straight to the relevant period
instead of walking the series from its start.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_PERIODS",
    "RecurrenceError",
    "expand_occurrences",
    "first_occurrence",
    "last_occurrence",
    "validate_recurrence",
]

#: Safety cap on the number of pattern periods (days, weeks, months, years) one call may walk.
#: With the skip-ahead only a window spanning this many periods can reach it.
MAX_PERIODS = 100_000


class RecurrenceError(ValueError):
    """Invalid recurrence data; the simulator maps it to an EWS error response."""


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEEKDAY_INDEX = {name.lower(): i for i, name in enumerate(_WEEKDAYS)}
# EWS DayOfWeekType also has these pseudo-days, which stand for sets of weekdays.
_DAY_SETS: dict[str, frozenset[int]] = {
    "day": frozenset(range(7)),
    "weekday": frozenset(range(5)),
    "weekendday": frozenset({5, 6}),
}
# Spelled out rather than taken from calendar.month_name, which follows the process locale.
MONTH_NAMES = (
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
)
_MONTH_INDEX = {name.lower(): i for i, name in enumerate(MONTH_NAMES, start=1)}
# DayOfWeekIndexType -> position in the month's list of matching days.
_POSITION = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": -1}
_PATTERN_TYPES = ("Daily", "Weekly", "AbsoluteMonthly", "RelativeMonthly", "AbsoluteYearly", "RelativeYearly")
# xs:date as EWS sends it: optionally with a zone designator ("2024-03-04Z", "2024-03-04-08:00").
_XS_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:\d{2})?$")


# --------------------------------------------------------------------------- parsing


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise RecurrenceError(f"{where}: missing {key!r}")
    return mapping[key]


def _parse_int(value: Any, what: str, minimum: int) -> int:
    # bool is an int subclass, but True as an interval is certainly a caller bug.
    if isinstance(value, bool):
        raise RecurrenceError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int):
        raise RecurrenceError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise RecurrenceError(f"{what} must be >= {minimum}, got {value}")
    return value


def _parse_date(value: Any, what: str) -> date:
    if isinstance(value, datetime):
        raise RecurrenceError(f"{what} must be a date, not a datetime: {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        match = _XS_DATE.match(value.strip())
        if match:
            try:
                return date.fromisoformat(match.group(1))
            except ValueError:
                pass
    raise RecurrenceError(f"{what} must be a YYYY-MM-DD date, got {value!r}")


def _parse_day_set(value: Any, what: str, *, single: bool) -> frozenset[int]:
    """Turn EWS day names into Python weekday numbers (Monday=0).

    Weekly patterns carry a list (EWS serialises it space-separated, so a string with
    spaces is accepted too); relative patterns carry exactly one DayOfWeekType.
    """
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list | tuple):
        names = list(value)
    else:
        raise RecurrenceError(f"{what} must be a day name or list of day names, got {value!r}")
    if not names:
        raise RecurrenceError(f"{what} must not be empty")
    if single and len(names) != 1:
        raise RecurrenceError(f"{what} must be a single day name, got {value!r}")
    days: set[int] = set()
    for name in names:
        key = str(name).lower()
        if key in _WEEKDAY_INDEX:
            days.add(_WEEKDAY_INDEX[key])
        elif key in _DAY_SETS:
            days |= _DAY_SETS[key]
        else:
            raise RecurrenceError(f"{what}: unknown day {name!r}")
    return frozenset(days)


def _parse_weekday(value: Any, what: str) -> int:
    key = str(value).lower()
    if key not in _WEEKDAY_INDEX:
        raise RecurrenceError(f"{what}: unknown day {value!r}")
    return _WEEKDAY_INDEX[key]


def _parse_month(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12:
        return value
    key = str(value).lower()
    if key not in _MONTH_INDEX:
        raise RecurrenceError(f"{what}: unknown month {value!r}")
    return _MONTH_INDEX[key]


def _parse_position(value: Any, what: str) -> int:
    key = str(value).lower()
    if key not in _POSITION:
        raise RecurrenceError(f"{what}: unknown day_of_week_index {value!r}")
    return _POSITION[key]


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _day_in_month(year: int, month: int, day_of_month: int | None, days: frozenset[int], pos: int) -> date:
    if day_of_month is not None:
        # Exchange, unlike RFC 5545, never skips a month: a missing day means the last day.
        return date(year, month, min(day_of_month, _last_day(year, month)))
    first_weekday = calendar.weekday(year, month, 1)
    matching = [d for d in range(1, _last_day(year, month) + 1) if (first_weekday + d - 1) % 7 in days]
    # Every month has >= 4 of each weekday and >= 8 weekend days, so First..Fourth always exist.
    return date(year, month, matching[pos])


@dataclass(frozen=True)
class _Series:
    """A validated recurrence: a pattern cut into numbered periods, plus the range.

    Period ``k`` is the ``k``-th block of ``interval`` days/weeks/months/years counted
    from the block containing ``start_date``.  Every period except the first (which
    may be partly before ``start_date``) holds exactly ``per_period`` pattern dates,
    which is what lets Numbered ranges and far windows skip periods by arithmetic.
    """

    kind: str
    interval: int
    start_date: date
    end_date: date | None
    count: int | None
    days: frozenset[int] = frozenset()
    week_start: int = 6
    day_of_month: int | None = None
    position: int = 0
    month: int = 1

    # --- period arithmetic

    @property
    def per_period(self) -> int:
        return len(self.days) if self.kind == "Weekly" else 1

    @property
    def _week0(self) -> date:
        return self.start_date - timedelta(days=(self.start_date.weekday() - self.week_start) % 7)

    def period_of(self, day: date) -> int:
        """Index of the period containing ``day`` (0 for days before the series)."""
        if self.kind == "Daily":
            k = (day - self.start_date).days // self.interval
        elif self.kind == "Weekly":
            k = (day - self._week0).days // (7 * self.interval)
        elif self.kind in ("AbsoluteMonthly", "RelativeMonthly"):
            months = (day.year - self.start_date.year) * 12 + day.month - self.start_date.month
            k = months // self.interval
        else:
            k = (day.year - self.start_date.year) // self.interval
        return max(k, 0)

    def period_dates(self, k: int) -> list[date]:
        """Pattern dates of period ``k`` in ascending order, before any range filtering.

        Raises OverflowError/ValueError past year 9999, which callers treat as the end.
        """
        if self.kind == "Daily":
            return [self.start_date + timedelta(days=k * self.interval)]
        if self.kind == "Weekly":
            base = self._week0 + timedelta(days=7 * self.interval * k)
            offsets = sorted((wd - self.week_start) % 7 for wd in self.days)
            return [base + timedelta(days=off) for off in offsets]
        if self.kind in ("AbsoluteMonthly", "RelativeMonthly"):
            months = self.start_date.year * 12 + self.start_date.month - 1 + k * self.interval
            year, month0 = divmod(months, 12)
            return [_day_in_month(year, month0 + 1, self.day_of_month, self.days, self.position)]
        year = self.start_date.year + k * self.interval
        return [_day_in_month(year, self.month, self.day_of_month, self.days, self.position)]

    def _first_period_dates(self) -> list[date]:
        return [d for d in self.period_dates(0) if d >= self.start_date]

    def occurrences_before(self, k: int) -> int:
        if k <= 0:
            return 0
        return len(self._first_period_dates()) + (k - 1) * self.per_period

    # --- walking

    def dates_from(self, lower: date) -> Iterator[tuple[int, date]]:
        """Yield ``(index, date)`` of the series' dates, starting near ``lower``.

        Starts at the period containing ``lower``, so it may yield a few dates before
        ``lower``; the caller filters precisely.  ``index`` is the 0-based occurrence
        number within the whole series (what Numbered ranges count).
        """
        k = self.period_of(max(lower, self.start_date))
        index = self.occurrences_before(k)
        walked = 0
        while True:
            if self.count is not None and index >= self.count:
                return
            try:
                dates = self.period_dates(k)
            except (OverflowError, ValueError):
                return  # past date.max: the calendar ends here
            for day in dates:
                if day < self.start_date:
                    continue
                if self.end_date is not None and day > self.end_date:
                    return
                if self.count is not None and index >= self.count:
                    return
                yield index, day
                index += 1
            k += 1
            walked += 1
            if walked > MAX_PERIODS:
                raise RecurrenceError(
                    f"expansion walked more than {MAX_PERIODS} {self.kind} periods; narrow the window"
                )

    def last_date(self) -> date | None:
        if self.count is not None:
            remaining = self.count - len(self._first_period_dates())
            if remaining <= 0:
                return self._first_period_dates()[self.count - 1]
            k = 1 + (remaining - 1) // self.per_period
            return self.period_dates(k)[(remaining - 1) % self.per_period]
        if self.end_date is None:
            return None
        # The period before the one holding end_date is never empty unless it is period 0,
        # so starting one period early is enough to find the last date.
        k = max(self.period_of(self.end_date) - 1, 0)
        last = None
        for candidate in range(k, k + 2):
            for day in self.period_dates(candidate):
                if self.start_date <= day <= self.end_date:
                    last = day
        return last


def _parse(recurrence: Mapping[str, Any]) -> _Series:
    if not isinstance(recurrence, Mapping):
        raise RecurrenceError(f"recurrence must be a mapping, got {type(recurrence).__name__}")
    pattern = _require(recurrence, "pattern", "recurrence")
    rng = _require(recurrence, "range", "recurrence")
    if not isinstance(pattern, Mapping) or not isinstance(rng, Mapping):
        raise RecurrenceError("recurrence pattern and range must be mappings")

    kind = _require(pattern, "type", "pattern")
    if kind not in _PATTERN_TYPES:
        raise RecurrenceError(f"unknown pattern type {kind!r}; expected one of {', '.join(_PATTERN_TYPES)}")
    where = f"{kind} pattern"
    yearly = kind in ("AbsoluteYearly", "RelativeYearly")
    # EWS yearly patterns have no Interval element; accept one anyway (default 1).
    raw_interval = pattern.get("interval", 1) if yearly else _require(pattern, "interval", where)
    interval = _parse_int(raw_interval, f"{where}: interval", 1)

    range_type = _require(rng, "type", "range")
    start_date = _parse_date(_require(rng, "start_date", f"{range_type} range"), "range.start_date")
    end_date: date | None = None
    count: int | None = None
    if range_type == "NoEnd":
        pass
    elif range_type == "EndDate":
        end_date = _parse_date(_require(rng, "end_date", "EndDate range"), "range.end_date")
        if end_date < start_date:
            raise RecurrenceError(f"range.end_date {end_date} is before range.start_date {start_date}")
    elif range_type == "Numbered":
        count = _parse_int(_require(rng, "count", "Numbered range"), "range.count", 1)
    else:
        raise RecurrenceError(f"unknown range type {range_type!r}; expected NoEnd, EndDate or Numbered")

    common: dict[str, Any] = {
        "kind": kind,
        "interval": interval,
        "start_date": start_date,
        "end_date": end_date,
        "count": count,
    }
    if kind == "Daily":
        series = _Series(**common)
    elif kind == "Weekly":
        days_value = _require(pattern, "days_of_week", where)
        days = _parse_day_set(days_value, f"{where}: days_of_week", single=False)
        week_start_value = pattern.get("first_day_of_week") or "Sunday"
        week_start = _parse_weekday(week_start_value, f"{where}: first_day_of_week")
        series = _Series(**common, days=days, week_start=week_start)
    elif kind == "AbsoluteMonthly":
        dom = _parse_int(_require(pattern, "day_of_month", where), f"{where}: day_of_month", 1)
        if dom > 31:
            raise RecurrenceError(f"{where}: day_of_month must be in 1..31, got {dom}")
        series = _Series(**common, day_of_month=dom)
    elif kind == "AbsoluteYearly":
        month = _parse_month(_require(pattern, "month", where), where)
        dom = _parse_int(_require(pattern, "day_of_month", where), f"{where}: day_of_month", 1)
        # Feb 29 is allowed (it falls on Feb 28 in common years); Feb 30 or April 31 is not.
        max_day = 29 if month == 2 else _last_day(2001, month)
        if dom > max_day:
            month_name = MONTH_NAMES[month - 1]
            raise RecurrenceError(f"{where}: day_of_month must be in 1..{max_day} for {month_name}")
        series = _Series(**common, day_of_month=dom, month=month)
    else:  # RelativeMonthly / RelativeYearly
        days = _parse_day_set(_require(pattern, "days_of_week", where), f"{where}: days_of_week", single=True)
        position = _parse_position(_require(pattern, "day_of_week_index", where), where)
        month = _parse_month(_require(pattern, "month", where), where) if yearly else 1
        series = _Series(**common, days=days, position=position, month=month)

    if end_date is not None and next(series.dates_from(start_date), None) is None:
        # EWS answers ErrorRecurrenceHasNoOccurrence for such a series.
        raise RecurrenceError(f"the recurrence has no occurrence between {start_date} and {end_date}")
    return series


def validate_recurrence(recurrence: Mapping[str, Any]) -> None:
    """Raise RecurrenceError if ``recurrence`` is not something Exchange would accept.

    Lets the simulator reject a CreateItem/UpdateItem up front instead of failing later
    inside a CalendarView.
    """
    _parse(recurrence)


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class _Timing:
    """How to turn a series date into an (original_start, original_end) pair in UTC."""

    tz: ZoneInfo
    time_of_day: time
    duration: timedelta  # timed events: absolute length
    all_day_days: int | None  # all-day events: length in local calendar days

    def pair(self, day: date) -> tuple[datetime, datetime]:
        if self.all_day_days is not None:
            start = datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC)
            end_day = day + timedelta(days=self.all_day_days)
            return start, datetime.combine(end_day, time(0), tzinfo=self.tz).astimezone(UTC)
        # fold=0 on a wall time in a gap uses the offset from before the transition, which
        # lands the instant gap-length later on the wall clock: 02:30 -> 03:30, as Outlook does.
        start = datetime.combine(day, self.time_of_day, tzinfo=self.tz).astimezone(UTC)
        return start, start + self.duration

    def earliest_relevant_date(self, window_start: datetime) -> date:
        """A local date before which no occurrence can still overlap ``window_start``."""
        # One spare day absorbs DST shifts between the wall time and the instant.
        try:
            if self.all_day_days is not None:
                reach = timedelta(days=self.all_day_days + 1)
                return window_start.astimezone(self.tz).date() - reach
            return (window_start - self.duration).astimezone(self.tz).date() - timedelta(days=1)
        except OverflowError:
            return date.min


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise RecurrenceError(f"{what} must be a timezone-aware datetime, got {value!r}")


def _timing(first_start: datetime, first_end: datetime, tz_name: str, all_day: bool | None) -> _Timing:
    _require_aware(first_start, "first_start")
    _require_aware(first_end, "first_end")
    if first_end < first_start:
        raise RecurrenceError(f"first_end {first_end} is before first_start {first_start}")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise RecurrenceError(f"unknown time zone {tz_name!r}") from exc
    local_start = first_start.astimezone(tz)
    local_end = first_end.astimezone(tz)
    if all_day is None:
        # Exchange stores all-day events as local midnight to local midnight; with no flag
        # passed, that shape is what identifies them.
        all_day = (
            local_start.time() == time(0) and local_end.time() == time(0) and local_end.date() > local_start.date()
        )
    days = max((local_end.date() - local_start.date()).days, 1) if all_day else None
    # Ambiguous wall times always resolve to their first instance, so drop any fold.
    return _Timing(tz, local_start.time().replace(fold=0), first_end - first_start, days)


# --------------------------------------------------------------------------- public API


def expand_occurrences(
    recurrence: dict[str, Any],
    first_start: datetime,
    first_end: datetime,
    tz_name: str,
    window_start: datetime,
    window_end: datetime,
    *,
    all_day: bool | None = None,
) -> list[tuple[datetime, datetime]]:
    """Occurrences of the series overlapping ``[window_start, window_end)``, as UTC pairs.

    An occurrence overlaps when it starts before ``window_end`` and ends after
    ``window_start``; a zero-length occurrence exactly at ``window_start`` counts, as in
    an EWS CalendarView.  ``all_day`` overrides the midnight-to-midnight detection.
    """
    series = _parse(recurrence)
    timing = _timing(first_start, first_end, tz_name, all_day)
    _require_aware(window_start, "window_start")
    _require_aware(window_end, "window_end")
    result: list[tuple[datetime, datetime]] = []
    if window_end <= window_start:
        return result
    for _, day in series.dates_from(timing.earliest_relevant_date(window_start)):
        try:
            start, end = timing.pair(day)
        except OverflowError:
            break
        if start >= window_end:
            break
        if end > window_start or (start == end and start >= window_start):
            result.append((start, end))
    return result


def first_occurrence(
    recurrence: dict[str, Any],
    first_start: datetime,
    first_end: datetime,
    tz_name: str,
    *,
    all_day: bool | None = None,
) -> tuple[datetime, datetime]:
    """The first pattern date on or after range.start_date, as a UTC pair.

    This is what Exchange moves a master's Start/End to when the given Start does not
    fall on the pattern.
    """
    series = _parse(recurrence)
    timing = _timing(first_start, first_end, tz_name, all_day)
    first = next(series.dates_from(series.start_date), None)
    if first is None:  # pragma: no cover - _parse rejects series without occurrences
        raise RecurrenceError("the recurrence has no occurrence")
    return timing.pair(first[1])


def last_occurrence(
    recurrence: dict[str, Any],
    first_start: datetime,
    first_end: datetime,
    tz_name: str,
    *,
    all_day: bool | None = None,
) -> tuple[datetime, datetime] | None:
    """The final occurrence as a UTC pair, or None for a NoEnd series.

    Computed by period arithmetic, so a Numbered series of thousands of occurrences or a
    distant EndDate costs the same as a short one.
    """
    series = _parse(recurrence)
    timing = _timing(first_start, first_end, tz_name, all_day)
    try:
        last = series.last_date()
    except (OverflowError, ValueError) as exc:
        raise RecurrenceError("the recurrence runs past the year 9999") from exc
    return None if last is None else timing.pair(last)
