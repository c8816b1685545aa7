"""Fixtures: a generated simulator with schema validation on, served over HTTP, and exchangelib accounts
configured exactly as calsync configures them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from exchangelib import BASIC, IMPERSONATION, UTC, Account, Build, Configuration, Credentials, FailFast, Version
from exchangelib.protocol import BaseProtocol

from calsync.simulator import Simulator, SimulatorServer, generate

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = Path(os.environ.get("CALSYNC_EWS_SCHEMA_DIR") or REPO.parent / "shared" / "ews-schema")
SEED = 7
MAILBOXES = 3
APPOINTMENTS = 40

BaseProtocol.RETRY_WAIT = 0.01  # fault tests must fail fast, never sleep


MISSING_SCHEMA = (
    f"EWS schema not found at {SCHEMA_DIR} (set CALSYNC_EWS_SCHEMA_DIR); the simulator tests validate every "
    "request and answer against it"
)
_skipped_for_schema: list[str] = []


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session", autouse=True)
def ews_schema() -> Path:
    if not (SCHEMA_DIR / "messages.xsd").is_file():
        if _ci():  # a CI run that silently skips the simulator proves nothing: fail it
            pytest.fail(f"{MISSING_SCHEMA}; CI=true, so this is a failure, not a skip", pytrace=False)
        _skipped_for_schema.append(MISSING_SCHEMA)
        pytest.skip(MISSING_SCHEMA)
    os.environ["CALSYNC_EWS_SCHEMA_DIR"] = str(SCHEMA_DIR)
    return SCHEMA_DIR


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Locally a missing schema skips; the summary says so loudly instead of a quiet 's'."""
    if _skipped_for_schema:
        terminalreporter.write_sep("!", "SIMULATOR TESTS SKIPPED: EWS SCHEMA MISSING", red=True, bold=True)
        terminalreporter.write_line(f"{MISSING_SCHEMA}.", red=True)
        terminalreporter.write_line("Under CI=true this fails the run.", red=True)


@pytest.fixture
def sim() -> Simulator:
    return generate(MAILBOXES, APPOINTMENTS, SEED, validate=True)


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as srv:
        yield srv
    stats = sim.get_stats()
    assert stats["schema_violations"] == 0, stats["schema_errors"]


def make_account(
    srv: Any,
    email: str = "user0001@example.com",
    *,
    password: str | None = None,
    max_connections: int = 1,
    build: Build | None = None,
) -> Account:
    config = Configuration(
        service_endpoint=srv.ews_url,
        credentials=Credentials(srv.user, srv.password if password is None else password),
        auth_type=BASIC,
        version=Version(build=build or Build(15, 0, 1497, 2)),
        retry_policy=FailFast(),
        max_connections=max_connections,
    )
    return Account(
        primary_smtp_address=email, config=config, autodiscover=False, access_type=IMPERSONATION, default_timezone=UTC
    )


@pytest.fixture
def account(server: SimulatorServer) -> Callable[..., Account]:
    def factory(email: str = "user0001@example.com", **kwargs: object) -> Account:
        return make_account(server, email, **kwargs)  # type: ignore[arg-type]

    return factory
