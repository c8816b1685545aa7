"""Occurrences of recurring masters as a CalendarView shows them (exceptions applied, deletions removed)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from calsync.simulator.mailbox import occurrence_id
from calsync.simulator.model import CalendarItem, ModifiedOccurrence, ValidationError
from calsync.simulator.recurrence import (
    RecurrenceError,
    expand_occurrences,
    first_occurrence,
    last_occurrence,
)

_SECOND = dt.timedelta(seconds=1)
_CHUNK = dt.timedelta(days=400)


@dataclass(slots=True)
class Instance:
    """One entry of a calendar view: a single item, or an occurrence/exception of a master."""

    master: CalendarItem
    kind: str  # Single | Occurrence | Exception
    id: str
    change_key: str
    start: dt.datetime
    end: dt.datetime
    original_start: dt.datetime | None
    mod: ModifiedOccurrence | None = None

    def value(self, name: str) -> object:
        if self.mod is not None and name in self.mod.overrides:
            return self.mod.overrides[name]
        return getattr(self.master, name)


def _expand(item: CalendarItem, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    assert item.recurrence is not None
    return expand_occurrences(item.recurrence, item.start, item.end, item.timezone, start, end, all_day=item.is_all_day)


def check_recurrence(item: CalendarItem) -> None:
    """Reject a series Exchange would refuse (no occurrence at all, bad pattern data)."""
    if item.recurrence is None:
        return
    try:
        first_occurrence(item.recurrence, item.start, item.end, item.timezone, all_day=item.is_all_day)
        last_occurrence(item.recurrence, item.start, item.end, item.timezone, all_day=item.is_all_day)
    except RecurrenceError as exc:
        raise ValidationError(f"recurrence: {exc}") from exc


def align_to_first(item: CalendarItem) -> None:
    """Exchange moves a master's Start/End onto its first occurrence."""
    if item.recurrence is None:
        return
    start, end = first_occurrence(item.recurrence, item.start, item.end, item.timezone, all_day=item.is_all_day)
    item.start, item.end = start, end


def is_occurrence(item: CalendarItem, original_start: dt.datetime) -> bool:
    if item.recurrence is None:
        return False
    duration = item.end - item.start
    found = _expand(item, original_start - _SECOND, original_start + duration + _SECOND)
    return any(s == original_start for s, _ in found)


def _instance(item: CalendarItem, original: dt.datetime, original_end: dt.datetime) -> Instance:
    mod = item.modified_occurrences.get(original)
    if mod is not None:
        start, end = item.occurrence_times(mod)
        return Instance(item, "Exception", mod.id, mod.change_key, start, end, original, mod)
    occ_id = occurrence_id(item.id, original)
    return Instance(item, "Occurrence", occ_id, item.change_key, original, original_end, original)


def instance_at(item: CalendarItem, original_start: dt.datetime) -> Instance | None:
    if original_start in item.deleted_occurrences or not is_occurrence(item, original_start):
        return None
    return _instance(item, original_start, original_start + (item.end - item.start))


def instances(item: CalendarItem, start: dt.datetime, end: dt.datetime) -> list[Instance]:
    """Occurrences and exceptions of ``item`` overlapping ``[start, end)``, by start time."""
    if item.recurrence is None:
        if item.start < end and (item.end > start or (item.start == item.end and item.start >= start)):
            return [Instance(item, "Single", item.id, item.change_key, item.start, item.end, None)]
        return []
    out: list[Instance] = []
    for original, original_end in _expand(item, start, end):
        if original in item.deleted_occurrences or original in item.modified_occurrences:
            continue
        out.append(_instance(item, original, original_end))
    for original, mod in item.modified_occurrences.items():
        if original in item.deleted_occurrences:
            continue
        s, e = item.occurrence_times(mod)
        if s < end and (e > start or (s == e and s >= start)):
            out.append(Instance(item, "Exception", mod.id, mod.change_key, s, e, original, mod))
    out.sort(key=lambda i: (i.start, i.end))
    return out


def first_instance(item: CalendarItem) -> Instance | None:
    """FirstOccurrence: the earliest remaining occurrence, exceptions applied."""
    if item.recurrence is None:
        return None
    start = item.start - _SECOND
    last = last_occurrence(item.recurrence, item.start, item.end, item.timezone, all_day=item.is_all_day)
    for _ in range(50):
        for original, original_end in _expand(item, start, start + _CHUNK):
            if original >= item.start and original not in item.deleted_occurrences:
                return _instance(item, original, original_end)
        start += _CHUNK
        if last is not None and start > last[1]:
            return None
    return None


def last_instance(item: CalendarItem) -> Instance | None:
    """LastOccurrence: the final remaining occurrence; None for a series without end."""
    if item.recurrence is None:
        return None
    last = last_occurrence(item.recurrence, item.start, item.end, item.timezone, all_day=item.is_all_day)
    if last is None:
        return None
    end = last[1] + _SECOND
    for _ in range(50):
        found = [o for o in _expand(item, end - _CHUNK, end) if o[0] not in item.deleted_occurrences]
        if found:
            original, original_end = max(found)
            return _instance(item, original, original_end)
        end -= _CHUNK
        if end < item.start:
            return None
    return None
