"""A CalendarSource decorator that keeps the whole fleet inside the service account's budget.

Every call to the wrapped source holds one fleet-wide slot (calsync.throttle), and a
server's back-off request is published to every worker of that account before the error
travels on. A chunk of polls made one after another holds one slot for all of them
(`lane()`), re-checking the back-off before each request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from calsync.source.errors import SourceError
from calsync.source.port import CalendarSource
from calsync.sync.model import Appointment, SyncPage
from calsync.throttle import AccountThrottle, Lane


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

    @contextmanager
    def lane(self) -> Iterator[LaneSource]:
        """A source for sequential calls that share one slot; raises ThrottleBusy if none is free."""
        with self.throttle.lane() as lane:
            yield LaneSource(self, lane)


class LaneSource:
    """The CalendarSource of one lane: sequential calls, one fleet-wide slot between them."""

    def __init__(self, outer: ThrottledSource, lane: Lane) -> None:
        self.outer = outer
        self.lane = lane

    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        self.lane.before_request()
        try:
            return self.outer.inner.sync_page(mailbox, cursor, max_changes)
        except SourceError as exc:
            self.outer._backoff(exc)
            raise

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> list[Appointment]:
        if not item_ids:
            return []
        self.lane.before_request()
        try:
            return self.outer.inner.get_items(mailbox, item_ids)
        except SourceError as exc:
            self.outer._backoff(exc)
            raise
