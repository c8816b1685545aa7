"""The vocabulary of a sync, free of Exchange and Postgres types.

Sources (calsync.source) translate their wire objects into these; the store
(calsync.store) writes them. Everything is immutable so a batch can be planned, retried and
compared without side effects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ChangeKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Kind(StrEnum):
    SINGLE = "single"
    SERIES = "series"
    OCCURRENCE = "occurrence"
    EXCEPTION = "exception"


#: Attendees stored per row (appointment_attendees); Appointment.attendees_total keeps how many
#: Exchange listed. Exchange's own default recipient limit is 500; a meeting sent to a
#: distribution list expanded to tens of thousands would otherwise write that many rows for
#: the item and again for every occurrence in the window.
STORED_ATTENDEES = 1000


@dataclass(frozen=True, slots=True)
class Attendee:
    email: str
    name: str | None
    role: str  # required | optional | resource
    response: str | None


@dataclass(frozen=True, slots=True)
class ModifiedOccurrence:
    """An exception as its master lists it (EWS ModifiedOccurrences): enough to place it in the
    window and fetch its own fields by id."""

    item_id: str
    start: dt.datetime  # aware, UTC
    end: dt.datetime  # aware, UTC
    original_start: dt.datetime  # aware, UTC: which occurrence it replaces


@dataclass(frozen=True, slots=True)
class Appointment:
    """One row of the CRM calendar, as calsync wants it stored."""

    item_id: str
    change_key: str
    kind: Kind
    start: dt.datetime  # aware, UTC
    end: dt.datetime  # aware, UTC
    subject: str | None = None
    body: str | None = None
    body_type: str | None = None
    location: str | None = None
    uid: str | None = None
    series_item_id: str | None = None
    original_start: dt.datetime | None = None
    timezone: str | None = None  # IANA name of the item's start time zone
    is_all_day: bool = False
    start_date: dt.date | None = None  # all-day only: first day
    end_date: dt.date | None = None  # all-day only: day after the last day (exclusive, as iCalendar)
    is_cancelled: bool = False
    sensitivity: str = "Normal"
    details_withheld: bool = False
    show_as: str = "Busy"
    organizer_email: str | None = None
    organizer_name: str | None = None
    is_organizer: bool = False
    recurrence: dict[str, Any] | None = None
    exchange_created_at: dt.datetime | None = None
    exchange_modified_at: dt.datetime | None = None
    attendees: tuple[Attendee, ...] = ()
    # How many attendees Exchange listed; `attendees` holds the first STORED_ATTENDEES of them.
    attendees_total: int | None = None
    # Series masters only: the occurrences Exchange changed or removed (original starts, UTC).
    modified_occurrences: tuple[ModifiedOccurrence, ...] = ()
    deleted_occurrences: tuple[dt.datetime, ...] = ()


@dataclass(frozen=True, slots=True)
class RefusedItem:
    """An item the source could not turn into an Appointment: set aside with a catalogue code,
    so that one unreadable item never blocks the rest of its mailbox."""

    item_id: str
    change_key: str | None
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChangeRef:
    """One entry of a SyncFolderItems page: what changed, not yet the item itself.

    start/end/is_recurring come with the page (cheap properties) so that an item outside the
    window is never fetched.
    """

    kind: ChangeKind
    item_id: str
    change_key: str | None = None
    end: dt.datetime | None = None
    is_recurring: bool | None = None


@dataclass(frozen=True, slots=True)
class SyncPage:
    changes: tuple[ChangeRef, ...]
    sync_state: str
    includes_last: bool
    # A source that lists a time window rather than the whole calendar (Graph's calendarView
    # delta): a full sync may only remove unlisted rows that overlap this window.
    listed_window: tuple[dt.datetime, dt.datetime] | None = None
    # Every series master the mailbox has now, when the source had to list them (Graph
    # reports a deleted series only through its occurrences): other series rows are gone.
    series_ids: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """Which appointments a sync keeps: the seed's IsSkipAppointment rule, as data."""

    now: dt.datetime
    past_days: int = 180
    future_days: int = 365
    private_details: bool = False

    @property
    def past_cutoff(self) -> dt.datetime:
        return self.now - dt.timedelta(days=self.past_days)

    @property
    def horizon(self) -> dt.datetime:
        return self.now + dt.timedelta(days=self.future_days)


@dataclass(slots=True)
class BatchPlan:
    """What one batch does to the mirror of one operator."""

    upserts: list[Appointment] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # item ids (singles or series masters)
    # For every upserted single or series: the complete set of its occurrence/exception rows
    # (empty for a single). The store deletes the item's other occurrence rows.
    occurrences: dict[str, list[Appointment]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)  # item ids Exchange still has (full syncs)
    unchanged: int = 0
    skipped: int = 0  # outside the window and not in the mirror
    # Items whose latest version the source refused (the mirror keeps what it had of them),
    # and the page's other item ids, whose earlier refusal (if any) is over.
    refused: list[RefusedItem] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
