"""Graph's budgets, fleet-wide: per app, and per app and mailbox (4 concurrent requests).

The same Redis mechanism as EWS's service-account cap (calsync.throttle), under other keys.
Every call to the port holds one of the app's slots and the mailbox's one call slot: the
adapter's requests within a call are sequential, except a $batch, which Graph runs at most
four at a time, so a mailbox never has more than 4 requests in flight whichever worker
calls. A Retry-After reaches every worker: a 429 (Graph throttles per app and mailbox)
holds back that mailbox, a 503 or 504 (the service itself) holds back the whole app.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import redis

from calsync.errors import SourceError
from calsync.source.graph.subscriptions import GraphSubscriptions
from calsync.source.port import CalendarSource
from calsync.sync.model import Appointment, RefusedItem, SyncPage
from calsync.throttle import AccountThrottle

T = TypeVar("T")
MAILBOX_CONCURRENCY = 4  # Graph: "Application is over its MailboxConcurrency limit" above this
MAILBOX_CALLS = 1  # port calls in flight per mailbox: each may run a $batch, i.e. up to MAILBOX_CONCURRENCY


class GraphThrottledSource:
    def __init__(
        self,
        inner: CalendarSource,
        client: redis.Redis,
        app_key: str,
        app_limit: int,
        subscriptions: GraphSubscriptions | None = None,
    ) -> None:
        self.inner = inner
        self.subscriptions = subscriptions
        self.client = client
        self.app_key = app_key
        self.app = AccountThrottle(client, f"graph:{app_key}", app_limit)
        self._mailboxes: OrderedDict[str, AccountThrottle] = OrderedDict()
        self._lock = threading.Lock()

    def mailbox_throttle(self, mailbox: str) -> AccountThrottle:
        key = mailbox.lower()
        with self._lock:
            throttle = self._mailboxes.get(key)
            if throttle is None:
                throttle = AccountThrottle(self.client, f"graph:{self.app_key}:{key}", MAILBOX_CALLS)
                self._mailboxes[key] = throttle
                if len(self._mailboxes) > 4096:
                    self._mailboxes.popitem(last=False)
            return throttle

    def call(self, mailbox: str, fn: Callable[[], T]) -> T:
        per_mailbox = self.mailbox_throttle(mailbox)
        with self.app.slot(), per_mailbox.slot():
            try:
                return fn()
            except SourceError as exc:
                if exc.retry_after:
                    (per_mailbox if exc.code == "GraphThrottled" else self.app).push_back(exc.retry_after)
                raise

    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        return self.call(mailbox, lambda: self.inner.sync_page(mailbox, cursor, max_changes))

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> Sequence[Appointment | RefusedItem]:
        if not item_ids:
            return []
        return self.call(mailbox, lambda: self.inner.get_items(mailbox, item_ids))

    # --- change-notification subscriptions (a GraphSubscriber) --------------------------
    def _subs(self) -> GraphSubscriptions:
        if self.subscriptions is None:
            raise RuntimeError("this Graph source was built without subscriptions")
        return self.subscriptions

    def create_subscription(
        self, mailbox: str, notification_url: str, lifecycle_url: str, client_state: str, expires: dt.datetime
    ) -> tuple[str, dt.datetime]:
        made = self.call(
            mailbox, lambda: self._subs().create(mailbox, notification_url, lifecycle_url, client_state, expires)
        )
        return made.id, made.expires_at

    def renew_subscription(self, mailbox: str, subscription_id: str, expires: dt.datetime) -> dt.datetime:
        return self.call(mailbox, lambda: self._subs().renew(subscription_id, expires))

    def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        self.call(mailbox, lambda: self._subs().reauthorize(subscription_id))

    def delete_subscription(self, mailbox: str, subscription_id: str) -> bool:
        return self.call(mailbox, lambda: self._subs().delete(subscription_id))

    @contextmanager
    def lane(self) -> Iterator[GraphThrottledSource]:
        """Graph's limits are per mailbox: a chunk's sequential polls take slots call by call."""
        yield self
