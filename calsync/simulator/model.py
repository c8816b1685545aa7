"""The simulated mailbox contents: calendar items, their JSON contract and their validation.

Times are kept as aware UTC datetimes internally (that is what EWS puts on the wire) and are
rendered in the item's own time zone for the admin JSON, so that all-day items read as local
midnights exactly as an Exchange user sees them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from calsync.simulator.recurrence import MONTH_NAMES

UTC = dt.UTC

SENSITIVITIES = ("Normal", "Personal", "Private", "Confidential")
FREE_BUSY = ("Free", "Tentative", "Busy", "OOF", "WorkingElsewhere", "NoData")
RESPONSES = ("Unknown", "Organizer", "Tentative", "Accept", "Decline", "NoResponseReceived")
BODY_TYPES = ("HTML", "Text")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
RELATIVE_DAYS = (*DAY_NAMES, "Day", "Weekday", "WeekendDay")
DAY_INDEXES = ("First", "Second", "Third", "Fourth", "Last")
PATTERN_TYPES = (
    "Daily",
    "Weekly",
    "AbsoluteMonthly",
    "RelativeMonthly",
    "AbsoluteYearly",
    "RelativeYearly",
)
RANGE_TYPES = ("NoEnd", "EndDate", "Numbered")

#: Fields an occurrence exception may override (the rest comes from the master).
OCCURRENCE_FIELDS = (
    "start",
    "end",
    "subject",
    "location",
    "body",
    "body_type",
    "sensitivity",
    "legacy_free_busy_status",
    "is_cancelled",
)


class ValidationError(ValueError):
    """A bad admin request (mapped to HTTP 400 by the admin API)."""


class NotFound(LookupError):
    """An unknown mailbox, item or occurrence (mapped to HTTP 404 by the admin API)."""


@cache
def zone(name: str) -> ZoneInfo:
    """ZoneInfo objects are cached because the renderer asks for them on every item."""
    return ZoneInfo(name)


def check_zone(name: Any) -> str:
    if not isinstance(name, str):
        raise ValidationError("timezone must be an IANA zone name")
    try:
        zone(name)
    except Exception as exc:
        raise ValidationError(f"unknown timezone {name!r}") from exc
    from calsync.simulator.tz import windows_zone

    if windows_zone(name) is None:
        raise ValidationError(f"timezone {name!r} has no Windows equivalent")
    return name


def parse_time(value: Any, tz_name: str, what: str) -> dt.datetime:
    """Accept ISO 8601 with offset (or a naive/date value, read in the item's zone) and return UTC."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(f"{what}: not an ISO 8601 time: {value!r}") from exc
    else:
        raise ValidationError(f"{what}: expected an ISO 8601 string")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz_name))
    return parsed.astimezone(UTC)


def iso_local(value: dt.datetime, tz_name: str) -> str:
    return value.astimezone(zone(tz_name)).isoformat()


def local_midnight(value: dt.datetime, tz_name: str, round_up: bool = False) -> dt.datetime:
    """Snap to a local midnight the way Exchange does for all-day items (start down, end up)."""
    tz = zone(tz_name)
    local = value.astimezone(tz)
    day = local.date()
    if round_up and local.time() != dt.time(0, 0):
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz).astimezone(UTC)


@dataclass(slots=True)
class Person:
    email: str
    name: str
    response: str = "Unknown"

    def to_json(self, with_response: bool = True) -> dict[str, str]:
        out = {"email": self.email, "name": self.name}
        if with_response:
            out["response"] = self.response
        return out

    @classmethod
    def from_json(cls, data: Any, what: str, with_response: bool = True) -> Person:
        if not isinstance(data, dict) or not isinstance(data.get("email"), str) or "@" not in data["email"]:
            raise ValidationError(f"{what}: expected {{'email', 'name'}}")
        name = data.get("name") or data["email"].split("@")[0]
        response = data.get("response", "Unknown") if with_response else "Unknown"
        if response not in RESPONSES:
            raise ValidationError(f"{what}: response must be one of {RESPONSES}")
        return cls(email=data["email"], name=str(name), response=response)


@dataclass(slots=True)
class ModifiedOccurrence:
    """An exception of a series: the occurrence at original_start with some fields overridden."""

    original_start: dt.datetime
    id: str
    change_key: str
    overrides: dict[str, Any]
    last_modified: dt.datetime


