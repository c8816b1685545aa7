"""GetItem for the calendar items a page needs, with only the fields the CRM contract uses."""

from __future__ import annotations

from collections.abc import Sequence

from exchangelib import Account
from exchangelib.errors import ErrorItemNotFound
from exchangelib.folders import Calendar
from exchangelib.items import CalendarItem

from calsync.source.ews.convert import FETCH_FIELDS, to_appointment
from calsync.sync.model import Appointment


def get_items(
    account: Account, calendar: Calendar, mailbox: str, item_ids: Sequence[str], chunk_size: int = 100
) -> list[Appointment]:
    if not item_ids:
        return []
    out: list[Appointment] = []
    for result in account.fetch(
        ids=[(i, None) for i in item_ids], folder=calendar, only_fields=FETCH_FIELDS, chunk_size=chunk_size
    ):
        if isinstance(result, ErrorItemNotFound):
            continue  # deleted since the page was read; a later Delete removes it
        if isinstance(result, Exception):
            raise result
        if isinstance(result, CalendarItem):
            out.append(to_appointment(result, mailbox))
    return out
