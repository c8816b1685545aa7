"""Fixtures for tests that run the installed `calsync` command against a real Postgres.

Running the console script (not CliRunner) checks what an administrator actually runs:
the entry point, exit statuses, and what goes to stdout and stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.rows import dict_row

CALSYNC = Path(sys.executable).parent / "calsync"
DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/calsync_test"
# Removed from the environment of every run so a developer's own secrets cannot leak into
# (or change) what the tests see.
SECRET_VARS = ("CALSYNC_EWS_USERNAME", "CALSYNC_EWS_PASSWORD", "CALSYNC_EWS_PASSWORD_FILE", "CALSYNC_SMTP_URL",
               "CALSYNC_GRAPH_CLIENT_SECRET", "CALSYNC_GRAPH_CLIENT_SECRET_FILE", "CALSYNC_GRAPH_CERTIFICATE")  # fmt: skip

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def database_url() -> str:
    """The test database: CALSYNC_DATABASE_URL when set (make test), else calsync_test.

    These tests truncate operators and settings, so a URL whose database name does not
    contain "test" is refused rather than trusted.
    """
    url = os.environ.get("CALSYNC_DATABASE_URL")
    if url:
        name = urlsplit(url).path.lstrip("/")
        if "test" not in name:
            pytest.fail(f"CALSYNC_DATABASE_URL names database {name!r}; the CLI tests only run on a *test* database")
        return url
    env = {**os.environ, "CALSYNC_DATABASE_URL": DEFAULT_TEST_DATABASE_URL}
    for step in ("create", "upgrade"):
        subprocess.run([str(CALSYNC), "db", step], env=env, check=True, capture_output=True, text=True)
    return DEFAULT_TEST_DATABASE_URL


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to inspect and arrange rows; starts from empty tables."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:  # type: ignore[arg-type]
        conn.execute("TRUNCATE operators, settings CASCADE")
        yield conn


@pytest.fixture
def run(database_url: str) -> Run:
    def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
        full_env = {**base, "CALSYNC_DATABASE_URL": database_url, **(env or {})}
        return subprocess.run(
            [str(CALSYNC), *args], env=full_env, capture_output=True, text=True, timeout=120, check=False
        )

    return _run
