"""The pure batch logic: what one page of changes does to the mirror."""

from __future__ import annotations

import datetime as dt

from calsync.sync.batch import items_to_fetch, plan_batch
from calsync.sync.model import Appointment, Attendee, ChangeKind, ChangeRef, Kind, Window

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
WINDOW = Window(now=NOW, past_days=180)


def appt(item_id: str, ck: str, days: float = 1.0, **kw: object) -> Appointment:
    start = NOW + dt.timedelta(days=days)
    return Appointment(
        item_id=item_id,
        change_key=ck,
        kind=Kind.SINGLE,
        start=start,
        end=start + dt.timedelta(hours=1),
        subject=f"s-{item_id}",
        **kw,  # type: ignore[arg-type]
    )


def ref(
    kind: ChangeKind, item_id: str, ck: str | None = None, days: float = 1.0, recurring: bool | None = False
) -> ChangeRef:
    end = NOW + dt.timedelta(days=days, hours=1) if kind is not ChangeKind.DELETE else None
    return ChangeRef(kind=kind, item_id=item_id, change_key=ck, end=end, is_recurring=recurring)


def test_unchanged_change_key_is_neither_fetched_nor_written() -> None:
    changes = [ref(ChangeKind.UPDATE, "a", "ck1"), ref(ChangeKind.UPDATE, "b", "ck2")]
    known = {"a": "ck1", "b": "old"}
    assert items_to_fetch(changes, known, WINDOW) == ["b"]
    plan = plan_batch(changes, {"b": appt("b", "ck2")}, known, WINDOW)
    assert [a.item_id for a in plan.upserts] == ["b"]
    assert plan.unchanged == 1


def test_past_window_skips_unknown_old_items_but_follows_known_ones() -> None:
    old = -200.0
    changes = [ref(ChangeKind.CREATE, "old", "1", days=old), ref(ChangeKind.UPDATE, "kept", "2", days=old)]
    known = {"kept": "1"}
    assert items_to_fetch(changes, known, WINDOW) == ["kept"]
    plan = plan_batch(changes, {"kept": appt("kept", "2", days=old)}, known, WINDOW)
    assert [a.item_id for a in plan.upserts] == ["kept"]
    assert set(plan.seen) == {"old", "kept"}


def test_item_ending_inside_window_is_kept() -> None:
    inside = -179.0
    changes = [ref(ChangeKind.CREATE, "x", "1", days=inside)]
    assert items_to_fetch(changes, {}, WINDOW) == ["x"]
    plan = plan_batch(changes, {"x": appt("x", "1", days=inside)}, {}, WINDOW)
    assert len(plan.upserts) == 1


def test_recurring_master_always_fetched_whatever_its_first_end() -> None:
    changes = [ref(ChangeKind.CREATE, "series", "1", days=-700, recurring=True)]
    assert items_to_fetch(changes, {}, WINDOW) == ["series"]


def test_delete_of_known_item_and_ignored_delete_of_unknown() -> None:
    changes = [ref(ChangeKind.DELETE, "gone"), ref(ChangeKind.DELETE, "never-seen")]
    plan = plan_batch(changes, {}, {"gone": "1"}, WINDOW)
    assert plan.deletes == ["gone"]
    assert plan.upserts == []


def test_create_then_delete_in_one_page_writes_nothing() -> None:
    changes = [ref(ChangeKind.CREATE, "a", "1"), ref(ChangeKind.DELETE, "a")]
    assert items_to_fetch(changes, {}, WINDOW) == []
    plan = plan_batch(changes, {}, {}, WINDOW)
    assert plan.upserts == [] and plan.deletes == []


def test_private_details_withheld_unless_allowed() -> None:
    private = appt("p", "1", sensitivity="Private", location="Room", body="secret",
                   attendees=(Attendee("a@example.com", "A", "required", "Accept"),))  # fmt: skip
    changes = [ref(ChangeKind.CREATE, "p", "1")]
    plan = plan_batch(changes, {"p": private}, {}, WINDOW)
    row = plan.upserts[0]
    assert (row.subject, row.body, row.location, row.attendees, row.details_withheld) == (None, None, None, (), True)
    assert row.start == private.start and row.show_as == private.show_as
    allowed = plan_batch(changes, {"p": private}, {}, Window(now=NOW, private_details=True)).upserts[0]
    assert allowed.subject == "s-p" and not allowed.details_withheld


def test_item_fetched_but_gone_is_skipped_not_written() -> None:
    plan = plan_batch([ref(ChangeKind.CREATE, "a", "1")], {}, {}, WINDOW)
    assert plan.upserts == [] and plan.skipped == 1 and plan.seen == ["a"]


def test_plan_is_deterministic() -> None:
    changes = [ref(ChangeKind.CREATE, str(i), "1") for i in range(20)]
    fetched = {str(i): appt(str(i), "1") for i in range(20)}
    assert plan_batch(changes, fetched, {}, WINDOW) == plan_batch(changes, fetched, {}, WINDOW)
