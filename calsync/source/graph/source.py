"""The Graph adapter: calendarView delta pages in, the port's SyncPage and Appointments out.

How Graph's delta maps onto the port (which speaks EWS's SyncFolderItems shape):

* The window (past_window_days back, future_horizon_days ahead, whole UTC days) is fixed
  inside Graph's skip and delta tokens, so the cursor remembers the day it was started on.
  On a new day the cursor is refused as invalid: the runner starts a resync generation,
  which lists the moved window, upserts only rows whose content changed and removes what
  is gone (the daily horizon roll of a Graph mailbox).
* Singles come with the page and are served to get_items from memory. Occurrences and
  exceptions (in either shape: the full event, or only id/seriesMasterId/type/start/end)
  stand for their series: the master is fetched (with $batch) and reported as a change with
  its own change key, so a master whose key the mirror already has is not fetched again.
* A master's occurrences are expanded by calsync as for EWS; the master's exceptions and
  deleted occurrences come from its `instances` in the window (Graph v1.0 does not list
  them on the master), so the rows equal the EWS adapter's.
* `@removed` means deleted, or moved out of the window. Each is checked with a GET: an event
  that still exists is followed as an update (the mirror keeps it, as with EWS), a missing one
  is a delete. Deleted occurrences are settled through their master, whose change key moved;
  as Graph names no master for them, the mailbox's masters are listed (ids and change keys
  only) and any series row no longer among them is removed.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from calsync.errors import ITEM_UNCONVERTIBLE, ITEM_WITHOUT_TIMES, InvalidCursor
from calsync.source.graph.client import GraphClient
from calsync.source.graph.convert import instant, parse_datetime, to_appointment
from calsync.sync.model import Appointment, ChangeKind, ChangeRef, Kind, ModifiedOccurrence, RefusedItem, SyncPage
from calsync.sync.occurrences import timing_of
from calsync.sync.recurrence import RecurrenceError, occurrences, parse_rule

CURSOR_PREFIX = "graph1:"
PREFER_UTC = 'outlook.timezone="UTC"'


class WindowRolled(InvalidCursor):
    """The cursor's window was started on an earlier day: a new delta generation is due."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.code = "GraphWindowRolled"


