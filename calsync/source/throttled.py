"""A CalendarSource decorator that keeps the whole fleet inside the service account's budget.

Every call to the wrapped source holds one fleet-wide slot (calsync.throttle), and a
server's back-off request is published to every worker of that account before the error
travels on. A chunk of polls made one after another holds one slot for all of them
(`lane()`), re-checking the back-off before each request. Each HTTP request under a slot
extends it to cover that request's deadline (calsync.source.request_hook).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from calsync.errors import SourceError
from calsync.source import request_hook
from calsync.source.port import CalendarSource
from calsync.sync.model import Appointment, RefusedItem, SyncPage
from calsync.throttle import AccountThrottle, Lane

T = TypeVar("T")


class ThrottledSource:
    def __init__(self, inner: CalendarSource, throttle: AccountThrottle) -> None:
        self.inner = inner
        self.throttle = throttle

    def passing_back_off(self, call: Callable[[], T]) -> T:
        """Run one call to the wrapped source; a server's back-off request reaches every worker."""
        try:
            return call()
        except SourceError as exc:
            if exc.retry_after:
                self.throttle.push_back(exc.retry_after)
            raise

    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        with self.throttle.slot() as lane, request_hook.each_request(lane.cover_request):
            return self.passing_back_off(lambda: self.inner.sync_page(mailbox, cursor, max_changes))

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> Sequence[Appointment | RefusedItem]:
        if not item_ids:
            return []
        with self.throttle.slot() as lane, request_hook.each_request(lane.cover_request):
            return self.passing_back_off(lambda: self.inner.get_items(mailbox, item_ids))

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
        with request_hook.each_request(self.lane.cover_request):
            return self.outer.passing_back_off(lambda: self.outer.inner.sync_page(mailbox, cursor, max_changes))

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> Sequence[Appointment | RefusedItem]:
        if not item_ids:
            return []
        self.lane.before_request()
        with request_hook.each_request(self.lane.cover_request):
            return self.outer.passing_back_off(lambda: self.outer.inner.get_items(mailbox, item_ids))
