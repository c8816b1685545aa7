"""One CalendarSource in front of several: each mailbox is read through its operator's source.

A deployment serves a hybrid organisation (some mailboxes on-premises through EWS, some in
Exchange Online through Graph), while the runner and the poll chunks keep talking to one
port. Each inner source is built on first use, so a Graph-only deployment needs no EWS
service account and the other way round. A cursor written by the other source (the
operator was switched) is refused as invalid before any request: the runner resyncs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol

from calsync.errors import Disposition, InvalidCursor, SourceError
from calsync.source.port import CalendarSource
from calsync.sync.model import Appointment, RefusedItem, SyncPage

EWS, GRAPH = "ews", "graph"
GRAPH_CURSOR_PREFIX = "graph1:"


class LaneCapable(CalendarSource, Protocol):
    def lane(self) -> Any: ...


class RoutedSource:
    def __init__(
        self,
        kind_of: Callable[[str, bool], str],  # (mailbox, fresh) -> ews | graph
        factories: dict[str, Callable[[], LaneCapable]],
    ) -> None:
        self.kind_of = kind_of
        self.factories = factories
        self._built: dict[str, LaneCapable] = {}

    def source(self, kind: str) -> LaneCapable:
        built = self._built.get(kind)
        if built is None:
            built = self._built[kind] = self.factories[kind]()
        return built

    def route(self, mailbox: str, cursor: str | None = None) -> str:
        """The mailbox's source. Switches are rare and reset the cursor, so the (briefly cached)
        answer is asked afresh only when it matters: no cursor yet (a first sync or a resync),
        or a cursor of the other source (a switch this process has not seen yet, or one to
        act on). A confirmed mismatch refuses the cursor: the runner resyncs through the new source."""
        if cursor is None:
            return self.kind_of(mailbox, True)
        kind = self.kind_of(mailbox, False)
        if (kind == GRAPH) != cursor.startswith(GRAPH_CURSOR_PREFIX):
            kind = self.kind_of(mailbox, True)
            if (kind == GRAPH) != cursor.startswith(GRAPH_CURSOR_PREFIX):
                raise InvalidCursor(f"the stored cursor is not from {kind}: the operator's source was switched")
        return kind

    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        return self.source(self.route(mailbox, cursor)).sync_page(mailbox, cursor, max_changes)

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> Sequence[Appointment | RefusedItem]:
        return self.source(self.kind_of(mailbox, False)).get_items(mailbox, item_ids)

    def subscribe_push(self, mailbox: str, url: str, watermark: str | None, status_frequency: int) -> tuple[str, str]:
        """EWS push, for a mailbox read through EWS (the push sweep subscribes only those)."""
        kind = self.kind_of(mailbox, True)
        if kind != EWS:
            raise SourceError(
                "PushUnsupported", Disposition.OPERATOR, f"{mailbox} is read through {kind}: EWS push does not apply"
            )
        inner: Any = self.source(EWS)  # a PushSubscriber (ThrottledSource over EwsSource)
        result: tuple[str, str] = inner.subscribe_push(mailbox, url, watermark, status_frequency)
        return result

    # Graph change notifications: made only for a mailbox read through Graph; renewed and
    # deleted through Graph whatever the mailbox's source is now (a switched operator's old
    # subscription is still Graph's).
    def _graph(self) -> Any:
        return self.source(GRAPH)  # a GraphSubscriber (GraphThrottledSource)

    def create_subscription(
        self, mailbox: str, notification_url: str, lifecycle_url: str, client_state: str, expires: dt.datetime
    ) -> tuple[str, dt.datetime]:
        kind = self.kind_of(mailbox, True)
        if kind != GRAPH:
            raise SourceError(
                "PushUnsupported", Disposition.OPERATOR,
                f"{mailbox} is read through {kind}: Graph change notifications do not apply",
            )  # fmt: skip
        made: tuple[str, dt.datetime] = self._graph().create_subscription(
            mailbox, notification_url, lifecycle_url, client_state, expires
        )
        return made

    def renew_subscription(self, mailbox: str, subscription_id: str, expires: dt.datetime) -> dt.datetime:
        granted: dt.datetime = self._graph().renew_subscription(mailbox, subscription_id, expires)
        return granted

    def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        self._graph().reauthorize_subscription(mailbox, subscription_id)

    def delete_subscription(self, mailbox: str, subscription_id: str) -> bool:
        return bool(self._graph().delete_subscription(mailbox, subscription_id))

    @contextmanager
    def lane(self) -> Iterator[RoutedLane]:
        with ExitStack() as stack:
            yield RoutedLane(self, stack)


class RoutedLane:
    """A chunk's lane: each source's own lane, entered when its first mailbox comes up."""

    def __init__(self, outer: RoutedSource, stack: ExitStack) -> None:
        self.outer = outer
        self.stack = stack
        self._lanes: dict[str, CalendarSource] = {}

    def _lane(self, kind: str) -> CalendarSource:
        lane = self._lanes.get(kind)
        if lane is None:
            lane = self._lanes[kind] = self.stack.enter_context(self.outer.source(kind).lane())
        return lane

    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        return self._lane(self.outer.route(mailbox, cursor)).sync_page(mailbox, cursor, max_changes)

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> Sequence[Appointment | RefusedItem]:
        return self._lane(self.outer.kind_of(mailbox, False)).get_items(mailbox, item_ids)
