"""Admin-API edits reach exchangelib as exactly the changes Exchange would report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from calsync.simulator import Simulator, SimulatorClient, SimulatorClientError, SimulatorServer

from .compare import assert_item_matches
from .test_sync import apply, calendar_on_root, sync_pages

EMAIL = "user0002@example.com"

NEW_ITEM = {
    "subject": 'Kick-off <with> & "quotes"',
    "body": "<p>Hello</p>",
    "body_type": "HTML",
    "location": "Room 1",
    "start": "2030-03-04T09:00:00+01:00",
    "end": "2030-03-04T10:00:00+01:00",
    "timezone": "Europe/Berlin",
    "required_attendees": [{"email": "ana@contoso.com", "name": "Ana", "response": "Accept"}],
}


@pytest.fixture(params=["http", "python"])
def admin(request: Any, server: SimulatorServer, sim: Simulator) -> Any:
    """Both admin API flavours must behave the same."""
    return SimulatorClient(server.base_url) if request.param == "http" else sim


def _series(sim: Simulator) -> dict[str, Any]:
    return next(i for i in sim.list_items(EMAIL) if i["recurrence"] and i["recurrence"]["pattern"]["type"] == "Weekly")


def test_edits_arrive_as_changes(server: SimulatorServer, sim: Simulator, account: Any, admin: Any) -> None:
    folder = calendar_on_root(account(EMAIL))
    changes, state = sync_pages(folder, None, 512)
    mirror: dict[str, Any] = {}
    apply(mirror, changes)
    items = sim.list_items(EMAIL)
    singles = [i for i in items if i["calendar_item_type"] == "Single"]
    series = _series(sim)
    created = admin.create_item(EMAIL, NEW_ITEM)
    updated = admin.update_item(EMAIL, singles[0]["id"], {"subject": "Renamed", "location": "Elsewhere"})
    assert updated["change_key"] != singles[0]["change_key"]
    cancelled = admin.cancel_item(EMAIL, singles[1]["id"])
    assert cancelled["is_cancelled"] is True
    admin.delete_item(EMAIL, singles[2]["id"])
    # an occurrence edit and an occurrence deletion are Updates of the master
    occurrences = [
        v
        for v in sim.view(
            EMAIL, series["start"], (dt.datetime.fromisoformat(series["start"]) + dt.timedelta(days=60)).isoformat()
        )
        if v.get("master_id") == series["id"] and v["calendar_item_type"] == "Occurrence"
    ]
    first, second = occurrences[0], occurrences[1]
    moved_start = dt.datetime.fromisoformat(first["start"]) + dt.timedelta(hours=2)
    exc = admin.update_occurrence(
        EMAIL,
        series["id"],
        first["original_start"],
        {
            "subject": "Moved",
            "start": moved_start.isoformat(),
            "end": (moved_start + dt.timedelta(minutes=30)).isoformat(),
        },
    )
    assert exc["subject"] == "Moved"
    admin.delete_occurrence(EMAIL, series["id"], second["original_start"])
    # created and deleted since the state: nothing; created then updated: one Create
    gone = admin.create_item(EMAIL, {**NEW_ITEM, "subject": "Short-lived"})
    admin.delete_item(EMAIL, gone["id"])
    admin.update_item(EMAIL, created["id"], {"subject": "Kick-off v2"})

    delta, state2 = sync_pages(folder, state, 2)
    kinds = {(kind, getattr(v, "id", None)) for kind, v in delta}
    assert kinds == {
        ("create", created["id"]),
        ("update", singles[0]["id"]),
        ("update", singles[1]["id"]),
        ("delete", singles[2]["id"]),
        ("update", series["id"]),
    }
    apply(mirror, delta)
    want = {i["id"]: i for i in sim.list_items(EMAIL)}
    assert set(mirror) == set(want)
    for item_id, item in mirror.items():
        assert_item_matches(item, want[item_id])
    master = mirror[series["id"]]
    assert any(m.start == moved_start for m in master.modified_occurrences)
    assert dt.datetime.fromisoformat(second["original_start"]) in [d.start for d in master.deleted_occurrences]
    assert sync_pages(folder, state2, 5)[0] == []
    # the older state still gets the same net changes
    again, _ = sync_pages(folder, state, 512)
    assert {(k, getattr(v, "id", None)) for k, v in again} == kinds


def test_changes_while_paging_end_up_correct(server: SimulatorServer, sim: Simulator, account: Any) -> None:
    folder = calendar_on_root(account(EMAIL))
    from exchangelib.services import SyncFolderItems

    mirror: dict[str, Any] = {}
    state = None
    pages = 0
    ids = [i["id"] for i in sim.list_items(EMAIL)]
    while True:
        svc = SyncFolderItems(account=folder.account)
        batch = list(
            svc.call(
                folder=folder,
                shape="AllProperties",
                additional_fields=None,
                sync_state=state,
                ignore=None,
                max_changes_returned=6,
                sync_scope=None,
            )
        )
        apply(mirror, batch)
        state = svc.sync_state
        pages += 1
        if pages == 2:  # mutate delivered and undelivered items mid-way
            sim.update_item(EMAIL, ids[0], {"subject": "changed after delivery"})
            sim.update_item(EMAIL, ids[-1], {"subject": "changed before delivery"})
            sim.delete_item(EMAIL, ids[1])
            sim.delete_item(EMAIL, ids[-2])
            sim.create_item(EMAIL, NEW_ITEM)
        if svc.includes_last_item_in_range:
            break
    want = {i["id"]: i for i in sim.list_items(EMAIL)}
    assert set(mirror) == set(want)
    for item_id, item in mirror.items():
        assert item.subject == want[item_id]["subject"]
        assert item.changekey == want[item_id]["change_key"]


def test_admin_http_api(server: SimulatorServer, sim: Simulator) -> None:
    client = SimulatorClient(server.base_url)
    boxes = client.list_mailboxes()
    assert [b["email"] for b in boxes] == ["user0001@example.com", "user0002@example.com", "user0003@example.com"]
    assert all(b["items"] == 40 for b in boxes)
    client.add_mailbox("new@example.com")
    item = client.create_item("new@example.com", {**NEW_ITEM, "is_all_day": True})
    assert item["start"] == "2030-03-04T00:00:00+01:00" and item["end"] == "2030-03-05T00:00:00+01:00"
    assert client.get_item("new@example.com", item["id"]) == item
    assert client.list_items("new@example.com") == [item]
    weekly = client.create_item(
        "new@example.com",
        {
            **NEW_ITEM,
            "recurrence": {
                "pattern": {"type": "Weekly", "interval": 1, "days_of_week": ["Monday"]},
                "range": {"type": "Numbered", "start_date": "2030-03-04", "count": 3},
            },
        },
    )
    assert weekly["calendar_item_type"] == "RecurringMaster"
    view = client.view("new@example.com", "2030-03-01T00:00:00Z", "2030-04-01T00:00:00Z")
    assert [v["calendar_item_type"] for v in view] == ["Single", "Occurrence", "Occurrence", "Occurrence"]
    with pytest.raises(SimulatorClientError) as err:
        client.create_item("new@example.com", {"subject": "no times"})
    assert err.value.status == 400
    with pytest.raises(SimulatorClientError) as err:
        client.update_item("new@example.com", "nope", {"subject": "x"})
    assert err.value.status == 404
    with pytest.raises(SimulatorClientError) as err:
        client.delete_occurrence("new@example.com", weekly["id"], "2030-03-05T09:00:00+01:00")
    assert err.value.status == 404
    with pytest.raises(SimulatorClientError) as err:
        client.view("new@example.com", "2030-01-01T00:00:00Z", "2033-01-01T00:00:00Z")
    assert err.value.status == 400
    fault = client.add_fault(kind="latency", latency_ms=1, mailbox="new@example.com")
    assert client.list_faults() == [fault]
    client.delete_fault(fault["id"])
    client.add_fault(kind="http_503", count=1)
    client.clear_faults()
    assert client.list_faults() == []
    stats = client.stats()
    assert {"requests", "per_mailbox", "faults_injected", "concurrency", "schema_violations"} <= set(stats)
    client.reset_stats()
    client.delete_mailbox("new@example.com")
    with pytest.raises(SimulatorClientError):
        client.list_items("new@example.com")
