"""Users editing their calendars while a test breaks Redis: a background thread on the simulator.

Each round picks a mailbox and creates, moves or deletes one of its future single
appointments through the simulator's admin API, at a steady pace, until stopped. The
mirror must end equal to the simulator's truth however the edits interleave with the fault.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from typing import Any

from calsync.simulator import mailbox_email


class Editors:
    def __init__(self, client: Any, mailboxes: int, pause: float = 0.2, seed: int = 7) -> None:
        self.client = client
        self.mailboxes = mailboxes
        self.pause = pause
        self.rng = random.Random(seed)
        self.edits = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="editors", daemon=True)

    def __enter__(self) -> Editors:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.pause):
            email = mailbox_email(self.rng.randint(1, self.mailboxes))
            try:
                self._edit(email)
                self.edits += 1
            except Exception as exc:  # a failed edit is reported by the test, never hidden
                self.errors.append(f"{email}: {exc!r}")

    def _edit(self, email: str) -> None:
        now = dt.datetime.now(dt.UTC)
        choice = self.rng.random()
        singles = [
            it for it in self.client.list_items(email)
            if it["recurrence"] is None and not it["is_cancelled"] and dt.datetime.fromisoformat(it["start"]) > now
        ]  # fmt: skip
        if choice < 0.4 or not singles:
            start = (now + dt.timedelta(days=self.rng.randint(1, 60), hours=self.rng.randint(0, 8))).replace(
                microsecond=0, second=0
            )
            self.client.create_item(
                email,
                {"subject": f"Booked during the fault {self.edits}", "start": start.isoformat(),
                 "end": (start + dt.timedelta(minutes=30)).isoformat(), "timezone": "Europe/Berlin"},
            )  # fmt: skip
        elif choice < 0.8:
            item = self.rng.choice(singles)
            self.client.update_item(email, item["id"], {"subject": f"Moved {self.edits}", "location": "Room 9"})
        else:
            self.client.delete_item(email, self.rng.choice(singles)["id"])
