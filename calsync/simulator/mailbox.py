"""One simulated mailbox: its calendar items, tombstones, change log and SyncState tokens."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calsync.simulator.changelog import ChangeLog, Tombstone
from calsync.simulator.model import UTC, CalendarItem

CREATE, UPDATE, DELETE = "Create", "Update", "Delete"


class InvalidSyncState(ValueError):
    """The token is garbage, from another mailbox, or from before a reset: ErrorInvalidSyncStateData."""


def now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


def _b64(raw: str) -> str:
    """URL-safe, so ids can sit in admin API paths."""
    return base64.urlsafe_b64encode(raw.encode()).decode()


def occurrence_id(master_id: str, original_start: dt.datetime) -> str:
    """Occurrence ids encode master and original start so GetItem can resolve them without a table."""
    return "AAOc" + _b64(f"{master_id}|{int(original_start.timestamp())}")


def parse_occurrence_id(item_id: str) -> tuple[str, dt.datetime] | None:
    if not item_id.startswith("AAOc"):
        return None
    try:
        master_id, stamp = base64.urlsafe_b64decode(item_id[4:]).decode().rsplit("|", 1)
        return master_id, dt.datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


@dataclass(slots=True)
class Subscription:
    id: str
    watermark: str
    url: str
    status_frequency: int
    event_types: list[str]
    folder: str
    created: dt.datetime


class Mailbox:
    def __init__(self, email: str, number: int, incarnation: int, impersonation_denied: bool = False) -> None:
        self.email = email
        self.number = number
        #: Differs for every incarnation of the address, so a recreated mailbox rejects old tokens.
        self.key = hashlib.sha1(f"{email.lower()}:{incarnation}".encode()).hexdigest()[:12]
        self.impersonation_denied = impersonation_denied
        self.epoch = 0
        self.items: dict[str, CalendarItem] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self.log = ChangeLog()
        self.subscriptions: dict[str, Subscription] = {}
        #: Called after every change, by name: each push front-end (EWS, Graph) registers one.
        self.on_change: dict[str, Callable[[Mailbox], None]] = {}
        self._next_item = 0
        self.root_folder_id = "AAMkR" + _b64(f"{self.key}:root")
        self.msgroot_folder_id = "AAMkM" + _b64(f"{self.key}:msgfolderroot")
        self.calendar_folder_id = "AAMkC" + _b64(f"{self.key}:calendar")
        self.folder_change_key = "AQAAABYAAA" + _b64(self.key)[:8]

    # --- identifiers -----------------------------------------------------------------------
    def new_item_id(self) -> str:
        self._next_item += 1
        return "AAMkA" + _b64(f"{self.key}:{self._next_item:08d}")

    @staticmethod
    def change_key(item_id: str, version: int) -> str:
        digest = hashlib.sha1(f"{item_id}:{version}".encode()).digest()[:9]
        return "DwAAABYAAA" + base64.b64encode(digest).decode()

    # --- change tracking ---------------------------------------------------------------------
    def _current_seq(self, item_id: str) -> int | None:
        item = self.items.get(item_id)
        if item is not None:
            return item.last_seq
        tomb = self.tombstones.get(item_id)
        return tomb.deleted_seq if tomb is not None else None

    def _changed(self) -> None:
        for hook in list(self.on_change.values()):
            hook(self)

    def add(self, item: CalendarItem) -> None:
        seq = self.log.record(item.id, superseded=False)
        item.created_seq = item.last_seq = seq
        self.items[item.id] = item
        self._changed()

    def touch(self, item: CalendarItem, when: dt.datetime | None = None) -> None:
        """Log an Update: new ChangeKey, LastModifiedTime and sequence number."""
        item.version += 1
        item.change_key = self.change_key(item.id, item.version)
        item.last_modified = max(when or now(), item.last_modified)
        item.cache.clear()
        item.last_seq = self.log.record(item.id, superseded=True)
        self.log.maybe_compact(self._current_seq)
        self._changed()

    def remove(self, item_id: str) -> CalendarItem:
        item = self.items.pop(item_id)
        seq = self.log.record(item_id, superseded=True)
        self.tombstones[item_id] = Tombstone(deleted_seq=seq, created_seq=item.created_seq)
        self.log.maybe_compact(self._current_seq)
        self._changed()
        return item

    def changes_since(self, base: int, cursor: int, limit: int) -> tuple[list[tuple[str, Any]], int, bool]:
        """Up to ``limit`` net changes after ``cursor``, the next cursor, and whether that was all.

        ``base`` is where the client stood before its current run of pages began; ``cursor`` how
        far the run has got (equal outside a run). An item created after ``base`` is reported as
        Create even on a later page (the client may not have it yet; Create is an upsert for it),
        and a deletion is reported for anything the client may have received (created up to
        ``cursor``); an item created and deleted since then is never mentioned.
        """
        changes: list[tuple[str, Any]] = []
        last_seq = cursor
        more = False
        for seq, item_id in self.log.entries_after(cursor, self._current_seq):
            item = self.items.get(item_id)
            change: tuple[str, Any]
            if item is not None:
                change = (CREATE if item.created_seq > base else UPDATE, item)
            elif self.tombstones[item_id].created_seq <= cursor:
                change = (DELETE, item_id)
            else:
                continue
            if len(changes) == limit:
                more = True
                break
            changes.append(change)
            last_seq = seq
        return changes, (last_seq if more else self.log.seq), not more

    # --- sync state tokens -------------------------------------------------------------------
    def sync_state(self, base: int, cursor: int) -> str:
        """Opaque to clients: base64 of mailbox incarnation, reset epoch, base and paging cursor."""
        return base64.b64encode(f"csim1:{self.key}:{self.epoch}:{base}:{cursor}".encode()).decode()

    def parse_sync_state(self, token: str | None) -> tuple[int, int]:
        """(base, cursor); (0, 0) for a first sync."""
        if not token:
            return 0, 0
        try:
            magic, key, epoch, base_s, cursor_s = base64.b64decode(token.strip(), validate=True).decode().split(":")
            base, cursor = int(base_s), int(cursor_s)
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidSyncState("not a sync state") from exc
        if magic != "csim1" or key != self.key or epoch != str(self.epoch):
            raise InvalidSyncState("sync state of another mailbox or from before a reset")
        if not 0 <= base <= cursor <= self.log.seq:
            raise InvalidSyncState("sync state from the future")
        return base, cursor

    def reset_sync_states(self) -> None:
        self.epoch += 1
