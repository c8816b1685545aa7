"""GetItem for the calendar items a page needs, with only the fields the CRM contract uses.

An item that cannot be converted is refused alone (a RefusedItem with its code), never the call.
"""

from __future__ import annotations

from collections.abc import Sequence

from exchangelib import Account
from exchangelib.errors import ErrorItemNotFound
from exchangelib.folders import Calendar
from exchangelib.items import CalendarItem

from calsync import errors
from calsync.source.ews.convert import FETCH_FIELDS, UnreadableItem, to_appointment
from calsync.sync.model import Appointment, RefusedItem


def get_items(
    account: Account, calendar: Calendar, mailbox: str, item_ids: Sequence[str], chunk_size: int = 100
) -> list[Appointment | RefusedItem]:
    if not item_ids:
        return []
    out: list[Appointment | RefusedItem] = []
    for result in account.fetch(
        ids=[(i, None) for i in item_ids], folder=calendar, only_fields=FETCH_FIELDS, chunk_size=chunk_size
    ):
        if isinstance(result, ErrorItemNotFound):
            continue  # deleted since the page was read; a later Delete removes it
        if isinstance(result, Exception):
            raise result
        if isinstance(result, CalendarItem):
            out.append(_convert(result, mailbox))
    return out


def _convert(item: CalendarItem, mailbox: str) -> Appointment | RefusedItem:
    """One item, or its refusal: conversion is per item, so one bad item refuses only itself."""
    try:
        return to_appointment(item, mailbox)
    except UnreadableItem as exc:
        return RefusedItem(item.id, item.changekey, exc.code, str(exc))
    except Exception as exc:  # a form calsync cannot convert (an unknown zone, a value out of range)
        return RefusedItem(item.id, item.changekey, errors.ITEM_UNCONVERTIBLE, f"{type(exc).__name__}: {exc}")