@dataclass(slots=True, eq=False)
class CalendarItem:
    id: str
    change_key: str
    uid: str
    subject: str
    body: str
    body_type: str
    location: str
    start: dt.datetime
    end: dt.datetime
    timezone: str
    is_all_day: bool
    sensitivity: str
    is_cancelled: bool
    legacy_free_busy_status: str
    organizer: Person
    required_attendees: list[Person]
    optional_attendees: list[Person]
    created: dt.datetime
    last_modified: dt.datetime
    recurrence: dict[str, Any] | None = None
    #: The StartTimeZone/EndTimeZone Id to put on the wire instead of the zone's Windows name: what
    #: a third-party client or a migration tool sometimes writes (an unknown or hostile id).
    timezone_id: str | None = None
    modified_occurrences: dict[dt.datetime, ModifiedOccurrence] = field(default_factory=dict)
    deleted_occurrences: set[dt.datetime] = field(default_factory=set)
    #: Sequence numbers in the mailbox change log (see changelog.py).
    created_seq: int = 0
    last_seq: int = 0
    #: Bumped on every change; Exchange's AppointmentSequenceNumber analogue and ChangeKey source.
    version: int = 1
    #: Rendered XML fragments keyed by shape; emptied on every change.
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def calendar_item_type(self) -> str:
        return "RecurringMaster" if self.recurrence else "Single"

    def to_json(self) -> dict[str, Any]:
        tz = self.timezone
        return {
            "id": self.id,
            "change_key": self.change_key,
            "uid": self.uid,
            "subject": self.subject,
            "body": self.body,
            "body_type": self.body_type,
            "location": self.location,
            "start": iso_local(self.start, tz),
            "end": iso_local(self.end, tz),
            "timezone": tz,
            "is_all_day": self.is_all_day,
            "sensitivity": self.sensitivity,
            "is_cancelled": self.is_cancelled,
            "legacy_free_busy_status": self.legacy_free_busy_status,
            "calendar_item_type": self.calendar_item_type,
            "organizer": self.organizer.to_json(with_response=False),
            "required_attendees": [a.to_json() for a in self.required_attendees],
            "optional_attendees": [a.to_json() for a in self.optional_attendees],
            "created": iso_local(self.created, tz),
            "last_modified": iso_local(self.last_modified, tz),
            "recurrence": self.recurrence,
            "modified_occurrences": [self.occurrence_json(m) for _, m in sorted(self.modified_occurrences.items())],
            "deleted_occurrences": [iso_local(d, tz) for d in sorted(self.deleted_occurrences)],
        } | ({"timezone_id": self.timezone_id} if self.timezone_id is not None else {})

    def occurrence_json(self, mod: ModifiedOccurrence) -> dict[str, Any]:
        tz = self.timezone
        start, end = self.occurrence_times(mod)
        out: dict[str, Any] = {
            "original_start": iso_local(mod.original_start, tz),
            "id": mod.id,
            "change_key": mod.change_key,
        }
        for name, value in mod.overrides.items():
            out[name] = iso_local(value, tz) if isinstance(value, dt.datetime) else value
        out["start"] = iso_local(start, tz)
        out["end"] = iso_local(end, tz)
        return out

    def occurrence_times(self, mod: ModifiedOccurrence) -> tuple[dt.datetime, dt.datetime]:
        duration = self.end - self.start
        start = mod.overrides.get("start", mod.original_start)
        end = mod.overrides.get("end", start + duration if "start" in mod.overrides else None)
        if end is None:
            end = mod.original_start + duration
        if self.is_all_day and "end" not in mod.overrides:
            # All-day occurrences span local midnights: as many local days as the master, not as
            # many hours (the master's first day may be a 23- or 25-hour daylight-saving day).
            tz = zone(self.timezone)
            days = (self.end.astimezone(tz).date() - self.start.astimezone(tz).date()).days
            last = start.astimezone(tz).date() + dt.timedelta(days=days)
            end = dt.datetime.combine(last, dt.time(0, 0), tzinfo=tz).astimezone(UTC)
        return start, end


def validate_recurrence(value: Any) -> dict[str, Any] | None:
    """Check the recurrence JSON strictly, since it is rendered to schema-typed EWS elements."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("pattern"), dict):
        raise ValidationError("recurrence: expected {'pattern': {...}, 'range': {...}}")
    pattern = dict(value["pattern"])
    rng = dict(value.get("range") or {})
    ptype = pattern.get("type")
    if ptype not in PATTERN_TYPES:
        raise ValidationError(f"recurrence.pattern.type must be one of {PATTERN_TYPES}")
    if ptype in ("Daily", "Weekly", "AbsoluteMonthly", "RelativeMonthly"):
        interval = pattern.setdefault("interval", 1)
        if not isinstance(interval, int) or not 1 <= interval <= 999:
            raise ValidationError("recurrence.pattern.interval must be 1..999")
    if ptype == "Weekly":
        days = pattern.get("days_of_week")
        if isinstance(days, str):
            days = [days]
        if not days or not all(d in DAY_NAMES for d in days):
            raise ValidationError("recurrence.pattern.days_of_week must list day names")
        pattern["days_of_week"] = list(days)
        pattern.setdefault("first_day_of_week", "Sunday")
        if pattern["first_day_of_week"] not in DAY_NAMES:
            raise ValidationError("recurrence.pattern.first_day_of_week must be a day name")
    if ptype in ("AbsoluteMonthly", "AbsoluteYearly"):
        dom = pattern.get("day_of_month")
        if not isinstance(dom, int) or not 1 <= dom <= 31:
            raise ValidationError("recurrence.pattern.day_of_month must be 1..31")
    if ptype in ("RelativeMonthly", "RelativeYearly"):
        if pattern.get("days_of_week") not in RELATIVE_DAYS:
            raise ValidationError("recurrence.pattern.days_of_week must be one day name")
        if pattern.get("day_of_week_index") not in DAY_INDEXES:
            raise ValidationError(f"recurrence.pattern.day_of_week_index must be one of {DAY_INDEXES}")
    if ptype in ("AbsoluteYearly", "RelativeYearly") and pattern.get("month") not in MONTH_NAMES:
        raise ValidationError("recurrence.pattern.month must be a month name")
    rtype = rng.get("type")
    if rtype not in RANGE_TYPES:
        raise ValidationError(f"recurrence.range.type must be one of {RANGE_TYPES}")
    for key in ("start_date", "end_date") if rtype == "EndDate" else ("start_date",):
        try:
            dt.date.fromisoformat(str(rng.get(key)))
        except ValueError as exc:
            raise ValidationError(f"recurrence.range.{key} must be YYYY-MM-DD") from exc
    if rtype == "Numbered":
        count = rng.get("count")
        if not isinstance(count, int) or count < 1:
            raise ValidationError("recurrence.range.count must be a positive integer")
    return {"pattern": pattern, "range": rng}


def check_choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValidationError(f"{what} must be one of {choices}")
    return str(value)


def check_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    return value


def check_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be true or false")
    return value
