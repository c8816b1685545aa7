"""Deterministic mailbox contents from a seed.

Mailboxes are ``user0001@example.com``, ``user0002@example.com``, ... (display name
"User 0001"). Each gets ``appointments`` calendar items spread from two years before to one year
after the anchor day (default: today, UTC), so the same seed and anchor always give the same
calendar: singles, multi-day all-day events, private and cancelled ones, and recurring series
(daily, weekly, monthly, yearly) with exceptions and deleted occurrences, in several time zones,
with attendees. Items are built directly (no per-item validation or recurrence expansion), so
50 x 200 items take a fraction of a second and 50,000 items a few seconds.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import TYPE_CHECKING, Any

from calsync.simulator.mailbox import occurrence_id
from calsync.simulator.model import (
    DAY_INDEXES,
    DAY_NAMES,
    MONTH_NAMES,
    UTC,
    CalendarItem,
    ModifiedOccurrence,
    Person,
    zone,
)

if TYPE_CHECKING:
    from calsync.simulator.core import Simulator
    from calsync.simulator.mailbox import Mailbox

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC")
_TOPICS = (
    "Quarterly review",
    "Pipeline sync",
    "Customer call",
    "Demo",
    "1:1",
    "Standup",
    "Contract negotiation",
    "Lunch",
    "Workshop",
    "Board prep",
    "Renewal planning",
    "Onboarding",
)
_PLACES = ("Room Rhine", "Room Hudson", "Teams", "Zoom", "Client office", "Café", "", "Building 2, 3rd floor")
_EXTERNALS = ("ana@contoso.com", "bo@fabrikam.com", "chen@northwind.example", "dara@adatum.example")
_RESPONSES = ("Accept", "Accept", "Tentative", "Decline", "NoResponseReceived", "Unknown")
_DURATIONS = (15, 30, 30, 45, 60, 60, 60, 90, 120)


def mailbox_email(number: int) -> str:
    return f"user{number:04d}@example.com"


def _person(email: str) -> Person:
    local = email.split("@")[0]
    name = f"User {local[4:]}" if local.startswith("user") and local[4:].isdigit() else local.title()
    return Person(email=email, name=name)


def _local(day: dt.date, minutes: int, tz_name: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60), tzinfo=zone(tz_name)).astimezone(UTC)


def _midnight(day: dt.date, tz_name: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=zone(tz_name)).astimezone(UTC)


class _Builder:
    def __init__(self, rng: random.Random, mailbox: Mailbox, anchor: dt.date, population: int) -> None:
        self.rng = rng
        self.mailbox = mailbox
        self.anchor = anchor
        self.anchor_dt = dt.datetime.combine(anchor, dt.time(0, 0), tzinfo=UTC)
        self.population = population
        self.owner = _person(mailbox.email)

    def attendees(self, count: int, seen: set[str]) -> list[Person]:
        rng = self.rng
        out: list[Person] = []
        for _ in range(count):
            if self.population > 1 and rng.random() < 0.7:
                email = mailbox_email(rng.randint(1, self.population))
            else:
                email = rng.choice(_EXTERNALS)
            if email in seen:
                continue
            seen.add(email)
            person = _person(email)
            person.response = rng.choice(_RESPONSES)
            out.append(person)
        return out

    def item(self) -> CalendarItem:
        rng = self.rng
        mailbox = self.mailbox
        tz = rng.choice(ZONES)
        day = self.anchor + dt.timedelta(days=rng.randint(-730, 365))
        kind = rng.random()
        all_day = 0.55 <= kind < 0.67 or kind >= 0.95
        recurring = 0.67 <= kind < 0.95
        if all_day:
            start = _midnight(day, tz)
            end = _midnight(day + dt.timedelta(days=rng.choice((1, 1, 1, 2, 3))), tz)
        else:
            minutes = rng.randint(28, 72) * 15
            start = _local(day, minutes, tz)
            end = start + dt.timedelta(minutes=rng.choice(_DURATIONS))
        item_id = mailbox.new_item_id()
        created = min(start, self.anchor_dt) - dt.timedelta(days=rng.randint(1, 60), minutes=rng.randint(0, 1439))
        modified = created + dt.timedelta(minutes=rng.randint(0, 600))
        seen = {self.owner.email}
        required = self.attendees(rng.randint(0, 4), seen)
        optional = self.attendees(rng.randint(0, 2), seen) if rng.random() < 0.3 else []
        if required and rng.random() < 0.3:
            organizer = Person(email=required[0].email, name=required[0].name)
            required[0] = Person(self.owner.email, self.owner.name, rng.choice(_RESPONSES[:4]))
        else:
            organizer = Person(self.owner.email, self.owner.name)
        topic = rng.choice(_TOPICS)
        html = rng.random() < 0.7
        body = (
            f"<html><body><p>{topic} &amp; follow-ups #{rng.randint(1, 999)}</p></body></html>"
            if html
            else (f"{topic}\nAgenda item {rng.randint(1, 99)}")
        )
        item = CalendarItem(
            id=item_id,
            change_key=mailbox.change_key(item_id, 1),
            uid=str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper(),
            subject=f"{topic} {rng.randint(1, 9999)}",
            body=body,
            body_type="HTML" if html else "Text",
            location=rng.choice(_PLACES),
            start=start,
            end=end,
            timezone=tz,
            is_all_day=all_day,
            sensitivity="Private" if rng.random() < 0.08 else ("Personal" if rng.random() < 0.02 else "Normal"),
            is_cancelled=rng.random() < 0.05,
            legacy_free_busy_status="Free" if all_day else rng.choice(("Busy", "Busy", "Busy", "Tentative", "OOF")),
            organizer=organizer,
            required_attendees=required,
            optional_attendees=optional,
            created=created,
            last_modified=modified,
        )
        if recurring:
            self.make_series(item, day)
        return item

    def make_series(self, item: CalendarItem, day: dt.date) -> None:
        rng = self.rng
        tz = item.timezone
        weekday = DAY_NAMES[day.weekday()]
        choice = rng.random()
        step: int | None = None  # days between occurrences, for patterns whose dates are arithmetic
        count: int | None = None
        pattern: dict[str, Any]
        if choice < 0.3:
            interval = rng.choice((1, 1, 2))
            pattern = {"type": "Daily", "interval": interval}
            step, count = interval, rng.randint(5, 20)
            rng_json: dict[str, Any] = {"type": "Numbered", "start_date": day.isoformat(), "count": count}
        elif choice < 0.7:
            interval = rng.choice((1, 1, 2))
            days = {weekday}
            if rng.random() < 0.4:
                days.add(rng.choice(DAY_NAMES[:5]))
            pattern = {
                "type": "Weekly",
                "interval": interval,
                "days_of_week": [d for d in DAY_NAMES if d in days],
                "first_day_of_week": "Sunday",
            }
            if len(days) == 1:
                step, count = 7 * interval, rng.randint(4, 30)
                rng_json = {"type": "Numbered", "start_date": day.isoformat(), "count": count}
            elif rng.random() < 0.5:
                end_day = day + dt.timedelta(days=rng.randint(30, 300))
                rng_json = {"type": "EndDate", "start_date": day.isoformat(), "end_date": end_day.isoformat()}
            else:
                rng_json = {"type": "NoEnd", "start_date": day.isoformat()}
        elif choice < 0.85:
            if day.day <= 28 and rng.random() < 0.5:
                pattern = {"type": "AbsoluteMonthly", "interval": 1, "day_of_month": day.day}
                rng_json = {"type": "Numbered", "start_date": day.isoformat(), "count": rng.randint(6, 24)}
            else:
                index = (day.day - 1) // 7
                pattern = {
                    "type": "RelativeMonthly",
                    "interval": 1,
                    "days_of_week": weekday,
                    "day_of_week_index": DAY_INDEXES[min(index, 4)],
                }
                rng_json = {"type": "NoEnd", "start_date": day.isoformat()}
        elif day.day <= 28:
            pattern = {"type": "AbsoluteYearly", "day_of_month": day.day, "month": MONTH_NAMES[day.month - 1]}
            rng_json = {"type": "NoEnd", "start_date": day.isoformat()}
        else:
            pattern = {
                "type": "RelativeYearly",
                "days_of_week": weekday,
                "day_of_week_index": "Last",
                "month": MONTH_NAMES[day.month - 1],
            }
            rng_json = {"type": "Numbered", "start_date": day.isoformat(), "count": 3}
        item.recurrence = {"pattern": pattern, "range": rng_json}
        item.is_cancelled = item.is_cancelled and rng.random() < 0.3
        if step is None or count is None or count < 4:
            return
        local = item.start.astimezone(zone(tz))
        duration = item.end - item.start

        def original(k: int) -> dt.datetime:
            when = local.date() + dt.timedelta(days=k * step)
            if item.is_all_day:
                return _midnight(when, tz)
            return dt.datetime.combine(when, local.time(), tzinfo=zone(tz)).astimezone(UTC)

        picks = rng.sample(range(1, count), k=min(3, count - 1))
        if rng.random() < 0.6:
            item.deleted_occurrences.add(original(picks[0]))
        if rng.random() < 0.6:
            orig = original(picks[1])
            occ_id = occurrence_id(item.id, orig)
            overrides: dict[str, Any] = {"subject": item.subject + " (moved)"}
            if not item.is_all_day:
                overrides["start"] = orig + dt.timedelta(hours=1)
                overrides["end"] = orig + dt.timedelta(hours=1) + duration
            else:
                overrides["location"] = "Offsite"
            item.modified_occurrences[orig] = ModifiedOccurrence(
                original_start=orig,
                id=occ_id,
                change_key=self.mailbox.change_key(occ_id, 1),
                overrides=overrides,
                last_modified=item.last_modified,
            )


def generate(
    mailboxes: int = 5,
    appointments: int = 50,
    seed: int = 0,
    *,
    anchor: dt.date | None = None,
    into: Simulator | None = None,
    first: int = 1,
    **simulator_options: Any,
) -> Simulator:
    """Fill ``into`` (or a new Simulator) with ``mailboxes`` x ``appointments`` generated items.

    Mailboxes are numbered from ``first``, so calendars of different sizes can share one simulator.
    """
    from calsync.simulator.core import Simulator

    sim = into if into is not None else Simulator(**simulator_options)
    day = anchor or dt.datetime.now(UTC).date()
    for number in range(first, first + mailboxes):
        rng = random.Random(f"{seed}:{number}")
        mailbox = sim.add_mailbox(mailbox_email(number))
        builder = _Builder(rng, sim.mailbox_object(mailbox["email"]), day, mailboxes)
        items = [builder.item() for _ in range(appointments)]
        sim.load_items(mailbox["email"], items)
    return sim
