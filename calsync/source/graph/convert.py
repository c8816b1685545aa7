"""Graph event JSON -> calsync Appointment: the same shape the EWS adapter produces.

Where Graph names things differently (camelCase enums, `iCalUId`, `showAs`, attendee
`type`/`status.response`, `patternedRecurrence`), this maps them to the EWS names of the
CRM contract, so a mailbox read through either API gives the same rows (README, "The CRM
contract"). Time zones may come as Windows ids or IANA names; both become IANA names with
the same CLDR table the EWS adapter uses (through exchangelib), so `timezone` agrees too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from calsync.sync.model import Appointment, Attendee, Kind

KINDS = {
    "singleInstance": Kind.SINGLE,
    "seriesMaster": Kind.SERIES,
    "occurrence": Kind.OCCURRENCE,
    "exception": Kind.EXCEPTION,
}
SHOW_AS = {
    "free": "Free",
    "tentative": "Tentative",
    "busy": "Busy",
    "oof": "OOF",
    "workingElsewhere": "WorkingElsewhere",
    "unknown": "NoData",
}
RESPONSES = {
    "none": "Unknown",
    "organizer": "Organizer",
    "tentativelyAccepted": "Tentative",
    "accepted": "Accept",
    "declined": "Decline",
    "notResponded": "NoResponseReceived",
}
ROLE_ORDER = {"required": 0, "optional": 1, "resource": 2}
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = {"first": "First", "second": "Second", "third": "Third", "fourth": "Fourth", "last": "Last"}
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def iana(name: str | None) -> str | None:
    """A Windows zone id or an IANA name as an IANA name (None when unknown)."""
    if not name:
        return None
    mapped = MS_TIMEZONE_TO_IANA_MAP.get(name)
    if mapped:
        return mapped
    try:
        ZoneInfo(name)
    except Exception:
        return None
    return name


def _zone(name: str | None) -> dt.tzinfo:
    key = iana(name)
    return ZoneInfo(key) if key else dt.UTC


def parse_datetime(value: dict[str, Any] | None) -> dt.datetime | None:
    """A dateTimeTimeZone ({dateTime, timeZone}) as an aware UTC datetime."""
    if not value or not value.get("dateTime"):
        return None
    local = dt.datetime.fromisoformat(str(value["dateTime"]).rstrip("Z"))
    if local.tzinfo is None:
        local = local.replace(tzinfo=_zone(value.get("timeZone") or "UTC"))
    return local.astimezone(dt.UTC)


def instant(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)


def _day_name(day: str) -> str:
    return day.capitalize()


def _relative_days(days: list[str]) -> str:
    names = set(days)
    if len(names) == 7:
        return "Day"
    if names == set(DAYS[:5]):
        return "Weekday"
    if names == set(DAYS[5:]):
        return "WeekendDay"
    return _day_name(days[0]) if days else "Day"


def recurrence_to_json(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    """patternedRecurrence as the EWS-named JSON calsync stores (calsync.sync.recurrence reads it)."""
    if not rec or not rec.get("pattern"):
        return None
    p, r = rec["pattern"], rec.get("range") or {}
    ptype = p.get("type")
    interval = int(p.get("interval") or 1)
    days = [d for d in p.get("daysOfWeek") or () if d]
    index = INDEXES.get(str(p.get("index") or "first"), "First")
    pattern: dict[str, Any]
    if ptype == "daily":
        pattern = {"type": "Daily", "interval": interval}
    elif ptype == "weekly":
        ordered = sorted(days, key=DAYS.index)
        pattern = {
            "type": "Weekly",
            "interval": interval,
            "days_of_week": [_day_name(d) for d in ordered],
            "first_day_of_week": _day_name(str(p.get("firstDayOfWeek") or "sunday")),
        }
    elif ptype == "absoluteMonthly":
        pattern = {"type": "AbsoluteMonthly", "interval": interval, "day_of_month": int(p.get("dayOfMonth") or 1)}
    elif ptype == "relativeMonthly":
        pattern = {
            "type": "RelativeMonthly",
            "interval": interval,
            "days_of_week": _relative_days(days),
            "day_of_week_index": index,
        }
    elif ptype == "absoluteYearly":
        pattern = {
            "type": "AbsoluteYearly",
            "day_of_month": int(p.get("dayOfMonth") or 1),
            "month": MONTHS[int(p.get("month") or 1) - 1],
        }
    elif ptype == "relativeYearly":
        pattern = {
            "type": "RelativeYearly",
            "days_of_week": _relative_days(days),
            "day_of_week_index": index,
            "month": MONTHS[int(p.get("month") or 1) - 1],
        }
    else:
        pattern = {"type": str(ptype)}
    rtype = r.get("type")
    rng: dict[str, Any]
    if rtype == "endDate":
        rng = {"type": "EndDate", "start_date": str(r.get("startDate")), "end_date": str(r.get("endDate"))}
    elif rtype == "numbered":
        rng = {
            "type": "Numbered",
            "start_date": str(r.get("startDate")),
            "count": int(r.get("numberOfOccurrences") or 1),
        }
    else:
        rng = {"type": "NoEnd", "start_date": str(r.get("startDate"))}
    return {"pattern": pattern, "range": rng}


def _attendees(event: dict[str, Any]) -> tuple[Attendee, ...]:
    out: list[tuple[int, int, Attendee]] = []
    for pos, a in enumerate(event.get("attendees") or ()):
        mail = (a.get("emailAddress") or {}).get("address")
        if not mail:
            continue
        role = str(a.get("type") or "required")
        role = role if role in ROLE_ORDER else "required"
        response = (a.get("status") or {}).get("response")
        attendee = Attendee(
            email=mail,
            name=(a.get("emailAddress") or {}).get("name"),
            role=role,
            response=RESPONSES.get(str(response)) if response else None,
        )
        out.append((ROLE_ORDER[role], pos, attendee))
    return tuple(a for _, _, a in sorted(out, key=lambda t: (t[0], t[1])))


def to_appointment(event: dict[str, Any], mailbox: str) -> Appointment:
    zone_name = iana(event.get("originalStartTimeZone")) or iana((event.get("start") or {}).get("timeZone"))
    zone = ZoneInfo(zone_name) if zone_name else dt.UTC
    all_day = bool(event.get("isAllDay"))
    start_date = end_date = None
    if all_day:
        # All-day events are dates: the date part, never shifted by a zone.
        start_date = dt.date.fromisoformat(str(event["start"]["dateTime"])[:10])
        end_date = dt.date.fromisoformat(str(event["end"]["dateTime"])[:10])
        if end_date <= start_date:
            end_date = start_date + dt.timedelta(days=1)
        start = dt.datetime.combine(start_date, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        end = dt.datetime.combine(end_date, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    else:
        start = parse_datetime(event.get("start")) or dt.datetime.min.replace(tzinfo=dt.UTC)
        end = parse_datetime(event.get("end")) or start
    organizer = (event.get("organizer") or {}).get("emailAddress") or {}
    organizer_email = organizer.get("address")
    body = event.get("body") or None
    if body is not None and not body.get("content"):
        body = None  # an empty body, as EWS reports none
    body_type = None
    if body is not None:
        body_type = "HTML" if str(body.get("contentType") or "").lower() == "html" else "Text"
    sensitivity = str(event.get("sensitivity") or "normal")
    return Appointment(
        item_id=str(event["id"]),
        change_key=str(event.get("changeKey") or ""),
        kind=KINDS.get(str(event.get("type") or "singleInstance"), Kind.SINGLE),
        start=start,
        end=end,
        subject=event.get("subject"),
        body=body.get("content") if body is not None else None,
        body_type=body_type,
        location=(event.get("location") or {}).get("displayName") or None,
        uid=event.get("iCalUId"),
        timezone=zone_name,
        is_all_day=all_day,
        start_date=start_date,
        end_date=end_date,
        is_cancelled=bool(event.get("isCancelled")),
        sensitivity=sensitivity[:1].upper() + sensitivity[1:],
        show_as=SHOW_AS.get(str(event.get("showAs") or "busy"), "Busy"),
        organizer_email=organizer_email,
        organizer_name=organizer.get("name"),
        is_organizer=bool(organizer_email and organizer_email.lower() == mailbox.lower()),
        recurrence=recurrence_to_json(event.get("recurrence")),
        exchange_created_at=instant(event.get("createdDateTime")),
        exchange_modified_at=instant(event.get("lastModifiedDateTime")),
        attendees=_attendees(event),
    )
