"""Shared fixtures: the real Postgres and Redis of this machine, never mocks.

`make test` points CALSYNC_DATABASE_URL at a dedicated test database and migrates it; run
directly, pytest defaults to the same database and migrates it here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("CALSYNC_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/calsync_test")
os.environ.setdefault("CALSYNC_REDIS_URL", "redis://127.0.0.1:6379/9")

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
CALSYNC = str(Path(sys.executable).parent / "calsync")

TABLES = (
    "appointment_attendees, appointments, resync_seen, sync_runs, sync_state, operators, settings, dispatch_ticks, "
    "failure_episodes, global_pause"
)


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ["CALSYNC_DATABASE_URL"]
    subprocess.run([CALSYNC, "db", "create"], check=True, capture_output=True)
    subprocess.run([CALSYNC, "db", "upgrade"], check=True, capture_output=True)
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[dict]]:  # type: ignore[type-arg]
    """A clean calsync schema and an autocommit connection to inspect it."""
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        yield conn


@pytest.fixture
def redis_url() -> str:
    return os.environ["CALSYNC_REDIS_URL"]


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()
