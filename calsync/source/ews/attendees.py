"""Attendees beyond what the mirror stores are dropped from a GetItem answer before exchangelib
builds them, and counted.

exchangelib turns every Attendee element into three objects; a meeting sent to a distribution
list of 33,000 costs seconds of CPU and tens of MB for rows calsync would not write anyway
(calsync.sync.model.STORED_ATTENDEES). The count of what was dropped travels to the converter
by item id, in the thread that parsed the answer (exchangelib parses in the calling thread).
"""

from __future__ import annotations

import threading
from typing import Any

from exchangelib.services import GetItem
from lxml import etree

from calsync.sync.model import STORED_ATTENDEES

_T = "{http://schemas.microsoft.com/exchange/services/2006/types}"
_LISTS = (f"{_T}RequiredAttendees", f"{_T}OptionalAttendees", f"{_T}Resources")
_EMAIL = f"{_T}Mailbox/{_T}EmailAddress"
_WITH_ADDRESS = etree.XPath(
    "count(t:Attendee[normalize-space(t:Mailbox/t:EmailAddress)])",
    namespaces={"t": "http://schemas.microsoft.com/exchange/services/2006/types"},
)
_local = threading.local()


def _totals() -> dict[str, int]:
    totals: dict[str, int] | None = getattr(_local, "totals", None)
    if totals is None:
        totals = _local.totals = {}
    return totals


def trim(item: Any, limit: int = STORED_ATTENDEES) -> int | None:
    """Keep the first `limit` attendees with an address (the ones the converter keeps, in its
    order); returns how many there were when some were dropped, else None."""
    kept = total = 0
    for tag in _LISTS:
        people = item.find(tag)
        if people is None:
            continue
        total += int(_WITH_ADDRESS(people))
        for index, attendee in enumerate(people):
            if kept >= limit:
                del people[index:]  # one cut, in C, however many there are
                break
            if (attendee.findtext(_EMAIL) or "").strip():
                kept += 1  # the converter skips attendees without an address too
    return total if total > kept else None


def forget() -> None:
    """A new GetItem starts: counts of an earlier one that was never converted go."""
    _totals().clear()


def dropped_total(item_id: str | None) -> int | None:
    """The attendee count of an item whose answer was trimmed (once), else None."""
    return _totals().pop(item_id, None) if item_id else None


_installed = False


def install_attendee_limit() -> None:
    """Wrap GetItem._elem_to_obj, which sees each item's element before exchangelib parses it."""
    global _installed
    if _installed:
        return
    original = GetItem._elem_to_obj

    def _elem_to_obj(self: GetItem, elem: Any) -> Any:
        total = trim(elem)
        if total is not None:
            item_id = elem.find(f"{_T}ItemId")
            if item_id is not None and item_id.get("Id"):
                _totals()[item_id.get("Id")] = total
        return original(self, elem)

    GetItem._elem_to_obj = _elem_to_obj
    _installed = True
