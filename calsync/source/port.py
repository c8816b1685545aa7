"""The port every calendar source implements (EWS today, Microsoft Graph later).

The sync engine only speaks these terms: one page of changes at a time from an opaque
cursor, and a fetch of full items by id. Errors are the source's own, classified by
calsync.errors so the tasks can decide between retry, resync, fail and pause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from calsync.sync.model import Appointment, RefusedItem, SyncPage


class CalendarSource(Protocol):
    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        """The next page of changes after `cursor` (None: start from scratch)."""
        ...

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> Sequence[Appointment | RefusedItem]:
        """Full items for the ids; ids that no longer exist are left out. An item the adapter
        cannot read (no readable start or end, a form it cannot convert) comes back as a
        RefusedItem with a catalogue code instead of failing the whole call."""
        ...
