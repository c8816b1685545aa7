"""Every failure Exchange (the simulator) can produce is classified with the right code, disposition and wait.

`retry_after` matters most: it becomes a pause for every worker of the service account, so
it must be exactly what the server asked (SOAP Fault or response-message BackOffMilliseconds,
Retry-After on 503/429) and absent when the wait was exchangelib's own invention.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from calsync.config import ConfigError
from calsync.errors import Disposition, SourceError
from calsync.simulator import Simulator, SimulatorServer, generate
from calsync.source.ews.connection import EwsEndpoint, VerifyingAdapter, check_ca_bundle
from calsync.source.ews.errors import parse_retry_after
from calsync.source.ews.source import EwsSource

from .tls import TlsProxy, make_ca_and_server

T, OP, G = Disposition.TRANSIENT, Disposition.OPERATOR, Disposition.GLOBAL
EMAIL = "user0001@example.com"


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return generate(3, 12, seed=5)


@pytest.fixture(scope="module")
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as srv:
        yield srv


def _source(url: str, password: str = "Simulat0r!", ca_bundle: str | None = None) -> EwsSource:
    return EwsSource(EwsEndpoint(url, "Exchange2013", "svc-calsync", password, ca_bundle=ca_bundle))


def _error(fn: Any) -> SourceError:
    with pytest.raises(SourceError) as info:
        fn()
    return info.value


@pytest.mark.parametrize(
    ("fault", "code", "disposition", "retry_after"),
    [
        ({"kind": "server_busy_fault", "back_off_ms": 2000}, "ErrorServerBusy", T, 2.0),
        ({"kind": "server_busy_message", "back_off_ms": 2000}, "ErrorServerBusy", T, 2.0),
        ({"kind": "http_503", "retry_after": 3}, "HttpUnavailable", T, 3.0),
        ({"kind": "http_429", "retry_after": 3}, "HttpThrottled", T, 3.0),
        ({"kind": "connection_reset"}, "ConnectionReset", T, None),
        ({"kind": "malformed_body"}, "MalformedResponse", T, None),
    ],
)
@pytest.mark.parametrize("operation", ["SyncFolderItems", "GetItem"])
def test_fault_classified_with_the_servers_wait(
    server: SimulatorServer, sim: Simulator, fault: dict[str, Any], code: str, disposition: Disposition,
    retry_after: float | None, operation: str,
) -> None:  # fmt: skip
    source = _source(server.ews_url)
    page = source.sync_page(EMAIL, None, 5)
    ids = [c.item_id for c in page.changes]
    sim.clear_faults()
    sim.add_fault({**fault, "count": 1, "operation": operation, "mailbox": EMAIL})
    call = (lambda: source.sync_page(EMAIL, None, 5)) if operation == "SyncFolderItems" else (
        lambda: source.get_items(EMAIL, ids)
    )  # fmt: skip
    err = _error(call)
    assert (err.code, err.disposition, err.retry_after) == (code, disposition, retry_after), err
    call()  # the fault was used up: the same call works again
    sim.clear_faults()


def test_operator_and_global_errors(server: SimulatorServer, sim: Simulator) -> None:
    source = _source(server.ews_url)
    err = _error(lambda: source.sync_page("nobody@example.com", None, 5))
    assert (err.code, err.disposition) == ("ErrorNonExistentMailbox", OP)
    sim.set_impersonation_denied("user0002@example.com", True)
    err = _error(lambda: source.sync_page("user0002@example.com", None, 5))
    assert (err.code, err.disposition) == ("ErrorImpersonateUserDenied", OP)
    sim.set_impersonation_denied("user0002@example.com", False)
    err = _error(lambda: _source(server.ews_url, password="wrong").sync_page(EMAIL, None, 5))
    assert (err.code, err.disposition, err.retry_after) == ("Unauthorized", G, None)


def test_unreachable_exchange_is_global() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    err = _error(lambda: _source(f"http://127.0.0.1:{port}/EWS/Exchange.asmx").sync_page(EMAIL, None, 5))
    assert (err.code, err.disposition, err.retry_after) == ("ExchangeUnreachable", G, None), err
    err = _error(lambda: _source("http://calsync-no-such-host.invalid/EWS/Exchange.asmx").sync_page(EMAIL, None, 5))
    assert (err.code, err.disposition) == ("ExchangeUnreachable", G), err


def test_tls_verified_by_default_and_internal_ca_bundle(server: SimulatorServer, tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server(tmp_path)
    with TlsProxy(server.port, cert, key) as proxy:
        url = f"https://localhost:{proxy.port}/EWS/Exchange.asmx"
        err = _error(lambda: _source(url).sync_page(EMAIL, None, 5))
        assert (err.code, err.disposition) == ("TlsFailure", G), err
        assert "certificate" in err.detail.lower()
        page = _source(url, ca_bundle=str(ca)).sync_page(EMAIL, None, 5)
        assert page.changes
        # verify=False from anywhere (a session, a library default) cannot switch verification off
        other = f"https://127.0.0.1:{proxy.port}/EWS/Exchange.asmx"
        session = requests.Session()
        session.mount("https://", VerifyingAdapter())
        with pytest.raises(requests.exceptions.SSLError):
            session.post(other, data=b"<x/>", verify=False, timeout=10)


def test_ca_bundle_must_be_a_readable_pem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALSYNC_EWS_CA_BUNDLE"):
        check_ca_bundle(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        check_ca_bundle(junk)


def test_retry_after_forms() -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("0", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
