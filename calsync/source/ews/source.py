"""The EWS adapter of the CalendarSource port."""

from __future__ import annotations

from collections.abc import Sequence

from calsync.errors import SourceError
from calsync.source.ews.connection import AccountPool, EwsEndpoint
from calsync.source.ews.errors import classify
from calsync.source.ews.get_items import get_items
from calsync.source.ews.sync_page import sync_page
from calsync.sync.model import Appointment, RefusedItem, SyncPage


class EwsSource:
    def __init__(self, endpoint: EwsEndpoint) -> None:
        self.endpoint = endpoint
        self.accounts = AccountPool(endpoint)

    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        account, calendar = self.accounts.calendar(mailbox)
        try:
            return sync_page(account, calendar, cursor, max_changes)
        except SourceError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> Sequence[Appointment | RefusedItem]:
        account, calendar = self.accounts.calendar(mailbox)
        try:
            return get_items(account, calendar, mailbox, item_ids)
        except SourceError:
            raise
        except Exception as exc:
            raise classify(exc) from exc
