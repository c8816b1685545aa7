"""A CalendarSource decorator that keeps the whole fleet inside the service account's budget.

Every call to the wrapped source holds one fleet-wide slot (calsync.throttle), and a
server's back-off request is published to every worker of that account before the error
travels on.
"""

from __future__ import annotations

from collections.abc import Sequence

from calsync.source.errors import SourceError
from calsync.source.port import CalendarSource
from calsync.sync.model import Appointment, SyncPage
from calsync.throttle import AccountThrottle


class ThrottledSource:
    def __init__(self, inner: CalendarSource, throttle: AccountThrottle) -> None:
        self.inner = inner
        self.throttle = throttle

    def _backoff(self, exc: SourceError) -> None:
        if exc.retry_after:
            self.throttle.push_back(exc.retry_after)

    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        with self.throttle.slot():
            try:
                return self.inner.sync_page(mailbox, cursor, max_changes)
            except SourceError as exc:
                self._backoff(exc)
                raise

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> list[Appointment]:
        if not item_ids:
            return []
        with self.throttle.slot():
            try:
                return self.inner.get_items(mailbox, item_ids)
            except SourceError as exc:
                self._backoff(exc)
                raise
