"""GetItem for the calendar items a page needs, with only the fields the CRM contract uses.

An item that cannot be converted is refused alone (a RefusedItem with its code), never the call.
exchangelib parses a whole answer before calsync sees any item, so one item it cannot parse
fails the call for all of them: the call is then made again item by item, and only the item
that still fails is refused (ItemUnconvertible). The same item listed twice in one answer is
kept once, its last copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from exchangelib import Account
from exchangelib.errors import ErrorItemNotFound, EWSError
from exchangelib.folders import Calendar
from exchangelib.items import CalendarItem

from calsync import errors
from calsync.source.ews import attendees
from calsync.source.ews.convert import FETCH_FIELDS, UnreadableItem, to_appointment
from calsync.source.ews.errors import classify
from calsync.sync.model import Appointment, RefusedItem

log = logging.getLogger(__name__)

# What exchangelib raises when a value in an answer breaks its parser (an unexpected form, a
# date out of range), as opposed to the call failing (EWSError, transport and network errors).
_PARSE_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError)


def _parse_error(exc: BaseException) -> bool:
    """A value one item carries broke the parser; not an error the adapter knows as the call's
    or the server's (an older server's missing fields are ErrorInvalidServerVersion, for all)."""
    return isinstance(exc, _PARSE_ERRORS) and not isinstance(exc, EWSError) and classify(exc).code == errors.UNEXPECTED


def _fetch(
    account: Account, calendar: Calendar, mailbox: str, item_ids: Sequence[str], chunk_size: int
) -> list[Appointment | RefusedItem]:
    out: dict[str, Appointment | RefusedItem] = {}
    attendees.forget()
    for result in account.fetch(
        ids=[(i, None) for i in item_ids], folder=calendar, only_fields=FETCH_FIELDS, chunk_size=chunk_size
    ):
        if isinstance(result, ErrorItemNotFound):
            continue  # deleted since the page was read; a later Delete removes it
        if isinstance(result, Exception):
            raise result
        if isinstance(result, CalendarItem):
            converted = _convert(result, mailbox)
            out.pop(converted.item_id, None)  # listed twice: the last copy wins
            out[converted.item_id] = converted
    return list(out.values())


def get_items(
    account: Account, calendar: Calendar, mailbox: str, item_ids: Sequence[str], chunk_size: int = 100
) -> list[Appointment | RefusedItem]:
    if not item_ids:
        return []
    try:
        return _fetch(account, calendar, mailbox, item_ids, chunk_size)
    except Exception as exc:
        if not _parse_error(exc):
            raise
        log.warning(
            "%s: GetItem of %d item(s) failed while parsing (%s: %s); fetching them one by one",
            mailbox, len(item_ids), type(exc).__name__, str(exc)[:200],
        )  # fmt: skip
    out: list[Appointment | RefusedItem] = []
    for item_id in item_ids:
        try:
            out.extend(_fetch(account, calendar, mailbox, [item_id], 1))
        except Exception as exc:
            if not _parse_error(exc):
                raise
            reason = f"Exchange's answer for this item cannot be parsed: {type(exc).__name__}: {exc}"
            log.warning("%s: item %s set aside: %s", mailbox, item_id, reason[:300])
            out.append(RefusedItem(item_id, None, errors.ITEM_UNCONVERTIBLE, reason))
    return out


def _convert(item: CalendarItem, mailbox: str) -> Appointment | RefusedItem:
    """One item, or its refusal: conversion is per item, so one bad item refuses only itself."""
    try:
        return to_appointment(item, mailbox)
    except UnreadableItem as exc:
        refused = RefusedItem(item.id, item.changekey, exc.code, str(exc))
    except OverflowError as exc:
        # An all-day item on the first or last day of the calendar: its local midnights in its
        # zone fall outside the years 1 to 9999 that Python (and so calsync) can hold.
        reason = f"a start or end falls outside the years 1 to 9999 once placed in its time zone ({exc})"
        refused = RefusedItem(item.id, item.changekey, errors.ITEM_UNCONVERTIBLE, reason)
    except Exception as exc:  # a form calsync cannot convert (a value never seen before)
        refused = RefusedItem(item.id, item.changekey, errors.ITEM_UNCONVERTIBLE, f"{type(exc).__name__}: {exc}")
    log.warning("%s: item %s set aside: %s: %s", mailbox, refused.item_id, refused.code, refused.reason[:300])
    return refused
