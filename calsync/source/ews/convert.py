"""exchangelib CalendarItem -> calsync Appointment.

All-day items arrive from exchangelib as local dates with an inclusive end date; the mirror
keeps the dates (end exclusive, as iCalendar) and, for sorting and overlap queries, the
instants of local midnight in the item's time zone. exchangelib derives the inclusive end date
by taking 24 hours off the end instant, which lands a day early when the last day is a
spring-forward day (23 hours): the end date is therefore taken from the item's Duration.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from exchangelib import HTMLBody
from exchangelib.items import CalendarItem
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from calsync import errors
from calsync.sync.model import Appointment, Attendee, Kind, ModifiedOccurrence

WEEKDAYS = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Day",
    "Weekday",
    "WeekendDay",
)
WEEK_INDEX = ("First", "Second", "Third", "Fourth", "Last")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

KINDS = {
    "Single": Kind.SINGLE,
    "RecurringMaster": Kind.SERIES,
    "Occurrence": Kind.OCCURRENCE,
    "Exception": Kind.EXCEPTION,
}

# Fields fetched with GetItem: what the CRM contract needs and nothing more.
FETCH_FIELDS = (
    "subject", "body", "location", "start", "end", "_start_timezone", "_end_timezone", "is_all_day",
    "sensitivity", "is_cancelled", "legacy_free_busy_status", "type", "organizer", "required_attendees",
    "optional_attendees", "resources", "uid", "datetime_created", "last_modified_time", "recurrence",
    "modified_occurrences", "deleted_occurrences", "duration",
)  # fmt: skip

_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(value: str | None) -> dt.timedelta | None:
    """xs:duration as Exchange writes a calendar item's Duration (P1D, PT23H, P2DT1H)."""
    match = _DURATION.match(value or "")
    if not value or match is None or value in ("P", "PT"):
        return None
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value.timestamp(), tz=dt.UTC)


def _zone(item: CalendarItem) -> ZoneInfo | None:
    tz = getattr(item, "_start_timezone", None)
    key = getattr(tz, "key", None)
    if not key:
        return None
    try:
        return ZoneInfo(key)
    except Exception:
        return None


def recurrence_to_json(rec: Any) -> dict[str, Any] | None:
    """The recurrence as plain JSON (EWS names), the same shape the simulator's admin API uses."""
    if rec is None or rec.pattern is None:
        return None
    p = rec.pattern
    pattern: dict[str, Any]
    if isinstance(p, DailyPattern):
        pattern = {"type": "Daily", "interval": p.interval}
    elif isinstance(p, WeeklyPattern):
        pattern = {
            "type": "Weekly",
            "interval": p.interval,
            "days_of_week": [WEEKDAYS[d - 1] for d in p.weekdays],
            "first_day_of_week": WEEKDAYS[(p.first_day_of_week or 1) - 1],
        }
    elif isinstance(p, AbsoluteMonthlyPattern):
        pattern = {"type": "AbsoluteMonthly", "interval": p.interval, "day_of_month": p.day_of_month}
    elif isinstance(p, RelativeMonthlyPattern):
        pattern = {
            "type": "RelativeMonthly",
            "interval": p.interval,
            "days_of_week": WEEKDAYS[p.weekday - 1],
            "day_of_week_index": WEEK_INDEX[p.week_number - 1],
        }
    elif isinstance(p, AbsoluteYearlyPattern):
        pattern = {"type": "AbsoluteYearly", "day_of_month": p.day_of_month, "month": MONTHS[p.month - 1]}
    elif isinstance(p, RelativeYearlyPattern):
        pattern = {
            "type": "RelativeYearly",
            "days_of_week": WEEKDAYS[p.weekday - 1],
            "day_of_week_index": WEEK_INDEX[p.week_number - 1],
            "month": MONTHS[p.month - 1],
        }
    else:
        pattern = {"type": type(p).__name__}
    b = rec.boundary
    rng: dict[str, Any]
    if isinstance(b, NoEndPattern):
        rng = {"type": "NoEnd", "start_date": str(b.start)}
    elif isinstance(b, EndDatePattern):
        rng = {"type": "EndDate", "start_date": str(b.start), "end_date": str(b.end)}
    elif isinstance(b, NumberedPattern):
        rng = {"type": "Numbered", "start_date": str(b.start), "count": b.number}
    else:
        rng = {"type": type(b).__name__}
    return {"pattern": pattern, "range": rng}


