"""What one SyncFolderItems page does to the mirror: pure functions, no I/O.

A batch runs in two steps because the page itself carries only ids and change keys:
`items_to_fetch` picks the items worth a GetItem (new change key, inside the window), then
`plan_batch` turns the page plus the fetched items into writes. Both are deterministic in
their inputs, which is what makes a batch safe to run twice.

A series is written as its master row plus one row per occurrence in the window
(calsync.sync.occurrences); the exceptions' own fields come from one more GetItem per batch
(`exceptions_to_fetch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from calsync.sync.model import Appointment, BatchPlan, ChangeKind, ChangeRef, RefusedItem, Window
from calsync.sync.occurrences import exceptions_to_fetch, expand_series, series_in_window
from calsync.sync.privacy import withhold_private_details

__all__ = ["exceptions_to_fetch", "items_to_fetch", "keep", "plan_batch"]


def _outside_past_window(ref: ChangeRef, window: Window) -> bool:
    """True when the page alone shows the item ended before the past window.

    A recurring master's End is that of its first occurrence, so it says nothing about later
    occurrences: those are always fetched.
    """
    return bool(ref.end is not None and ref.is_recurring is False and ref.end < window.past_cutoff)


def items_to_fetch(changes: Sequence[ChangeRef], known: Mapping[str, str], window: Window) -> list[str]:
    """Ids that need a GetItem: changed since the mirror's copy, and wanted by the window.

    An item already in the mirror is always followed (it may have moved out of the window and
    back); an unknown one is only fetched if it can be inside the window.
    """
    wanted: dict[str, None] = {}
    deleted_later: set[str] = set()
    for ref in reversed(changes):
        if ref.kind is ChangeKind.DELETE:
            deleted_later.add(ref.item_id)
    for ref in changes:
        if ref.kind is ChangeKind.DELETE or ref.item_id in deleted_later:
            continue
        if ref.change_key is not None and known.get(ref.item_id) == ref.change_key:
            continue
        if ref.item_id not in known and _outside_past_window(ref, window):
            continue
        wanted[ref.item_id] = None
    return list(wanted)


def keep(appt: Appointment, known: Mapping[str, str], window: Window) -> bool:
    """The IsSkipAppointment rule applied to a fetched item."""
    if appt.item_id in known:
        return True
    return series_in_window(appt, window)


def plan_batch(
    changes: Sequence[ChangeRef],
    fetched: Mapping[str, Appointment],
    known: Mapping[str, str],
    window: Window,
    exceptions: Mapping[str, Appointment] | None = None,
    refused: Mapping[str, RefusedItem] | None = None,
) -> BatchPlan:
    """Turn a page and the items fetched for it into upserts and deletes.

    The last change of an item in the page wins; a delete removes the row and, for a series,
    its occurrences (the store does that by series id). An item whose change key equals the
    mirror's is not written again. An item fetched but deleted before the fetch (GetItem found
    nothing) is simply absent from `fetched`: the page's later Delete, or the next page's,
    removes it.

    Every upserted item comes with the complete set of its occurrence rows (none for a single),
    so a changed pattern, end or "this and following" split leaves no stale occurrence behind.

    An item the source refused (`refused`) is set aside: the mirror keeps what it had of it,
    and the plan lists the refusal; every other item of the page settles an earlier refusal.
    """
    plan = BatchPlan()
    last: dict[str, ChangeRef] = {}
    for ref in changes:
        last.pop(ref.item_id, None)
        last[ref.item_id] = ref
    for item_id, ref in last.items():
        refusal = (refused or {}).get(item_id)
        if refusal is not None and ref.kind is not ChangeKind.DELETE:
            plan.refused.append(refusal)
        else:
            plan.settled.append(item_id)
        if ref.kind is ChangeKind.DELETE:
            if item_id in known:
                plan.deletes.append(item_id)
            continue
        plan.seen.append(item_id)
        if ref.change_key is not None and known.get(item_id) == ref.change_key:
            plan.unchanged += 1
            continue
        appt = fetched.get(item_id)
        if appt is None:
            plan.skipped += 1
            continue
        if known.get(item_id) == appt.change_key:
            plan.unchanged += 1
            continue
        if not keep(appt, known, window):
            plan.skipped += 1
            continue
        plan.upserts.append(withhold_private_details(appt, window.private_details))
        plan.occurrences[item_id] = expand_series(appt, exceptions or {}, window)
    return plan
