"""The simulator's Graph front-end as a Graph client meets it, and the adapter's answers to it:
every answer is checked against ../shared/graph-schema (the `server` fixture asserts zero
violations), paging, deltaLink and @removed, both occurrence shapes, $batch, token errors."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import requests

from calsync.errors import SourceError
from calsync.simulator import Simulator, SimulatorServer
from calsync.simulator.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT
from calsync.simulator.mailbox import occurrence_id
from calsync.source.graph.auth import TokenProvider
from calsync.source.graph.client import GraphClient
from calsync.source.graph.source import GraphSource
from tests.graph.conftest import MAILBOX, make_graph_source, sync_to_end

EVENT_KEYS = {"@odata.type", "@odata.etag", "id", "seriesMasterId", "type", "start", "end"}


def _token(server: SimulatorServer, secret: str = DEFAULT_CLIENT_SECRET) -> requests.Response:
    return requests.post(
        f"{server.base_url}/{DEFAULT_TENANT}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": secret,
              "scope": "https://graph.microsoft.com/.default"},
        timeout=10,
    )  # fmt: skip


def _get(server: SimulatorServer, url: str, size: int = 20) -> dict[str, Any]:
    token = _token(server).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Prefer": f"odata.maxpagesize={size}"}
    answer = requests.get(url if url.startswith("http") else server.base_url + url, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _round(server: SimulatorServer, link: str) -> tuple[list[dict[str, Any]], str]:
    entries: list[dict[str, Any]] = []
    while True:
        page = _get(server, link)
        assert len(page["value"]) <= 20
        entries += page["value"]
        if "@odata.deltaLink" in page:
            return entries, page["@odata.deltaLink"]
        link = page["@odata.nextLink"]


def test_delta_pages_then_removals_and_both_occurrence_shapes(server: SimulatorServer, sim: Simulator) -> None:
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=180), today + dt.timedelta(days=366)
    first, delta = _round(server, f"/v1.0/users/{MAILBOX}/calendarView/delta?startDateTime={start}T00:00:00Z&endDateTime={end}T00:00:00Z")  # fmt: skip
    thin = [e for e in first if e.get("type") == "occurrence"]
    assert thin and all(set(e) == EVENT_KEYS for e in thin), "occurrences in the thin shape"
    assert any(e.get("type") == "exception" and "subject" in e for e in first), "exceptions in full"
    assert not any("@removed" in e for e in first), "a first round has nothing to remove"
    ids = {e["id"] for e in first}
    assert len(ids) == len(first), "no entry twice in one round"

    again, delta2 = _round(server, delta)
    assert again == [], "nothing changed, nothing reported"
    single = next(i for i in sim.list_items(MAILBOX) if i["recurrence"] is None and f"AQMk{i['id']}" in ids)
    master = next(i for i in sim.list_items(MAILBOX) if i["subject"] == "Weekly across DST")
    sim.delete_item(MAILBOX, single["id"])
    upcoming = (today + dt.timedelta(days=7 - today.weekday())).isoformat()
    sim.delete_occurrence(MAILBOX, master["id"], f"{upcoming}T09:30:00")
    changed, _ = _round(server, delta2)
    removed = {e["id"] for e in changed if "@removed" in e}
    assert f"AQMk{single['id']}" in removed
    original = dt.datetime.fromisoformat(f"{upcoming}T09:30:00").replace(tzinfo=ZoneInfo("Europe/Berlin"))
    assert f"AQMk{occurrence_id(master['id'], original.astimezone(dt.UTC))}" in removed, "the deleted occurrence"
    assert any(e.get("seriesMasterId") == f"AQMk{master['id']}" for e in changed), "the series' instances again"


def test_token_errors_and_batch_limits(server: SimulatorServer) -> None:
    bad = _token(server, "wrong")
    assert bad.status_code == 401 and "AADSTS7000215" in bad.json()["error_description"]
    base = server.base_url
    tokens = TokenProvider(base, DEFAULT_TENANT, DEFAULT_CLIENT_ID, lambda: "wrong", base + "/v1.0")
    with pytest.raises(SourceError) as failed:
        GraphSource(GraphClient(base + "/v1.0", tokens), 180, 365).sync_page(MAILBOX, None, 10)
    assert failed.value.code == "GraphInvalidClientSecret"
    token = _token(server).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    too_many = {"requests": [{"id": str(n), "method": "GET", "url": f"/users/{MAILBOX}/events/x"} for n in range(21)]}
    answer = requests.post(f"{base}/v1.0/$batch", json=too_many, headers=headers, timeout=10)
    assert answer.status_code == 400
    one = {"requests": [{"id": "1", "method": "GET", "url": f"/users/{MAILBOX}/events/AQMkmissing"}]}
    answer = requests.post(f"{base}/v1.0/$batch", json=one, headers=headers, timeout=10).json()
    assert (
        answer["responses"][0]["status"] == 404
        and answer["responses"][0]["body"]["error"]["code"] == "ErrorItemNotFound"
    )
    unknown = requests.get(f"{base}/v1.0/users/nobody@example.com/events/x", headers=headers, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "ErrorInvalidUser"


def test_throttled_answer_carries_retry_after(
    server: SimulatorServer, sim: Simulator, graph_source: GraphSource
) -> None:
    sim.add_fault({"kind": "http_429", "operation": "graph_delta", "count": 1, "retry_after": 7})
    with pytest.raises(SourceError) as throttled:
        graph_source.sync_page(MAILBOX, None, 10)
    assert (throttled.value.code, throttled.value.retry_after) == ("GraphThrottled", 7.0)
    sim.add_fault({"kind": "delta_gone", "count": 1})
    page = graph_source.sync_page(MAILBOX, None, 10)  # a first request carries no token to lose
    assert page.changes


def test_window_roll_resyncs_without_rewriting_unchanged_rows(
    db: psycopg.Connection[Any], server: SimulatorServer, sim: Simulator, configure: Any, add_operator: Any
) -> None:
    op = add_operator(MAILBOX, "graph")
    sync_to_end(make_graph_source(server), op)
    before = {
        r["item_id"]: (r["id"], r["synced_at"]) for r in db.execute("SELECT id, item_id, synced_at FROM appointments")
    }
    moved_out = next(i for i in sim.list_items(MAILBOX) if i["recurrence"] is None and f"AQMk{i['id']}" in before)
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=500)).replace(microsecond=0)
    sim.update_item(
        MAILBOX, moved_out["id"], {"start": far.isoformat(), "end": (far + dt.timedelta(hours=1)).isoformat()}
    )
    series = next(i for i in sim.list_items(MAILBOX) if i["recurrence"] is not None and f"AQMk{i['id']}" in before)
    sim.delete_item(MAILBOX, series["id"])
    sync_to_end(make_graph_source(server), op)  # @removed for both: one moved out of the window, one deleted
    rows = {r["item_id"]: r for r in db.execute("SELECT id, item_id, start_at, synced_at FROM appointments")}
    assert rows[f"AQMk{moved_out['id']}"]["start_at"] == far, "moved out of the window: kept and followed"
    assert not [i for i in rows if i.startswith(f"AQMk{series['id']}")], "a deleted series leaves with its occurrences"

    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    rolled = make_graph_source(server)
    rolled._clock = lambda: tomorrow  # the next day: the window moved
    outcomes = sync_to_end(rolled, op)
    assert outcomes[0].resync_started
    after = {
        r["item_id"]: (r["id"], r["synced_at"]) for r in db.execute("SELECT id, item_id, synced_at FROM appointments")
    }
    same = [i for i in before if i in after and i in rows and rows[i]["synced_at"] == before[i][1]]
    assert same and all(after[i] == before[i] for i in same), "unchanged rows neither rewritten nor renumbered"
    assert f"AQMk{moved_out['id']}" in after, "outside the new window too: stays, as with EWS"
