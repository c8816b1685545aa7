"""Calendar items as EWS XML, element by element in the order of types.xsd (ItemType, CalendarItemType).

Each supported element has a small render function; a response shape is the set of element
names to emit. Full renders of stored items are cached on the item (cleared on every change),
so repeated syncs of unchanged items cost a dict lookup.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from calsync.simulator import series
from calsync.simulator.ews.soap import NS_T, attr, esc, xml_bool, xml_time
from calsync.simulator.model import CalendarItem, Person
from calsync.simulator.series import Instance
from calsync.simulator.tz import date_with_offset, windows_zone

#: Everything this simulator can emit, in schema order.
ITEM_FIELDS = (
    "ItemId",
    "ParentFolderId",
    "ItemClass",
    "Subject",
    "Sensitivity",
    "Body",
    "DateTimeReceived",
    "Size",
    "Importance",
    "IsSubmitted",
    "IsDraft",
    "IsFromMe",
    "IsResend",
    "IsUnmodified",
    "DateTimeSent",
    "DateTimeCreated",
    "ReminderIsSet",
    "ReminderMinutesBeforeStart",
    "DisplayCc",
    "DisplayTo",
    "HasAttachments",
    "Culture",
    "LastModifiedName",
    "LastModifiedTime",
    "IsAssociated",
    "UID",
    "RecurrenceId",
    "DateTimeStamp",
    "Start",
    "End",
    "OriginalStart",
    "IsAllDayEvent",
    "LegacyFreeBusyStatus",
    "Location",
    "IsMeeting",
    "IsCancelled",
    "IsRecurring",
    "MeetingRequestWasSent",
    "IsResponseRequested",
    "CalendarItemType",
    "MyResponseType",
    "Organizer",
    "RequiredAttendees",
    "OptionalAttendees",
    "ConflictingMeetingCount",
    "AdjacentMeetingCount",
    "Duration",
    "AppointmentSequenceNumber",
    "AppointmentState",
    "Recurrence",
    "FirstOccurrence",
    "LastOccurrence",
    "ModifiedOccurrences",
    "DeletedOccurrences",
    "StartTimeZone",
    "EndTimeZone",
    "ConferenceType",
    "AllowNewTimeProposal",
    "IsOnlineMeeting",
)
#: Elements Exchange never returns from FindItem (it answers ErrorInvalidPropertyRequest or omits them).
NOT_IN_FIND = frozenset(
    {"Body", "RequiredAttendees", "OptionalAttendees", "ModifiedOccurrences", "DeletedOccurrences", "Recurrence"}
)
SERIES_ONLY = frozenset(
    {"Recurrence", "FirstOccurrence", "LastOccurrence", "ModifiedOccurrences", "DeletedOccurrences"}
)
SINCE_2010 = frozenset({"StartTimeZone", "EndTimeZone"})
SINCE_2013 = frozenset({"IsOnlineMeeting"})

ALL_FIELDS = frozenset(ITEM_FIELDS)
DEFAULT_FIELDS = frozenset(
    {
        "ItemId",
        "Subject",
        "Sensitivity",
        "HasAttachments",
        "IsAssociated",
        "Start",
        "End",
        "IsAllDayEvent",
        "LegacyFreeBusyStatus",
        "Location",
        "CalendarItemType",
        "Organizer",
    }
)
ID_ONLY = frozenset({"ItemId"})

_TAGS = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class Shape:
    fields: frozenset[str]
    body_type: str = "Best"  # Best | HTML | Text

    @property
    def key(self) -> tuple[frozenset[str], str]:
        return self.fields, self.body_type


def parse_shape(elem: etree._Element | None, version_at_least_2010: bool = True) -> Shape:
    """ItemShape -> Shape. Unknown FieldURIs are ignored (they have no value here)."""
    if elem is None:
        return Shape(DEFAULT_FIELDS)
    base = elem.findtext(f"{{{NS_T}}}BaseShape", "Default").strip()
    fields = {"IdOnly": ID_ONLY, "AllProperties": ALL_FIELDS}.get(base, DEFAULT_FIELDS)
    extra = {
        uri.rsplit(":", 1)[-1]
        for uri in (e.get("FieldURI", "") for e in elem.iterfind(f"{{{NS_T}}}AdditionalProperties/{{{NS_T}}}FieldURI"))
    }
    if extra:
        fields = fields | (extra & ALL_FIELDS) | {"ItemId"}
    if not version_at_least_2010:
        fields = fields - SINCE_2010
    body_type = (elem.findtext(f"{{{NS_T}}}BodyType") or "Best").strip()
    return Shape(frozenset(fields), body_type)


# --- small pieces ----------------------------------------------------------------------------
def _mailbox(person: Person) -> str:
    kind = "Mailbox" if person.email.lower().endswith("@example.com") else "OneOff"
    return (
        f"<t:Mailbox><t:Name>{esc(person.name)}</t:Name><t:EmailAddress>{esc(person.email)}</t:EmailAddress>"
        f"<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>{kind}</t:MailboxType></t:Mailbox>"
    )


def _attendees(tag: str, people: list[Person]) -> str:
    if not people:
        return ""
    inner = "".join(
        f"<t:Attendee>{_mailbox(p)}<t:ResponseType>{p.response}</t:ResponseType></t:Attendee>" for p in people
    )
    return f"<t:{tag}>{inner}</t:{tag}>"


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    if clock:
        out += "T" + clock
    return out if out != "P" else "PT0S"


def _occurrence_info(tag: str, inst: Instance) -> str:
    assert inst.original_start is not None
    return (
        f'<t:{tag}><t:ItemId Id="{attr(inst.id)}" ChangeKey="{attr(inst.change_key)}"/>'
        f"<t:Start>{xml_time(inst.start)}</t:Start><t:End>{xml_time(inst.end)}</t:End>"
        f"<t:OriginalStart>{xml_time(inst.original_start)}</t:OriginalStart></t:{tag}>"
    )


def recurrence_xml(item: CalendarItem) -> str:
    assert item.recurrence is not None
    pattern, rng = item.recurrence["pattern"], item.recurrence["range"]
    ptype = pattern["type"]
    interval = f"<t:Interval>{pattern.get('interval', 1)}</t:Interval>"
    if ptype == "Daily":
        p = f"<t:DailyRecurrence>{interval}</t:DailyRecurrence>"
    elif ptype == "Weekly":
        p = (
            f"<t:WeeklyRecurrence>{interval}<t:DaysOfWeek>{' '.join(pattern['days_of_week'])}</t:DaysOfWeek>"
            f"<t:FirstDayOfWeek>{pattern.get('first_day_of_week', 'Sunday')}</t:FirstDayOfWeek></t:WeeklyRecurrence>"
        )
    elif ptype == "AbsoluteMonthly":
        p = (
            f"<t:AbsoluteMonthlyRecurrence>{interval}<t:DayOfMonth>{pattern['day_of_month']}</t:DayOfMonth>"
            "</t:AbsoluteMonthlyRecurrence>"
        )
    elif ptype == "RelativeMonthly":
        p = (
            f"<t:RelativeMonthlyRecurrence>{interval}<t:DaysOfWeek>{pattern['days_of_week']}</t:DaysOfWeek>"
            f"<t:DayOfWeekIndex>{pattern['day_of_week_index']}</t:DayOfWeekIndex></t:RelativeMonthlyRecurrence>"
        )
    elif ptype == "AbsoluteYearly":
        p = (
            f"<t:AbsoluteYearlyRecurrence><t:DayOfMonth>{pattern['day_of_month']}</t:DayOfMonth>"
            f"<t:Month>{pattern['month']}</t:Month></t:AbsoluteYearlyRecurrence>"
        )
    else:
        p = (
            f"<t:RelativeYearlyRecurrence><t:DaysOfWeek>{pattern['days_of_week']}</t:DaysOfWeek>"
            f"<t:DayOfWeekIndex>{pattern['day_of_week_index']}</t:DayOfWeekIndex>"
            f"<t:Month>{pattern['month']}</t:Month></t:RelativeYearlyRecurrence>"
        )
    start = f"<t:StartDate>{date_with_offset(dt.date.fromisoformat(rng['start_date']), item.timezone)}</t:StartDate>"
    if rng["type"] == "NoEnd":
        r = f"<t:NoEndRecurrence>{start}</t:NoEndRecurrence>"
    elif rng["type"] == "EndDate":
        end = date_with_offset(dt.date.fromisoformat(rng["end_date"]), item.timezone)
        r = f"<t:EndDateRecurrence>{start}<t:EndDate>{end}</t:EndDate></t:EndDateRecurrence>"
    else:
        r = (
            f"<t:NumberedRecurrence>{start}<t:NumberOfOccurrences>{rng['count']}</t:NumberOfOccurrences>"
            "</t:NumberedRecurrence>"
        )
    return f"<t:Recurrence>{p}{r}</t:Recurrence>"


# --- the view of one entry -------------------------------------------------------------------
class _Entry:
    """Uniform access to a stored item (single/master) or a view instance (occurrence/exception)."""

    __slots__ = ("inst", "item", "kind", "owner")

    def __init__(self, item: CalendarItem, inst: Instance | None, owner: str) -> None:
        self.item = item
        self.inst = inst
        self.kind = inst.kind if inst is not None else item.calendar_item_type
        self.owner = owner.lower()

    def value(self, name: str) -> object:
        if self.inst is not None:
            return self.inst.value(name)
        return getattr(self.item, name)

    @property
    def start(self) -> dt.datetime:
        return self.inst.start if self.inst is not None else self.item.start

    @property
    def end(self) -> dt.datetime:
        return self.inst.end if self.inst is not None else self.item.end

    @property
    def is_meeting(self) -> bool:
        return bool(self.item.required_attendees or self.item.optional_attendees)

    @property
    def organized_by_owner(self) -> bool:
        return self.item.organizer.email.lower() == self.owner

    def my_response(self) -> str:
        if self.organized_by_owner:
            return "Organizer"
        for person in (*self.item.required_attendees, *self.item.optional_attendees):
            if person.email.lower() == self.owner:
                return person.response
        return "NoResponseReceived"


def _body(e: _Entry, body_type: str) -> str:
    text = str(e.value("body"))
    kind = str(e.value("body_type"))
    if body_type == "Text" and kind == "HTML":
        text, kind = _TAGS.sub("", text).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"), "Text"
    elif body_type == "HTML" and kind == "Text":
        text, kind = f"<html><body>{esc(text)}</body></html>", "HTML"
    return f'<t:Body BodyType="{kind}">{esc(text)}</t:Body>'


def _state(e: _Entry) -> int:
    state = 1 if e.is_meeting else 0
    if e.is_meeting and not e.organized_by_owner:
        state |= 2
    if e.value("is_cancelled"):
        state |= 4
    return state


def _tz(tag: str, e: _Entry) -> str:
    ms = e.item.timezone_id or windows_zone(e.item.timezone) or "UTC"
    return f'<t:{tag} Id="{attr(ms)}" Name="{attr(ms)}"/>'


def _series(e: _Entry, tag: str) -> str:
    if e.inst is not None or e.item.recurrence is None:
        return ""
    item = e.item
    if tag == "Recurrence":
        return recurrence_xml(item)
    if tag == "FirstOccurrence":
        first = series.first_instance(item)
        return _occurrence_info(tag, first) if first else ""
    if tag == "LastOccurrence":
        last = series.last_instance(item)
        return _occurrence_info(tag, last) if last else ""
    if tag == "ModifiedOccurrences":
        mods = [m for o, m in sorted(item.modified_occurrences.items()) if o not in item.deleted_occurrences]
        if not mods:
            return ""
        inner = ""
        for mod in mods:
            s, en = item.occurrence_times(mod)
            inner += _occurrence_info(
                "Occurrence", Instance(item, "Exception", mod.id, mod.change_key, s, en, mod.original_start, mod)
            )
        return f"<t:ModifiedOccurrences>{inner}</t:ModifiedOccurrences>"
    deleted = sorted(item.deleted_occurrences)
    if not deleted:
        return ""
    inner = "".join(f"<t:DeletedOccurrence><t:Start>{xml_time(d)}</t:Start></t:DeletedOccurrence>" for d in deleted)
    return f"<t:DeletedOccurrences>{inner}</t:DeletedOccurrences>"


def _item_id(e: _Entry) -> str:
    if e.inst is not None:
        return f'<t:ItemId Id="{attr(e.inst.id)}" ChangeKey="{attr(e.inst.change_key)}"/>'
    return f'<t:ItemId Id="{attr(e.item.id)}" ChangeKey="{attr(e.item.change_key)}"/>'


Renderer = Callable[[_Entry, "RenderContext"], str]


@dataclass(slots=True)
class RenderContext:
    folder_id: str
    folder_change_key: str
    body_type: str = "Best"


def _simple(tag: str, fn: Callable[[_Entry], str]) -> Renderer:
    return lambda e, c: f"<t:{tag}>{fn(e)}</t:{tag}>"


_RENDERERS: dict[str, Renderer] = {
    "ItemId": lambda e, c: _item_id(e),
    "ParentFolderId": lambda e, c: f'<t:ParentFolderId Id="{c.folder_id}" ChangeKey="{c.folder_change_key}"/>',
    "ItemClass": _simple(
        "ItemClass", lambda e: "IPM.Appointment.Occurrence" if e.kind == "Exception" else "IPM.Appointment"
    ),
    "Subject": _simple("Subject", lambda e: esc(str(e.value("subject")))),
    "Sensitivity": _simple("Sensitivity", lambda e: str(e.value("sensitivity"))),
    "Body": lambda e, c: _body(e, c.body_type),
    "DateTimeReceived": _simple("DateTimeReceived", lambda e: xml_time(e.item.created)),
    "Size": _simple("Size", lambda e: str(1024 + len(e.item.body) + 200 * len(e.item.required_attendees))),
    "Importance": _simple("Importance", lambda e: "Normal"),
    "IsSubmitted": _simple("IsSubmitted", lambda e: "false"),
    "IsDraft": _simple("IsDraft", lambda e: "false"),
    "IsFromMe": _simple("IsFromMe", lambda e: "false"),
    "IsResend": _simple("IsResend", lambda e: "false"),
    "IsUnmodified": _simple("IsUnmodified", lambda e: xml_bool(e.item.version == 1)),
    "DateTimeSent": _simple("DateTimeSent", lambda e: xml_time(e.item.created)),
    "DateTimeCreated": _simple("DateTimeCreated", lambda e: xml_time(e.item.created)),
    "ReminderIsSet": _simple("ReminderIsSet", lambda e: xml_bool(not e.item.is_all_day)),
    "ReminderMinutesBeforeStart": _simple("ReminderMinutesBeforeStart", lambda e: "15"),
    "DisplayCc": _simple("DisplayCc", lambda e: esc("; ".join(p.name for p in e.item.optional_attendees))),
    "DisplayTo": _simple("DisplayTo", lambda e: esc("; ".join(p.name for p in e.item.required_attendees))),
    "HasAttachments": _simple("HasAttachments", lambda e: "false"),
    "Culture": _simple("Culture", lambda e: "en-US"),
    "LastModifiedName": _simple("LastModifiedName", lambda e: esc(e.item.organizer.name)),
    "LastModifiedTime": _simple(
        "LastModifiedTime",
        lambda e: xml_time(e.inst.mod.last_modified if e.inst and e.inst.mod else e.item.last_modified),
    ),
    "IsAssociated": _simple("IsAssociated", lambda e: "false"),
    "UID": _simple("UID", lambda e: esc(e.item.uid)),
    "RecurrenceId": lambda e, c: (
        f"<t:RecurrenceId>{xml_time(e.inst.original_start)}</t:RecurrenceId>"
        if e.inst is not None and e.inst.original_start is not None
        else ""
    ),
    "DateTimeStamp": _simple("DateTimeStamp", lambda e: xml_time(e.item.last_modified)),
    "Start": _simple("Start", lambda e: xml_time(e.start)),
    "End": _simple("End", lambda e: xml_time(e.end)),
    "OriginalStart": lambda e, c: (
        f"<t:OriginalStart>{xml_time(e.inst.original_start)}</t:OriginalStart>"
        if e.inst is not None and e.inst.original_start is not None
        else ""
    ),
    "IsAllDayEvent": _simple("IsAllDayEvent", lambda e: xml_bool(e.item.is_all_day)),
    "LegacyFreeBusyStatus": _simple("LegacyFreeBusyStatus", lambda e: str(e.value("legacy_free_busy_status"))),
    "Location": _simple("Location", lambda e: esc(str(e.value("location")))),
    "IsMeeting": _simple("IsMeeting", lambda e: xml_bool(e.is_meeting)),
    "IsCancelled": _simple("IsCancelled", lambda e: xml_bool(bool(e.value("is_cancelled")))),
    # Exchange reports IsRecurring true on occurrences and exceptions, false on the master.
    "IsRecurring": _simple("IsRecurring", lambda e: xml_bool(e.kind in ("Occurrence", "Exception"))),
    "MeetingRequestWasSent": _simple(
        "MeetingRequestWasSent", lambda e: xml_bool(e.is_meeting and e.organized_by_owner)
    ),
    "IsResponseRequested": _simple("IsResponseRequested", lambda e: xml_bool(e.is_meeting)),
    "CalendarItemType": _simple("CalendarItemType", lambda e: e.kind),
    "MyResponseType": _simple("MyResponseType", lambda e: e.my_response()),
    "Organizer": lambda e, c: f"<t:Organizer>{_mailbox(e.item.organizer)}</t:Organizer>",
    "RequiredAttendees": lambda e, c: _attendees("RequiredAttendees", e.item.required_attendees),
    "OptionalAttendees": lambda e, c: _attendees("OptionalAttendees", e.item.optional_attendees),
    "ConflictingMeetingCount": _simple("ConflictingMeetingCount", lambda e: "0"),
    "AdjacentMeetingCount": _simple("AdjacentMeetingCount", lambda e: "0"),
    "Duration": _simple("Duration", lambda e: _duration(e.end - e.start)),
    "AppointmentSequenceNumber": _simple("AppointmentSequenceNumber", lambda e: str(e.item.version - 1)),
    "AppointmentState": _simple("AppointmentState", lambda e: str(_state(e))),
    "Recurrence": lambda e, c: _series(e, "Recurrence"),
    "FirstOccurrence": lambda e, c: _series(e, "FirstOccurrence"),
    "LastOccurrence": lambda e, c: _series(e, "LastOccurrence"),
    "ModifiedOccurrences": lambda e, c: _series(e, "ModifiedOccurrences"),
    "DeletedOccurrences": lambda e, c: _series(e, "DeletedOccurrences"),
    "StartTimeZone": lambda e, c: _tz("StartTimeZone", e),
    "EndTimeZone": lambda e, c: _tz("EndTimeZone", e),
    "ConferenceType": _simple("ConferenceType", lambda e: "0"),
    "AllowNewTimeProposal": _simple("AllowNewTimeProposal", lambda e: "true"),
    "IsOnlineMeeting": _simple("IsOnlineMeeting", lambda e: "false"),
}
assert set(_RENDERERS) == set(ITEM_FIELDS)


def _render(e: _Entry, fields: frozenset[str], ctx: RenderContext) -> str:
    parts = [_RENDERERS[name](e, ctx) for name in ITEM_FIELDS if name in fields]
    return "<t:CalendarItem>" + "".join(parts) + "</t:CalendarItem>"


def render_item(item: CalendarItem, shape: Shape, ctx: RenderContext, owner: str) -> str:
    """A stored item (single or master); cached per shape until the item changes."""
    key = (shape.key, ctx.folder_id)
    cached = item.cache.get(key)
    if cached is None:
        cached = _render(
            _Entry(item, None, owner),
            shape.fields,
            RenderContext(ctx.folder_id, ctx.folder_change_key, shape.body_type),
        )
        item.cache[key] = cached
    return str(cached)


def render_instance(inst: Instance, shape: Shape, ctx: RenderContext, owner: str, find: bool = False) -> str:
    if inst.kind == "Single":
        fields = shape.fields - NOT_IN_FIND if find else shape.fields
        return render_item(inst.master, Shape(fields, shape.body_type), ctx, owner)
    fields = shape.fields - SERIES_ONLY
    if find:
        fields -= NOT_IN_FIND
    return _render(
        _Entry(inst.master, inst, owner), fields, RenderContext(ctx.folder_id, ctx.folder_change_key, shape.body_type)
    )


def render_id_only(item_id: str, change_key: str) -> str:
    return f'<t:CalendarItem><t:ItemId Id="{attr(item_id)}" ChangeKey="{attr(change_key)}"/></t:CalendarItem>'