@dataclass(frozen=True, slots=True)
class Cursor:
    day: dt.date
    link: str

    def encode(self) -> str:
        return CURSOR_PREFIX + json.dumps({"day": self.day.isoformat(), "link": self.link}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if not text.startswith(CURSOR_PREFIX):
            raise InvalidCursor("the stored cursor is not a Graph delta link (the operator's source changed)")
        try:
            data = json.loads(text[len(CURSOR_PREFIX) :])
            return cls(dt.date.fromisoformat(data["day"]), str(data["link"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidCursor("the stored Graph cursor is unreadable") from exc


def _convert(event: dict[str, Any], mailbox: str) -> Appointment | RefusedItem:
    """One event, or its refusal: one unreadable event never blocks the rest of its mailbox."""
    item_id, change_key = str(event.get("id")), event.get("changeKey")
    if not (event.get("start") or {}).get("dateTime") or not (event.get("end") or {}).get("dateTime"):
        return RefusedItem(item_id, change_key, ITEM_WITHOUT_TIMES, "Graph sent the event without a start or end")
    try:
        return to_appointment(event, mailbox)
    except Exception as exc:  # a form calsync cannot convert (a value out of range, a malformed field)
        return RefusedItem(item_id, change_key, ITEM_UNCONVERTIBLE, f"{type(exc).__name__}: {exc}")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GraphSource:
    def __init__(self, client: GraphClient, past_days: int, future_days: int, clock: Any = None) -> None:
        self.client = client
        self.past_days = past_days
        self.future_days = future_days
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        # Events read by the last sync_page of each mailbox, served to the get_items that follows.
        self._seen: dict[str, dict[str, dict[str, Any]]] = {}

    # --- window -------------------------------------------------------------------------
    def window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        return midnight - dt.timedelta(days=self.past_days), midnight + dt.timedelta(days=self.future_days + 1)

    def _user(self, mailbox: str) -> str:
        return "/users/" + quote(mailbox, safe="@.")

    # --- the port -----------------------------------------------------------------------
    def sync_page(self, mailbox: str, cursor: str | None, max_changes: int) -> SyncPage:
        today = self._clock().date()
        if cursor:
            current = Cursor.decode(cursor)
            if current.day != today:
                raise WindowRolled(f"delta window of {current.day} is past; starting the window of {today}")
            link, day = current.link, current.day
        else:
            day = today
            start, end = self.window(day)
            link = f"{self._user(mailbox)}/calendarView/delta?startDateTime={_iso(start)}&endDateTime={_iso(end)}"
        body = self.client.get(link, prefer=(f"odata.maxpagesize={max_changes}", PREFER_UTC))
        next_link = body.get("@odata.nextLink")
        delta_link = body.get("@odata.deltaLink")
        if not next_link and not delta_link:
            raise InvalidCursor("Graph's delta page carried neither a nextLink nor a deltaLink")
        events: dict[str, dict[str, Any]] = {}
        refs: list[ChangeRef] = []
        masters: dict[str, None] = {}
        removed: list[str] = []
        for item in body.get("value") or ():
            item_id = str(item.get("id"))
            if "@removed" in item:
                removed.append(item_id)
                continue
            kind = item.get("type") or "singleInstance"
            if kind in ("occurrence", "exception"):
                if item.get("seriesMasterId"):
                    masters[str(item["seriesMasterId"])] = None
                continue
            if kind == "seriesMaster":
                masters[item_id] = None
                continue
            events[item_id] = item
            refs.append(self._single_ref(item))
        deleted: list[str] = []
        if removed:
            for item_id, (status, ev) in zip(removed, self._get_events(mailbox, removed), strict=True):
                if status == 404 or ev is None:
                    deleted.append(item_id)
                elif ev.get("type") in ("occurrence", "exception") and ev.get("seriesMasterId"):
                    masters[str(ev["seriesMasterId"])] = None
                elif ev.get("type") == "seriesMaster":
                    masters[item_id] = None
                else:  # still there, outside the window: followed as an update
                    events[item_id] = ev
                    refs.append(self._single_ref(ev))
        series_ids: frozenset[str] | None = None
        if deleted:
            listing = self._list_masters(mailbox)
            series_ids = frozenset(listing)
            for master_id in listing:
                masters.setdefault(master_id, None)
            refs.extend(ChangeRef(ChangeKind.DELETE, i) for i in deleted)
        if masters:
            ids = list(masters)
            for master_id, (status, ev) in zip(ids, self._get_events(mailbox, ids), strict=True):
                if status == 404 or ev is None:
                    refs.append(ChangeRef(ChangeKind.DELETE, master_id))
                    continue
                events[master_id] = ev
                refs.append(ChangeRef(ChangeKind.UPDATE, master_id, change_key=ev.get("changeKey"), is_recurring=True))
        with self._lock:
            self._seen[mailbox.lower()] = events
        return SyncPage(
            changes=tuple(refs),
            sync_state=Cursor(day, str(next_link or delta_link)).encode(),
            includes_last=bool(delta_link) and not next_link,
            listed_window=self.window(day),
            series_ids=series_ids,
        )

    def get_items(self, mailbox: str, item_ids: Sequence[str]) -> list[Appointment | RefusedItem]:
        if not item_ids:
            return []
        with self._lock:
            seen = dict(self._seen.get(mailbox.lower(), {}))
        missing = [i for i in item_ids if i not in seen]
        if missing:
            for item_id, (status, ev) in zip(missing, self._get_events(mailbox, missing), strict=True):
                if status == 200 and ev is not None:
                    seen[item_id] = ev
        converted = [_convert(seen[i], mailbox) for i in item_ids if i in seen]  # absent: deleted meanwhile
        series = [a for a in converted if isinstance(a, Appointment) and a.kind is Kind.SERIES and a.recurrence]
        instances = self._instances(mailbox, [a.item_id for a in series])
        out: list[Appointment | RefusedItem] = []
        exceptions: dict[str, dict[str, Any]] = {}
        for appt in converted:
            if isinstance(appt, Appointment) and appt.item_id in instances:
                appt, found = self._with_instances(mailbox, appt, instances[appt.item_id])
                exceptions.update(found)
            out.append(appt)
        if exceptions:
            with self._lock:
                self._seen.setdefault(mailbox.lower(), {}).update(exceptions)
        return out

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def _single_ref(ev: dict[str, Any]) -> ChangeRef:
        end = parse_datetime(ev.get("end")) if not ev.get("isAllDay") else None
        return ChangeRef(ChangeKind.UPDATE, str(ev["id"]), change_key=ev.get("changeKey"), end=end, is_recurring=False)

    def _get_events(self, mailbox: str, ids: Sequence[str]) -> list[tuple[int, dict[str, Any] | None]]:
        paths = [f"{self._user(mailbox)}/events/{quote(i, safe='')}" for i in ids]
        return self.client.batch(paths, prefer=(PREFER_UTC,))

    def _list_masters(self, mailbox: str) -> list[str]:
        path = f"{self._user(mailbox)}/events?$filter=type%20eq%20'seriesMaster'&$select=id,changeKey&$top=999"
        return [str(ev["id"]) for ev in self.client.pages(path)]

    def _instances(self, mailbox: str, master_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every master's instances in the window: $batch, 20 masters per call, then any further pages."""
        if not master_ids:
            return {}
        start, end = self.window(self._clock().date())
        paths = [
            f"{self._user(mailbox)}/events/{quote(i, safe='')}/instances"
            f"?startDateTime={_iso(start)}&endDateTime={_iso(end)}"
            for i in master_ids
        ]
        out: dict[str, list[dict[str, Any]]] = {}
        answers = self.client.batch(paths, prefer=(PREFER_UTC, "odata.maxpagesize=500"))
        for master_id, (status, body) in zip(master_ids, answers, strict=True):
            if status != 200 or body is None:
                continue  # the master went meanwhile: its delete comes with a later page
            found = list(body.get("value") or ())
            if body.get("@odata.nextLink"):
                found += self.client.pages(body["@odata.nextLink"], prefer=(PREFER_UTC, "odata.maxpagesize=500"))
            out[master_id] = found
        return out

    def _with_instances(
        self, mailbox: str, master: Appointment, found_instances: list[dict[str, Any]]
    ) -> tuple[Appointment, dict[str, dict[str, Any]]]:
        """The master with its exceptions and deleted occurrences, read from its instances in the window."""
        start, end = self.window(self._clock().date())
        present: set[dt.datetime] = set()
        modified: list[ModifiedOccurrence] = []
        found: dict[str, dict[str, Any]] = {}
        for inst in found_instances:
            original = instant(inst.get("originalStart"))
            if original is None:
                continue
            present.add(original)
            if inst.get("type") == "exception":
                exc = to_appointment(inst, mailbox)
                modified.append(ModifiedOccurrence(exc.item_id, exc.start, exc.end, original))
                found[exc.item_id] = inst
        deleted: list[dt.datetime] = []
        try:
            rule = parse_rule(master.recurrence or {})
            for occ in occurrences(rule, timing_of(master), start, end):
                if occ.start not in present and occ.end > start:
                    deleted.append(occ.start)
        except RecurrenceError:
            pass
        return (
            replace(
                master,
                modified_occurrences=tuple(sorted(modified, key=lambda m: m.original_start)),
                deleted_occurrences=tuple(sorted(deleted)),
            ),
            found,
        )
