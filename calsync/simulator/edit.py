"""Admin edits of items: JSON in, validated model changes out (the way Exchange normalises them)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from calsync.simulator.model import (
    BODY_TYPES,
    FREE_BUSY,
    OCCURRENCE_FIELDS,
    SENSITIVITIES,
    CalendarItem,
    ModifiedOccurrence,
    Person,
    ValidationError,
    check_bool,
    check_choice,
    check_str,
    check_zone,
    local_midnight,
    parse_time,
    validate_recurrence,
)

EDITABLE = {
    "uid",
    "subject",
    "body",
    "body_type",
    "location",
    "start",
    "end",
    "timezone",
    "is_all_day",
    "sensitivity",
    "is_cancelled",
    "legacy_free_busy_status",
    "organizer",
    "required_attendees",
    "optional_attendees",
    "recurrence",
    "timezone_id",
}
READ_ONLY = {
    "id",
    "change_key",
    "calendar_item_type",
    "created",
    "last_modified",
    "modified_occurrences",
    "deleted_occurrences",
}


def _people(value: Any, what: str) -> list[Person]:
    if not isinstance(value, list):
        raise ValidationError(f"{what} must be a list")
    return [Person.from_json(p, f"{what}[{i}]") for i, p in enumerate(value)]


def _timezone_id(value: Any) -> str | None:
    """Any string is accepted (the schema types the Id as xs:string): the point is hostile ids."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValidationError("timezone_id must be a non-empty string of at most 256 characters, or null")
    return value


def normalise_times(item: CalendarItem) -> None:
    """All-day items span local midnights, as Exchange stores them."""
    if item.is_all_day:
        item.start = local_midnight(item.start, item.timezone)
        end = local_midnight(item.end, item.timezone, round_up=True)
        if end <= item.start:
            end = local_midnight(item.start + dt.timedelta(hours=36), item.timezone)
        item.end = end
    if item.end < item.start:
        raise ValidationError("end must not be before start")


def new_item(data: Any, item_id: str, change_key: str, mailbox_email: str, when: dt.datetime) -> CalendarItem:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    unknown = set(data) - EDITABLE - READ_ONLY
    if unknown:
        raise ValidationError(f"unknown fields: {sorted(unknown)}")
    tz = check_zone(data.get("timezone", "UTC"))
    if "start" not in data or "end" not in data:
        raise ValidationError("start and end are required")
    organizer = data.get("organizer") or {"email": mailbox_email, "name": mailbox_email.split("@")[0]}
    item = CalendarItem(
        id=item_id,
        change_key=change_key,
        uid=check_str(data.get("uid") or str(uuid.uuid4()).upper(), "uid"),
        subject=check_str(data.get("subject", ""), "subject"),
        body=check_str(data.get("body", ""), "body"),
        body_type=check_choice(data.get("body_type", "HTML"), BODY_TYPES, "body_type"),
        location=check_str(data.get("location", ""), "location"),
        start=parse_time(data["start"], tz, "start"),
        end=parse_time(data["end"], tz, "end"),
        timezone=tz,
        is_all_day=check_bool(data.get("is_all_day", False), "is_all_day"),
        sensitivity=check_choice(data.get("sensitivity", "Normal"), SENSITIVITIES, "sensitivity"),
        is_cancelled=check_bool(data.get("is_cancelled", False), "is_cancelled"),
        legacy_free_busy_status=check_choice(
            data.get("legacy_free_busy_status", "Busy"), FREE_BUSY, "legacy_free_busy_status"
        ),
        organizer=Person.from_json(organizer, "organizer", with_response=False),
        required_attendees=_people(data.get("required_attendees", []), "required_attendees"),
        optional_attendees=_people(data.get("optional_attendees", []), "optional_attendees"),
        created=when,
        last_modified=when,
        recurrence=validate_recurrence(data.get("recurrence")),
        timezone_id=_timezone_id(data.get("timezone_id")),
    )
    normalise_times(item)
    return item


def apply_patch(item: CalendarItem, data: Any) -> None:
    """Partial update; raises before touching the item when anything is invalid."""
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    bad = set(data) - EDITABLE
    if bad:
        raise ValidationError(f"fields not editable: {sorted(bad)}")
    tz = check_zone(data.get("timezone", item.timezone))
    changes: dict[str, Any] = {"timezone": tz}
    for name in ("uid", "subject", "body", "location"):
        if name in data:
            changes[name] = check_str(data[name], name)
    if "body_type" in data:
        changes["body_type"] = check_choice(data["body_type"], BODY_TYPES, "body_type")
    if "sensitivity" in data:
        changes["sensitivity"] = check_choice(data["sensitivity"], SENSITIVITIES, "sensitivity")
    if "legacy_free_busy_status" in data:
        changes["legacy_free_busy_status"] = check_choice(
            data["legacy_free_busy_status"], FREE_BUSY, "legacy_free_busy_status"
        )
    for name in ("is_all_day", "is_cancelled"):
        if name in data:
            changes[name] = check_bool(data[name], name)
    for name in ("start", "end"):
        if name in data:
            changes[name] = parse_time(data[name], tz, name)
    if "organizer" in data:
        changes["organizer"] = Person.from_json(data["organizer"], "organizer", with_response=False)
    for name in ("required_attendees", "optional_attendees"):
        if name in data:
            changes[name] = _people(data[name], name)
    if "recurrence" in data:
        changes["recurrence"] = validate_recurrence(data["recurrence"])
    if "timezone_id" in data:
        changes["timezone_id"] = _timezone_id(data["timezone_id"])
    series_changed = item.recurrence is not None and (
        "recurrence" in changes or "start" in changes or "timezone" in data
    )
    backup = {name: getattr(item, name) for name in changes}
    for name, value in changes.items():
        setattr(item, name, value)
    try:
        normalise_times(item)
    except ValidationError:
        for name, value in backup.items():
            setattr(item, name, value)
        raise
    if series_changed or item.recurrence is None:
        # Exchange drops the exceptions of a series whose pattern or timing changes.
        item.modified_occurrences.clear()
        item.deleted_occurrences.clear()


def occurrence_overrides(item: CalendarItem, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    bad = set(data) - set(OCCURRENCE_FIELDS)
    if bad:
        raise ValidationError(f"fields not editable on an occurrence: {sorted(bad)}")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("start", "end"):
            out[name] = parse_time(value, item.timezone, name)
        elif name == "body_type":
            out[name] = check_choice(value, BODY_TYPES, name)
        elif name == "sensitivity":
            out[name] = check_choice(value, SENSITIVITIES, name)
        elif name == "legacy_free_busy_status":
            out[name] = check_choice(value, FREE_BUSY, name)
        elif name == "is_cancelled":
            out[name] = check_bool(value, name)
        else:
            out[name] = check_str(value, name)
    return out


def merge_occurrence(item: CalendarItem, mod: ModifiedOccurrence | None, overrides: dict[str, Any]) -> None:
    if mod is None:
        return
    mod.overrides.update(overrides)
    start, end = item.occurrence_times(mod)
    if end < start:
        raise ValidationError("end must not be before start")
