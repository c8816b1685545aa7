"""SOAP-level behaviour: schema validation, server versions, subscriptions, and the subprocess server."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from exchangelib import Build
from exchangelib.errors import ErrorSchemaValidation
from lxml import etree

from calsync.simulator import Simulator, SimulatorProcess, SimulatorServer, generate
from testkit import rawsoap

from .conftest import make_account
from .test_sync import calendar_on_root, sync_pages

EMAIL = "user0001@example.com"
NS = {
    "s": "http://schemas.xmlsoap.org/soap/envelope/",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
}


def _post(srv: Any, body: bytes) -> requests.Response:
    return requests.post(srv.ews_url, data=body, headers=rawsoap.headers(srv.user, srv.password, EMAIL), timeout=10)


def test_invalid_request_gets_schema_validation_fault(server: SimulatorServer, account: Any) -> None:
    bad = rawsoap.sync_folder_items(EMAIL).replace(b"<m:ItemShape>", b"<m:Bogus/><m:ItemShape>")
    r = _post(server, bad)
    assert r.status_code == 500
    assert b"ErrorSchemaValidation" in r.content
    from exchangelib.services import GetFolder

    acc = account(EMAIL)
    # the same fault through exchangelib's parser
    with pytest.raises(ErrorSchemaValidation):
        GetFolder(account=acc)._raise_soap_errors(etree.fromstring(r.content).find("s:Body/s:Fault", NS))
    for value in (b"0", b"513", b"x"):
        r = _post(server, rawsoap.sync_folder_items(EMAIL, max_changes=value.decode()))
        assert r.status_code == 500 and b"ErrorSchemaValidation" in r.content


def test_empty_incremental_sync_raw(server: SimulatorServer) -> None:
    first = etree.fromstring(_post(server, rawsoap.sync_folder_items(EMAIL)).content)
    state = first.findtext(".//{http://schemas.microsoft.com/exchange/services/2006/messages}SyncState")
    again = _post(server, rawsoap.sync_folder_items(EMAIL, state)).content
    assert b"<m:Changes/>" in again and state.encode() in again
    header = first.find("s:Header/t:ServerVersionInfo", NS)
    assert (header.get("MajorVersion"), header.get("MinorVersion"), header.get("Version")) == (
        "15",
        "0",
        "Exchange2013_SP1",
    )


@pytest.mark.parametrize(
    ("version", "major", "minor", "api"),
    [
        ("Exchange2010", "14", "0", "Exchange2010"),
        ("Exchange2016", "15", "1", "Exchange2016"),
        ("Exchange2019", "15", "2", "Exchange2016"),
    ],
)
def test_server_versions(version: str, major: str, minor: str, api: str) -> None:
    sim = generate(1, 5, 1, version=version, validate=True)
    with SimulatorServer(sim) as srv:
        r = _post(srv, rawsoap.sync_folder_items(EMAIL, version="Exchange2010"))
        header = etree.fromstring(r.content).find("s:Header/t:ServerVersionInfo", NS)
        assert (header.get("MajorVersion"), header.get("MinorVersion"), header.get("Version")) == (major, minor, api)
        # exchangelib configured for 2013 SP1 negotiates down on an Exchange 2010 server
        acc = make_account(srv, EMAIL, build=Build(15, 0, 1497, 2))
        changes, _ = sync_pages(calendar_on_root(acc), None, 100)
        assert len(changes) == 5
        assert acc.version.api_version == api
        if version == "Exchange2010":
            assert _post(srv, rawsoap.sync_folder_items(EMAIL, version="Exchange2013_SP1")).status_code == 500
    assert sim.get_stats()["schema_violations"] == 0


def test_subscribe_and_unsubscribe(server: SimulatorServer, sim: Simulator, account: Any) -> None:
    cal = account(EMAIL).calendar
    sub_id, _watermark = cal.subscribe_to_push(callback_url="http://127.0.0.1:9/notify", status_frequency=5)
    mailbox = sim.mailbox_object(EMAIL)
    assert mailbox.subscriptions[sub_id].url == "http://127.0.0.1:9/notify"
    assert mailbox.subscriptions[sub_id].status_frequency == 5
    cal.unsubscribe(sub_id)
    assert sub_id not in mailbox.subscriptions


def test_subprocess_server() -> None:
    with SimulatorProcess(mailboxes=2, appointments=10, seed=3) as proc:
        client = proc.client()
        assert [m["items"] for m in client.list_mailboxes()] == [10, 10]
        acc = make_account(proc, EMAIL)
        changes, _ = sync_pages(calendar_on_root(acc), None, 4)
        assert {c[1].id for c in changes} == {i["id"] for i in client.list_items(EMAIL)}
        assert client.stats()["requests"]["SyncFolderItems"] == 3


def test_generator_is_deterministic_and_fast() -> None:
    import datetime as dt

    day = dt.date(2025, 6, 1)
    a = generate(3, 30, 42, anchor=day).list_items("user0003@example.com")
    b = generate(3, 30, 42, anchor=day).list_items("user0003@example.com")
    assert a == b
    zones = {
        i["timezone"]
        for m in range(1, 4)
        for i in generate(3, 60, 42, anchor=day).list_items(f"user000{m}@example.com")
    }
    assert {"Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"} <= zones
    started = time.perf_counter()
    generate(50, 200, 1)
    assert time.perf_counter() - started < 4  # ~0.35 s alone; generous for a loaded CI machine
