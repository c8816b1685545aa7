"""Core calendar items as Graph v1.0 event JSON (the shapes ../shared/graph-schema checks).

Times go out in UTC (`Prefer: outlook.timezone` other than UTC is not simulated); all-day
events as local midnights written as dates, the way Outlook shows them. An item's start
zone goes out as its Windows name, or for every other item as the IANA name the same CLDR
table maps it to: Graph carries either, and clients must read both.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any

from calsync.simulator.mailbox import occurrence_id
from calsync.simulator.model import CalendarItem, ModifiedOccurrence, zone
from calsync.simulator.series import Instance
from calsync.simulator.tz import iana_zone, windows_zone

EVENT_TYPE = "#microsoft.graph.event"
ID_PREFIX = "AQMk"  # Graph ids differ from EWS ids (as REST ids differ from EWS ids in Exchange)
SHOW_AS = {"Free": "free", "Tentative": "tentative", "Busy": "busy", "OOF": "oof",
           "WorkingElsewhere": "workingElsewhere", "NoData": "unknown"}  # fmt: skip
RESPONSES = {"Unknown": "none", "Organizer": "organizer", "Tentative": "tentativelyAccepted", "Accept": "accepted",
             "Decline": "declined", "NoResponseReceived": "notResponded"}  # fmt: skip
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
GROUPS = {"Day": list(DAYS), "Weekday": list(DAYS[:5]), "WeekendDay": list(DAYS[5:])}
INDEXES = {"First": "first", "Second": "second", "Third": "third", "Fourth": "fourth", "Last": "last"}
MONTHS = ("January", "February", "March", "April", "May", "June",
          "July", "August", "September", "October", "November", "December")  # fmt: skip
NULL_TIME = "0001-01-01T00:00:00Z"


def graph_id(core_id: str) -> str:
    return ID_PREFIX + core_id


def core_id(graph: str) -> str | None:
    return graph[len(ID_PREFIX) :] if graph.startswith(ID_PREFIX) else None


def instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date_time(value: dt.datetime, all_day: bool, tz_name: str) -> dict[str, str]:
    if all_day:
        local = value.astimezone(zone(tz_name)).date()
        return {"dateTime": f"{local.isoformat()}T00:00:00.0000000", "timeZone": "UTC"}
    return {"dateTime": value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def zone_name(item: CalendarItem) -> str:
    windows = windows_zone(item.timezone) or "UTC"
    if zlib.crc32(item.id.encode()) % 2:
        return iana_zone(windows) or item.timezone
    return windows


def recurrence(item: CalendarItem) -> dict[str, Any] | None:
    rec = item.recurrence
    if rec is None:
        return None
    p, r = rec["pattern"], rec["range"]
    ptype = p["type"]
    days_raw = p.get("days_of_week")
    if isinstance(days_raw, str):
        days = GROUPS.get(days_raw, [days_raw.lower()])
    else:
        days = [d.lower() for d in days_raw or ()]
    pattern: dict[str, Any] = {
        "type": ptype[:1].lower() + ptype[1:],
        "interval": int(p.get("interval", 1)),
        "month": MONTHS.index(p["month"]) + 1 if p.get("month") else 0,
        "dayOfMonth": int(p.get("day_of_month") or 0),
        "daysOfWeek": days,
        "firstDayOfWeek": str(p.get("first_day_of_week") or "Sunday").lower(),
        "index": INDEXES.get(str(p.get("day_of_week_index") or "First"), "first"),
    }
    rtype = r["type"]
    rng: dict[str, Any] = {
        "type": {"NoEnd": "noEnd", "EndDate": "endDate", "Numbered": "numbered"}[rtype],
        "startDate": str(r["start_date"])[:10],
        "endDate": str(r.get("end_date"))[:10] if rtype == "EndDate" else "0001-01-01",
        "recurrenceTimeZone": windows_zone(item.timezone) or "UTC",
        "numberOfOccurrences": int(r.get("count") or 0) if rtype == "Numbered" else 0,
    }
    return {"pattern": pattern, "range": rng}


def _person(email: str, name: str) -> dict[str, Any]:
    return {"emailAddress": {"name": name, "address": email}}


def event(
    item: CalendarItem,
    mailbox: str,
    *,
    kind: str = "",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    original_start: dt.datetime | None = None,
    mod: ModifiedOccurrence | None = None,
) -> dict[str, Any]:
    """A full event: a single or master (kind ''), or an occurrence/exception of `item`."""
    kind = kind or ("seriesMaster" if item.recurrence else "singleInstance")

    def value(name: str) -> Any:
        if mod is not None and name in mod.overrides:
            return mod.overrides[name]
        return getattr(item, name)

    start = start or item.start
    end = end or item.end
    if kind == "exception" and mod is not None:
        the_id, change_key, modified = mod.id, mod.change_key, mod.last_modified
    elif kind == "occurrence":
        assert original_start is not None
        the_id, change_key, modified = occurrence_id(item.id, original_start), item.change_key, item.last_modified
    else:
        the_id, change_key, modified = item.id, item.change_key, item.last_modified
    body = str(value("body") or "")
    tz = zone_name(item)
    out: dict[str, Any] = {
        "@odata.type": EVENT_TYPE,
        "@odata.etag": f'W/"{change_key}"',
        "id": graph_id(the_id),
        "createdDateTime": instant(item.created),
        "lastModifiedDateTime": instant(modified),
        "changeKey": change_key,
        "categories": [],
        "transactionId": None,
        "originalStartTimeZone": tz,
        "originalEndTimeZone": tz,
        "iCalUId": item.uid,
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": False,
        "subject": value("subject"),
        "bodyPreview": body[:255],
        "importance": "normal",
        "sensitivity": str(value("sensitivity")).lower(),
        "isAllDay": item.is_all_day,
        "isCancelled": bool(value("is_cancelled")),
        "isOrganizer": item.organizer.email.lower() == mailbox.lower(),
        "responseRequested": True,
        "seriesMasterId": graph_id(item.id) if kind in ("occurrence", "exception") else None,
        "showAs": SHOW_AS.get(str(value("legacy_free_busy_status")), "busy"),
        "type": kind,
        "webLink": None,
        "onlineMeetingUrl": None,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "allowNewTimeProposals": True,
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {
            "response": "organizer" if item.organizer.email.lower() == mailbox.lower() else "none",
            "time": NULL_TIME,
        },
        "body": {"contentType": "html" if value("body_type") == "HTML" else "text", "content": body},
        "start": _date_time(start, item.is_all_day, item.timezone),
        "end": _date_time(end, item.is_all_day, item.timezone),
        "location": {
            "displayName": str(value("location") or ""),
            "locationType": "default",
            "uniqueIdType": "unknown",
        },
        "locations": [{"displayName": str(value("location")), "locationType": "default", "uniqueIdType": "unknown"}]
        if value("location")
        else [],
        "recurrence": recurrence(item) if kind == "seriesMaster" else None,
        "attendees": [
            {
                "type": role,
                "status": {"response": RESPONSES.get(p.response, "none"), "time": NULL_TIME},
                **_person(p.email, p.name),
            }
            for role, people in (("required", item.required_attendees), ("optional", item.optional_attendees))
            for p in people
        ],
        "organizer": _person(item.organizer.email, item.organizer.name),
        "onlineMeeting": None,
    }
    if original_start is not None:
        out["originalStart"] = instant(original_start)
    return out


def instance_event(inst: Instance, mailbox: str) -> dict[str, Any]:
    kind = "exception" if inst.kind == "Exception" else "occurrence"
    return event(
        inst.master, mailbox, kind=kind, start=inst.start, end=inst.end, original_start=inst.original_start,
        mod=inst.mod,
    )  # fmt: skip


def thin_occurrence(inst: Instance) -> dict[str, Any]:
    """The shape a delta may use for an occurrence: only id, seriesMasterId, type, start, end."""
    return {
        "@odata.type": EVENT_TYPE,
        "@odata.etag": f'W/"{inst.change_key}"',
        "id": graph_id(inst.id),
        "seriesMasterId": graph_id(inst.master.id),
        "type": "occurrence",
        "start": _date_time(inst.start, inst.master.is_all_day, inst.master.timezone),
        "end": _date_time(inst.end, inst.master.is_all_day, inst.master.timezone),
    }


def removed(graph: str) -> dict[str, Any]:
    return {"@odata.type": EVENT_TYPE, "id": graph, "@removed": {"reason": "deleted"}}
