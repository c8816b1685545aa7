"""The port every calendar source implements (EWS today, Microsoft Graph later).

The sync engine only speaks these terms: one page of changes at a time from an opaque
cursor, and a fetch of full items by id. Errors are the source's own, classified by
calsync.errors so the tasks can decide between retry, resync, fail and pause.
"""

from __future__ import annotations

import datetime as dt
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


class PushSubscriber(Protocol):
    """A source that can tell a listener about changes (EWS push; Graph's change
    notifications are GraphSubscriber). Streaming (EWS GetStreamingEvents, where Exchange cannot reach a
    listener) would be a second method here and a second `mode` of push_subscriptions."""

    def subscribe_push(self, mailbox: str, url: str, watermark: str | None, status_frequency: int) -> tuple[str, str]:
        """Subscribe `mailbox`'s calendar; the source POSTs to `url` and reports at least every
        `status_frequency` minutes. `watermark`: resume after it (None: from now). Returns
        (subscription id, watermark)."""
        ...


class GraphSubscriber(Protocol):
    """Microsoft Graph change notifications: subscriptions that expire unless renewed.
    `mailbox` names whose fleet-wide slots the call takes; a 404 on renew, reauthorize or
    delete is GraphSubscriptionNotFound (the subscription is gone, not the mailbox)."""

    def create_subscription(
        self, mailbox: str, notification_url: str, lifecycle_url: str, client_state: str, expires: dt.datetime
    ) -> tuple[str, dt.datetime]:
        """Subscribe to the mailbox's events; returns (subscription id, expiry Graph granted)."""
        ...

    def renew_subscription(self, mailbox: str, subscription_id: str, expires: dt.datetime) -> dt.datetime: ...

    def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None: ...

    def delete_subscription(self, mailbox: str, subscription_id: str) -> bool:
        """False when Graph no longer knew it."""
        ...