def _modified(item: CalendarItem) -> tuple[ModifiedOccurrence, ...]:
    out: list[ModifiedOccurrence] = []
    for occ in getattr(item, "modified_occurrences", None) or ():
        start, end, original = _utc(occ.start), _utc(occ.end), _utc(occ.original_start)
        if occ.id and start is not None and end is not None and original is not None:
            out.append(ModifiedOccurrence(item_id=occ.id, start=start, end=end, original_start=original))
    return tuple(out)


def _deleted(item: CalendarItem) -> tuple[dt.datetime, ...]:
    starts = (_utc(occ.start) for occ in getattr(item, "deleted_occurrences", None) or ())
    return tuple(sorted(s for s in starts if s is not None))


def _attendees(item: CalendarItem) -> tuple[Attendee, ...]:
    out: list[Attendee] = []
    for role, attendees in (
        ("required", item.required_attendees),
        ("optional", item.optional_attendees),
        ("resource", getattr(item, "resources", None)),
    ):
        for a in attendees or ():
            mb = a.mailbox
            if mb is None or not mb.email_address:
                continue
            out.append(Attendee(email=mb.email_address, name=mb.name, role=role, response=a.response_type))
    return tuple(out)


class UnreadableItem(Exception):
    """Exchange sent an item calsync cannot mirror as it is; the batch sets it aside."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def to_appointment(item: CalendarItem, mailbox: str) -> Appointment:
    if item.start is None or item.end is None:
        # exchangelib leaves a time it cannot parse empty (for instance one with milliseconds,
        # valid per the schema): an appointment without a start or end cannot be placed.
        missing = " and ".join(n for n, v in (("Start", item.start), ("End", item.end)) if v is None)
        raise UnreadableItem(errors.ITEM_WITHOUT_TIMES, f"{missing} missing or unreadable in Exchange's answer")
    zone = _zone(item)
    start_date = end_date = None
    if item.is_all_day and isinstance(item.start, dt.date) and not isinstance(item.start, dt.datetime):
        start_date = dt.date(item.start.year, item.start.month, item.start.day)
        tz = zone or dt.UTC
        start = dt.datetime.combine(start_date, dt.time(), tzinfo=tz).astimezone(dt.UTC)
        duration = parse_duration(getattr(item, "duration", None))
        if duration is not None and duration > dt.timedelta(0):
            local_end = (start + duration).astimezone(tz)
            # A local midnight; the nearest one should a daylight-saving hour ever slip in.
            end_date = local_end.date() + dt.timedelta(days=1 if local_end.hour >= 12 else 0)
        else:
            end_date = dt.date(item.end.year, item.end.month, item.end.day) + dt.timedelta(days=1)
        end = dt.datetime.combine(end_date, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    else:
        start = _utc(item.start)  # type: ignore[assignment]
        end = _utc(item.end)  # type: ignore[assignment]
    organizer = item.organizer
    organizer_email = organizer.email_address if organizer is not None else None
    body = item.body
    return Appointment(
        item_id=item.id,
        change_key=item.changekey,
        kind=KINDS.get(item.type or "Single", Kind.SINGLE),
        start=start,
        end=end,
        subject=item.subject,
        body=str(body) if body is not None else None,
        body_type=("HTML" if isinstance(body, HTMLBody) else "Text") if body is not None else None,
        location=item.location,
        uid=item.uid,
        timezone=zone.key if zone is not None else None,
        is_all_day=bool(item.is_all_day),
        start_date=start_date,
        end_date=end_date,
        is_cancelled=bool(item.is_cancelled),
        sensitivity=item.sensitivity or "Normal",
        show_as=item.legacy_free_busy_status or "Busy",
        organizer_email=organizer_email,
        organizer_name=organizer.name if organizer is not None else None,
        is_organizer=bool(organizer_email and organizer_email.lower() == mailbox.lower()),
        recurrence=recurrence_to_json(item.recurrence),
        exchange_created_at=_utc(item.datetime_created),
        exchange_modified_at=_utc(item.last_modified_time),
        attendees=_attendees(item),
        modified_occurrences=_modified(item),
        deleted_occurrences=_deleted(item),
    )
