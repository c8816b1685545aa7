"""The in-process simulator: thread-safe mailbox state plus every admin operation as a method.

The HTTP admin API (admin.py) and the EWS endpoint (ews/) are thin layers over this object, so
tests can drive the same state either through HTTP or directly from Python.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterable
from typing import Any

from calsync.simulator import edit, series
from calsync.simulator.faults import Fault, FaultInjector
from calsync.simulator.mailbox import Mailbox, now, occurrence_id
from calsync.simulator.model import (
    UTC,
    CalendarItem,
    ModifiedOccurrence,
    NotFound,
    ValidationError,
    iso_local,
    parse_time,
)
from calsync.simulator.stats import Stats
from calsync.simulator.versions import DEFAULT_VERSION, ServerVersion, server_version

DEFAULT_ACCOUNT = ("svc-calsync", "Simulat0r!")
MAX_VIEW = dt.timedelta(days=731)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Simulator:
    def __init__(
        self,
        *,
        version: str = DEFAULT_VERSION,
        service_accounts: dict[str, str] | Iterable[tuple[str, str]] | None = None,
        validate: bool | None = None,
        latency_ms: int = 0,
        seed: int = 0,
    ) -> None:
        self.version: ServerVersion = server_version(version)
        accounts = dict(service_accounts or [DEFAULT_ACCOUNT])
        if not accounts:
            raise ValueError("at least one service account is needed")
        self.service_accounts: dict[str, str] = accounts
        self.validate = env_flag("CALSYNC_SIMULATOR_VALIDATE") if validate is None else validate
        self.latency_ms = latency_ms
        self.seed = seed
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.stats = Stats()
        self.faults = FaultInjector(seed)
        self._incarnations = 0

    @property
    def service_account(self) -> tuple[str, str]:
        user = next(iter(self.service_accounts))
        return user, self.service_accounts[user]

    # --- mailboxes ---------------------------------------------------------------------------
    def mailbox_object(self, email: str) -> Mailbox:
        mailbox = self.mailboxes.get(email.lower())
        if mailbox is None:
            raise NotFound(f"no mailbox {email}")
        return mailbox

    def find_mailbox(self, email: str) -> Mailbox | None:
        return self.mailboxes.get(email.lower())

    def list_mailboxes(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"email": m.email, "items": len(m.items), "impersonation_denied": m.impersonation_denied}
                for m in self.mailboxes.values()
            ]

    def add_mailbox(self, email: str, impersonation_denied: bool = False) -> dict[str, Any]:
        if not isinstance(email, str) or "@" not in email:
            raise ValidationError("email must be an address")
        if not isinstance(impersonation_denied, bool):
            raise ValidationError("impersonation_denied must be true or false")
        with self.lock:
            existing = self.mailboxes.get(email.lower())
            if existing is not None:
                existing.impersonation_denied = impersonation_denied
                return {
                    "email": existing.email,
                    "items": len(existing.items),
                    "impersonation_denied": impersonation_denied,
                }
            self._incarnations += 1
            number = len(self.mailboxes) + 1
            self.mailboxes[email.lower()] = Mailbox(email, number, self._incarnations, impersonation_denied)
            return {"email": email, "items": 0, "impersonation_denied": impersonation_denied}

    def set_impersonation_denied(self, email: str, denied: bool) -> None:
        with self.lock:
            self.mailbox_object(email).impersonation_denied = denied

    def delete_mailbox(self, email: str) -> None:
        with self.lock:
            if self.mailboxes.pop(email.lower(), None) is None:
                raise NotFound(f"no mailbox {email}")

    def reset_sync_states(self, email: str) -> None:
        with self.lock:
            self.mailbox_object(email).reset_sync_states()

    def load_items(self, email: str, items: Iterable[CalendarItem]) -> None:
        """Bulk insert pre-built items (the generator's fast path; no validation)."""
        with self.lock:
            mailbox = self.mailbox_object(email)
            for item in items:
                mailbox.add(item)

    # --- items -------------------------------------------------------------------------------
    def _item(self, mailbox: Mailbox, item_id: str) -> CalendarItem:
        item = mailbox.items.get(item_id)
        if item is None:
            raise NotFound(f"no item {item_id} in {mailbox.email}")
        return item

    def list_items(self, email: str) -> list[dict[str, Any]]:
        with self.lock:
            return [i.to_json() for i in self.mailbox_object(email).items.values()]

    def get_item(self, email: str, item_id: str) -> dict[str, Any]:
        with self.lock:
            return self._item(self.mailbox_object(email), item_id).to_json()

    def create_item(self, email: str, data: Any) -> dict[str, Any]:
        with self.lock:
            mailbox = self.mailbox_object(email)
            item_id = mailbox.new_item_id()
            item = edit.new_item(data, item_id, mailbox.change_key(item_id, 1), mailbox.email, now())
            series.check_recurrence(item)
            series.align_to_first(item)
            mailbox.add(item)
            return item.to_json()

    def update_item(self, email: str, item_id: str, data: Any) -> dict[str, Any]:
        with self.lock:
            mailbox = self.mailbox_object(email)
            item = self._item(mailbox, item_id)
            snapshot = {name: getattr(item, name) for name in item.__slots__ if name != "cache"}
            snapshot["modified_occurrences"] = dict(item.modified_occurrences)
            snapshot["deleted_occurrences"] = set(item.deleted_occurrences)
            try:
                edit.apply_patch(item, data)
                series.check_recurrence(item)
                if item.recurrence is not None and ("recurrence" in data or "start" in data):
                    series.align_to_first(item)
            except ValidationError:
                for name, value in snapshot.items():
                    setattr(item, name, value)
                raise
            mailbox.touch(item)
            return item.to_json()

    def delete_item(self, email: str, item_id: str) -> None:
        with self.lock:
            mailbox = self.mailbox_object(email)
            self._item(mailbox, item_id)
            mailbox.remove(item_id)

    def cancel_item(self, email: str, item_id: str) -> dict[str, Any]:
        with self.lock:
            mailbox = self.mailbox_object(email)
            item = self._item(mailbox, item_id)
            item.is_cancelled = True
            mailbox.touch(item)
            return item.to_json()

    def _occurrence(self, mailbox: Mailbox, item_id: str, original_start: str) -> tuple[CalendarItem, dt.datetime]:
        item = self._item(mailbox, item_id)
        if item.recurrence is None:
            raise NotFound(f"item {item_id} is not a recurring series")
        original = parse_time(original_start, item.timezone, "original_start")
        if original in item.deleted_occurrences or not series.is_occurrence(item, original):
            raise NotFound(f"series {item_id} has no occurrence at {original_start}")
        return item, original

    def update_occurrence(self, email: str, item_id: str, original_start: str, data: Any) -> dict[str, Any]:
        """Turn one occurrence into an exception; Exchange logs this as an Update of the master."""
        with self.lock:
            mailbox = self.mailbox_object(email)
            item, original = self._occurrence(mailbox, item_id, original_start)
            overrides = edit.occurrence_overrides(item, data)
            when = now()
            mod = item.modified_occurrences.get(original)
            occ_id = mod.id if mod is not None else occurrence_id(item.id, original)
            merged = {**mod.overrides, **overrides} if mod is not None else dict(overrides)
            candidate = ModifiedOccurrence(original, occ_id, "", merged, when)
            start, end = item.occurrence_times(candidate)
            if end < start:
                raise ValidationError("end must not be before start")
            candidate.change_key = mailbox.change_key(candidate.id, item.version + 1)
            item.modified_occurrences[original] = candidate
            mailbox.touch(item)
            return item.occurrence_json(candidate)

    def delete_occurrence(self, email: str, item_id: str, original_start: str) -> dict[str, Any]:
        with self.lock:
            mailbox = self.mailbox_object(email)
            item, original = self._occurrence(mailbox, item_id, original_start)
            item.modified_occurrences.pop(original, None)
            item.deleted_occurrences.add(original)
            mailbox.touch(item)
            return item.to_json()

    # --- calendar view -----------------------------------------------------------------------
    def instances(self, mailbox: Mailbox, start: dt.datetime, end: dt.datetime) -> list[series.Instance]:
        out: list[series.Instance] = []
        for item in mailbox.items.values():
            if item.recurrence is None:
                if item.start < end and (item.end > start or (item.start == item.end and item.start >= start)):
                    out.append(series.Instance(item, "Single", item.id, item.change_key, item.start, item.end, None))
            else:
                out.extend(series.instances(item, start, end))
        out.sort(key=lambda i: (i.start, i.end, i.id))
        return out

    def view(self, email: str, start: str, end: str) -> list[dict[str, Any]]:
        start_dt = parse_time(start, "UTC", "start")
        end_dt = parse_time(end, "UTC", "end")
        if end_dt < start_dt:
            raise ValidationError("end must not be before start")
        if end_dt - start_dt > MAX_VIEW:
            raise ValidationError("a calendar view may span at most two years")
        with self.lock:
            mailbox = self.mailbox_object(email)
            return [instance_json(i) for i in self.instances(mailbox, start_dt, end_dt)]

    # --- faults and stats ----------------------------------------------------------------------
    def add_fault(self, data: Any) -> dict[str, Any]:
        return self.faults.add(data).to_json()

    def list_faults(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.faults.all()]

    def delete_fault(self, fault_id: int) -> None:
        if not self.faults.remove(fault_id):
            raise NotFound(f"no fault {fault_id}")

    def clear_faults(self) -> None:
        self.faults.clear()

    def get_stats(self) -> dict[str, Any]:
        data = self.stats.snapshot()
        data["faults"] = [f.to_json() for f in self.faults.all()]
        with self.lock:
            data["mailboxes"] = len(self.mailboxes)
        data["version"] = self.version.name
        return data

    def reset_stats(self) -> None:
        self.stats.reset()

    def fault_fired(self, fault: Fault) -> None:
        self.faults.mark(fault)
        self.stats.fault(fault.kind)


def instance_json(inst: series.Instance) -> dict[str, Any]:
    master = inst.master
    tz = master.timezone
    data = master.to_json()
    for key in ("recurrence", "modified_occurrences", "deleted_occurrences"):
        data.pop(key)
    if inst.mod is not None:
        for name, value in inst.mod.overrides.items():
            data[name] = iso_local(value, tz) if isinstance(value, dt.datetime) else value
    data.update(
        id=inst.id,
        change_key=inst.change_key,
        calendar_item_type=inst.kind,
        start=iso_local(inst.start, tz),
        end=iso_local(inst.end, tz),
        master_id=master.id if inst.kind != "Single" else None,
        original_start=iso_local(inst.original_start, tz) if inst.original_start else None,
    )
    return data


__all__ = ["DEFAULT_ACCOUNT", "UTC", "Simulator"]
