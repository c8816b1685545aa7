"""The occurrence and exception rows of a series: what the CRM calendar shows on each date.

Row identity: "<series item id>@<original start, UTC>" (see the 0001 migration), so an
occurrence that becomes an exception, and back, stays the same row.

Change keys: Exchange gives an occurrence no change key of its own and changes the master's on
every edit of any occurrence, so a row's change key is a hash of its content. Re-expanding a
series whose occurrences did not change writes nothing; the horizon roll, which derives rows
from the stored master, computes the very same keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Collection, Iterable, Mapping

from calsync.sync.model import Appointment, Kind, ModifiedOccurrence, Window
from calsync.sync.privacy import withhold_private_details
from calsync.sync.recurrence import Occurrence, RecurrenceError, Timing, occurrences, parse_rule

UTC = dt.UTC
CHANGE_KEY_PREFIX = "calsync:"


def occurrence_item_id(series_item_id: str, original_start: dt.datetime) -> str:
    return f"{series_item_id}@{original_start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


_HASHED = tuple(
    f.name
    for f in dataclasses.fields(Appointment)
    if f.name not in ("change_key", "modified_occurrences", "deleted_occurrences", "recurrence", "attendees_total")
)


def content_change_key(appt: Appointment) -> str:
    """A digest of everything the row shows (not its change key, not Exchange's bookkeeping)."""
    values = tuple(
        v.astimezone(UTC).isoformat() if isinstance(v, dt.datetime) else v
        for v in (getattr(appt, name) for name in _HASHED)
    )
    if appt.attendees_total is not None and appt.attendees_total != len(appt.attendees):
        # Only a capped list adds its count: the keys of every other row stay what they were.
        values += (("attendees_total", appt.attendees_total),)
    return CHANGE_KEY_PREFIX + hashlib.blake2b(repr(values).encode(), digest_size=15).hexdigest()


def _finish(row: Appointment, private_details: bool) -> Appointment:
    row = withhold_private_details(row, private_details)
    return dataclasses.replace(row, change_key=content_change_key(row))


def timing_of(master: Appointment) -> Timing:
    return Timing.of_master(
        master.start, master.end, master.timezone, master.is_all_day, master.start_date, master.end_date
    )


def _plain(master: Appointment, occ: Occurrence) -> Appointment:
    """An unmodified occurrence: the master's fields at the occurrence's time."""
    return dataclasses.replace(
        master,
        item_id=occurrence_item_id(master.item_id, occ.start),
        kind=Kind.OCCURRENCE,
        series_item_id=master.item_id,
        original_start=occ.start,
        start=occ.start,
        end=occ.end,
        start_date=occ.start_date,
        end_date=occ.end_date,
        recurrence=None,
        # An occurrence has no modification of its own; the master's time would rewrite every
        # row on any edit of the series.
        exchange_modified_at=None,
        modified_occurrences=(),
        deleted_occurrences=(),
    )


def _exception(master: Appointment, ref: ModifiedOccurrence, fetched: Appointment | None) -> Appointment:
    """An exception with its own fields (GetItem of its id); the master's, at its times, if the
    fetch found nothing (deleted meanwhile: the next sync of the master settles it)."""
    base = fetched if fetched is not None else dataclasses.replace(master, start=ref.start, end=ref.end)
    start_date, end_date = base.start_date, base.end_date
    if base.is_all_day and (fetched is None or start_date is None or end_date is None):
        zone = timing_of(master).zone
        start_date, end_date = ref.start.astimezone(zone).date(), ref.end.astimezone(zone).date()
    return dataclasses.replace(
        base,
        item_id=occurrence_item_id(master.item_id, ref.original_start),
        kind=Kind.EXCEPTION,
        series_item_id=master.item_id,
        original_start=ref.original_start,
        uid=master.uid,
        start_date=start_date,
        end_date=end_date,
        recurrence=None,
        exchange_modified_at=fetched.exchange_modified_at if fetched is not None else None,
        modified_occurrences=(),
        deleted_occurrences=(),
    )


def exception_in_window(ref: ModifiedOccurrence, window: Window) -> bool:
    """Exceptions are kept from the past window on with no horizon: Exchange lists them all with
    the master, and the horizon roll could not fetch one that enters the horizon later."""
    return ref.end >= window.past_cutoff


def exceptions_to_fetch(masters: Iterable[Appointment], window: Window) -> list[str]:
    """Ids of the exceptions whose own fields the batch needs (one GetItem for all of them)."""
    return [
        ref.item_id
        for m in masters
        if m.recurrence is not None
        for ref in m.modified_occurrences
        if exception_in_window(ref, window)
    ]


def plain_occurrences(master: Appointment, window: Window, skip: Collection[dt.datetime] = ()) -> list[Appointment]:
    """The master's unmodified occurrences inside the window, minus deleted, modified and `skip`."""
    if master.recurrence is None:
        return []
    try:
        rule = parse_rule(master.recurrence)
    except RecurrenceError:
        return []
    taken = {*master.deleted_occurrences, *(m.original_start for m in master.modified_occurrences), *skip}
    return [
        _finish(_plain(master, occ), window.private_details)
        for occ in occurrences(rule, timing_of(master), window.past_cutoff, window.horizon)
        if occ.start not in taken
    ]


def expand_series(master: Appointment, exceptions: Mapping[str, Appointment], window: Window) -> list[Appointment]:
    """Every row a series has in the mirror: its occurrences in the window and its exceptions.

    `master` is the master as fetched (before privacy rules); `exceptions` maps exception item
    ids to their fetched items.
    """
    if master.recurrence is None:
        return []
    rows = plain_occurrences(master, window)
    deleted = set(master.deleted_occurrences)
    for ref in master.modified_occurrences:
        if ref.original_start in deleted or not exception_in_window(ref, window):
            continue
        rows.append(_finish(_exception(master, ref, exceptions.get(ref.item_id)), window.private_details))
    return rows


def series_in_window(master: Appointment, window: Window) -> bool:
    """The past-window rule for a series: kept while any occurrence ends inside the window."""
    if master.recurrence is None:
        return master.end >= window.past_cutoff
    if any(exception_in_window(ref, window) for ref in master.modified_occurrences):
        return True
    try:
        rule = parse_rule(master.recurrence)
    except RecurrenceError:
        return True  # keep what calsync cannot judge rather than lose it
    taken = {*master.deleted_occurrences, *(m.original_start for m in master.modified_occurrences)}
    try:
        return any(occ.start not in taken for occ in occurrences(rule, timing_of(master), window.past_cutoff, None))
    except RecurrenceError:
        return True
