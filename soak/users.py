"""Users editing their calendars at a steady rate, through the simulator's admin API.

Every kind of change a mirror must follow: a new meeting, a new subject, a move, a
cancellation, a deletion, a new daily series, one occurrence of it changed (an exception)
or deleted. New subjects carry a marker (`soak-<n>`) so the soak can time how long each took
to reach Postgres.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from calsync.simulator.client import SimulatorClient, SimulatorClientError

ACTIONS = ("create", "rename", "move", "cancel", "delete", "create_series", "change_occurrence", "delete_occurrence")


@dataclass
class Series:
    mailbox: str
    item_id: str
    first: dt.datetime  # UTC start of the first occurrence (daily, UTC, so no DST shifts)
    count: int


@dataclass
class Users:
    client: SimulatorClient
    mailboxes: list[str]
    rng: random.Random
    interval: float  # seconds between two edits
    made: dict[str, float] = field(default_factory=dict)  # marker subject -> time.time() of the edit
    done: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    _singles: dict[str, list[str]] = field(default_factory=dict)
    _series: list[Series] = field(default_factory=list)
    _seq: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        for email in self.mailboxes:
            self._singles[email] = [
                it["id"] for it in self.client.list_items(email)
                if it["calendar_item_type"] == "Single" and not it["is_cancelled"]
            ]  # fmt: skip
        self._thread = threading.Thread(target=self._loop, name="soak-users", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            action = self.rng.choice(ACTIONS)
            try:
                if getattr(self, f"_{action}")():
                    self.done[action] += 1
            except SimulatorClientError as exc:
                self.refused[f"{action}: HTTP {exc.status}"] += 1
            except Exception as exc:  # the simulator is never restarted; anything else is worth a count
                self.refused[f"{action}: {type(exc).__name__}"] += 1
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _marker(self) -> str:
        self._seq += 1
        return f"soak-{self._seq:05d}"

    def _when(self) -> dt.datetime:
        day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=self.rng.randint(1, 60))
        return dt.datetime(day.year, day.month, day.day, self.rng.randint(7, 17), 0, tzinfo=dt.UTC)

    def _mark(self, subject: str) -> None:
        self.made[subject] = time.time()

    def _pick_single(self) -> tuple[str, str] | None:
        email = self.rng.choice(self.mailboxes)
        ids = self._singles.get(email) or []
        return (email, self.rng.choice(ids)) if ids else None

    def _create(self) -> bool:
        email, start, subject = self.rng.choice(self.mailboxes), self._when(), self._marker()
        item = self.client.create_item(
            email,
            {"subject": subject, "start": start.isoformat(), "end": (start + dt.timedelta(minutes=30)).isoformat(),
             "timezone": "UTC", "location": "Room " + str(self.rng.randint(1, 9))},
        )  # fmt: skip
        self._mark(subject)
        self._singles.setdefault(email, []).append(item["id"])
        return True

    def _rename(self) -> bool:
        picked = self._pick_single()
        if picked is None:
            return False
        subject = self._marker()
        self.client.update_item(*picked, {"subject": subject})
        self._mark(subject)
        return True

    def _move(self) -> bool:
        picked = self._pick_single()
        if picked is None:
            return False
        start = self._when()
        self.client.update_item(
            *picked, {"start": start.isoformat(), "end": (start + dt.timedelta(hours=1)).isoformat(), "timezone": "UTC"}
        )
        return True

    def _cancel(self) -> bool:
        picked = self._pick_single()
        if picked is None:
            return False
        self.client.cancel_item(*picked)
        self._singles[picked[0]].remove(picked[1])
        return True

    def _delete(self) -> bool:
        picked = self._pick_single()
        if picked is None:
            return False
        self.client.delete_item(*picked)
        self._singles[picked[0]].remove(picked[1])
        return True

    def _create_series(self) -> bool:
        email, first, subject = self.rng.choice(self.mailboxes), self._when(), self._marker()
        count = self.rng.randint(3, 8)
        item = self.client.create_item(
            email,
            {"subject": subject, "start": first.isoformat(), "end": (first + dt.timedelta(minutes=15)).isoformat(),
             "timezone": "UTC",
             "recurrence": {"pattern": {"type": "Daily", "interval": 1},
                            "range": {"type": "Numbered", "start_date": first.date().isoformat(), "count": count}}},
        )  # fmt: skip
        self._mark(subject)
        self._series.append(Series(email, item["id"], first, count))
        return True

    def _occurrence(self) -> tuple[Series, str] | None:
        if not self._series:
            return None
        s = self.rng.choice(self._series)
        k = self.rng.randrange(s.count)
        return s, (s.first + dt.timedelta(days=k)).isoformat()

    def _change_occurrence(self) -> bool:
        found = self._occurrence()
        if found is None:
            return False
        s, original = found
        subject = self._marker()
        self.client.update_occurrence(s.mailbox, s.item_id, original, {"subject": subject, "location": "Moved"})
        self._mark(subject)
        return True

    def _delete_occurrence(self) -> bool:
        found = self._occurrence()
        if found is None:
            return False
        s, original = found
        self.client.delete_occurrence(s.mailbox, s.item_id, original)
        return True
