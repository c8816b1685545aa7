"""SyncFolderItems, GetItem and CalendarView through the real exchangelib return exactly the simulator's calendar."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from exchangelib import UTC, EWSDateTime
from exchangelib.errors import ErrorCalendarViewRangeTooBig, ErrorInvalidSyncStateData, ErrorSchemaValidation
from exchangelib.folders import Calendar, Root
from exchangelib.services import SyncFolderItems

from calsync.simulator import Simulator, SimulatorClient, SimulatorServer

from .compare import assert_item_matches

EMAIL = "user0001@example.com"


def calendar_on_root(account: Any) -> Calendar:
    """What calsync does: a Calendar on a Root, no GetFolder round trips."""
    return Calendar(root=Root(account=account))


def sync_pages(folder: Calendar, state: str | None, page: int, only_fields: Any = None) -> tuple[list[Any], str]:
    """One SyncFolderItems call per page, as a calsync batch task does."""
    changes: list[Any] = []
    while True:
        svc = SyncFolderItems(account=folder.account)
        shape = "IdOnly" if only_fields == "ids" else "AllProperties"
        fields = None if only_fields == "ids" else folder.allowed_item_fields(version=folder.account.version)
        if only_fields not in (None, "ids"):
            from exchangelib.fields import FieldPath

            fields = [FieldPath(field=folder.get_item_field_by_fieldname(f)) for f in only_fields]
            shape = "IdOnly"
        elif fields is not None:
            from exchangelib.fields import FieldPath

            fields = [FieldPath(field=f) for f in fields]
            shape = "IdOnly"
        batch = list(
            svc.call(
                folder=folder,
                shape=shape,
                additional_fields=fields,
                sync_state=state,
                ignore=None,
                max_changes_returned=page,
                sync_scope=None,
            )
        )
        for change in batch:
            if isinstance(change, Exception):
                raise change
        changes.extend(batch)
        state = svc.sync_state
        assert len(batch) <= page
        if svc.includes_last_item_in_range:
            return changes, state


def apply(mirror: dict[str, Any], changes: list[Any]) -> None:
    for kind, value in changes:
        if kind == "delete":
            mirror.pop(value.id, None)
        else:
            assert kind in ("create", "update")
            mirror[value.id] = value


def test_full_sync_returns_every_item_field_by_field(server: SimulatorServer, sim: Simulator, account: Any) -> None:
    acc = account(EMAIL)
    folder = acc.calendar  # the two-GetFolder path works too
    changes = list(folder.sync_items(max_changes_returned=512))
    want = {i["id"]: i for i in sim.list_items(EMAIL)}
    assert {kind for kind, _ in changes} == {"create"}
    assert len(changes) == len(want) == 40
    for _, item in changes:
        assert_item_matches(item, want[item.id])
    kinds = {w["calendar_item_type"] for w in want.values()}
    assert kinds == {"Single", "RecurringMaster"}
    assert any(w["is_all_day"] for w in want.values())
    assert any(w["modified_occurrences"] for w in want.values())
    assert any(w["deleted_occurrences"] for w in want.values())
    # the next sync from the final state is empty
    assert list(folder.sync_items(sync_state=folder.item_sync_state)) == []


@pytest.mark.parametrize("page", [1, 7, 512])
def test_paged_sync_one_page_at_a_time(server: SimulatorServer, sim: Simulator, account: Any, page: int) -> None:
    folder = calendar_on_root(account(EMAIL))
    changes, state = sync_pages(folder, None, page)
    mirror: dict[str, Any] = {}
    apply(mirror, changes)
    want = {i["id"]: i for i in sim.list_items(EMAIL)}
    assert set(mirror) == set(want)
    for item_id, item in mirror.items():
        assert_item_matches(item, want[item_id])
    assert sync_pages(folder, state, page)[0] == []


def test_id_only_and_only_fields(server: SimulatorServer, sim: Simulator, account: Any) -> None:
    folder = calendar_on_root(account(EMAIL))
    want = {i["id"]: i for i in sim.list_items(EMAIL)}
    ids = list(folder.sync_items(only_fields=["id", "changekey"]))
    assert {item.id: item.changekey for _, item in ids} == {k: v["change_key"] for k, v in want.items()}
    assert all(item.subject is None and item.start is None for _, item in ids)
    some = list(folder.sync_items(only_fields=["subject", "start", "end", "is_all_day"]))
    for _, item in some:
        assert item.subject == want[item.id]["subject"]
        assert item.body is None and item.location is None


def test_get_item_returns_the_items(server: SimulatorServer, sim: Simulator, account: Any) -> None:
    acc = account(EMAIL)
    want = {i["id"]: i for i in sim.list_items(EMAIL)}
    from exchangelib.properties import ItemId

    got = list(acc.fetch([ItemId(id=i, changekey=w["change_key"]) for i, w in want.items()]))
    assert len(got) == len(want)
    for item in got:
        assert_item_matches(item, want[item.id])


def test_calendar_view_expands_series(server: SimulatorServer, sim: Simulator, account: Any) -> None:
    acc = account(EMAIL)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = EWSDateTime.from_datetime(today - dt.timedelta(days=360))
    end = EWSDateTime.from_datetime(today + dt.timedelta(days=360))
    got = list(acc.calendar.view(start=start, end=end))
    want = sim.view(EMAIL, start.isoformat(), end.isoformat())
    assert [(g.id, g.type) for g in got] == [(w["id"], w["calendar_item_type"]) for w in want]
    assert {"Single", "Occurrence", "Exception"} <= {w["calendar_item_type"] for w in want}
    for g, w in zip(got, want, strict=True):
        assert g.subject == w["subject"]
        if not w["is_all_day"]:
            assert g.start == dt.datetime.fromisoformat(w["start"])
            assert g.end == dt.datetime.fromisoformat(w["end"])
        if w["calendar_item_type"] != "Single":
            assert g.original_start == dt.datetime.fromisoformat(w["original_start"])
            assert g.recurrence_id == g.original_start
    # MaxEntriesReturned is honoured
    few = list(acc.calendar.view(start=start, end=end, max_items=5))
    assert [g.id for g in few] == [w["id"] for w in want[:5]]
    with pytest.raises(ErrorCalendarViewRangeTooBig):
        list(acc.calendar.view(start=start, end=start + dt.timedelta(days=800)))


def test_invalid_sync_states(server: SimulatorServer, sim: Simulator, account: Any) -> None:
    folder = calendar_on_root(account(EMAIL))
    _, state = sync_pages(folder, None, 512, "ids")
    other = calendar_on_root(account("user0002@example.com"))
    for bad in ("garbage!!", "Y3NpbTE6eDowOjA=", state[:-4] + "AAAA"):
        with pytest.raises(ErrorInvalidSyncStateData):
            sync_pages(folder, bad, 10, "ids")
    with pytest.raises(ErrorInvalidSyncStateData):  # a state of another mailbox
        sync_pages(other, state, 10, "ids")
    assert sync_pages(folder, state, 10, "ids")[0] == []
    SimulatorClient(server.base_url).reset_sync_states(EMAIL)
    with pytest.raises(ErrorInvalidSyncStateData):
        sync_pages(folder, state, 10, "ids")
    changes, _ = sync_pages(folder, None, 512, "ids")  # a full resync works again
    assert len(changes) == 40


def test_max_changes_returned_out_of_range(server: SimulatorServer, account: Any) -> None:
    folder = calendar_on_root(account(EMAIL))
    with pytest.raises(ErrorSchemaValidation):
        sync_pages(folder, None, 513, "ids")
    with pytest.raises(ValueError):  # exchangelib refuses 0 itself; the raw request is tested in test_soap
        sync_pages(folder, None, 0, "ids")


def _utc(day: dt.datetime) -> EWSDateTime:
    return EWSDateTime.from_datetime(day.astimezone(UTC))
