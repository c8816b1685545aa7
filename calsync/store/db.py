"""Postgres connections: one pool per process, opened on first use.

Celery's prefork workers fork after importing the app; a pool opened before the fork would
share sockets between processes. The pool is therefore created lazily and re-created when
the process id changes, and never at import time. Each pooled session gets an idle-in-transaction
timeout and a statement timeout (CALSYNC_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS,
CALSYNC_DB_STATEMENT_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from calsync.config import env

_lock = threading.Lock()
_pool: ConnectionPool[Any] | None = None
_pool_pid: int | None = None


def pool(max_size: int = 8) -> ConnectionPool[Any]:
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ConnectionPool(
                env().database_url,
                min_size=1,
                max_size=max_size,
                kwargs={"autocommit": False, "row_factory": dict_row},
                # Dead connections (Postgres restarted) are detected before use, not by a failed query.
                check=ConnectionPool.check_connection,
                configure=_session_limits,
                reconnect_timeout=60,
                open=True,
                name="calsync",
            )
            _pool_pid = os.getpid()
        return _pool


def _session_limits(conn: psycopg.Connection[Any]) -> None:
    """Postgres ends what a frozen worker would hold: an idle transaction, a runaway statement.

    Set per session (not in the URL's `options`, which a deployment may use for its own settings).
    """
    cfg = env()
    conn.execute(
        "SELECT set_config('idle_in_transaction_session_timeout', %s, false), "
        "set_config('statement_timeout', %s, false)",
        (
            f"{int(cfg.db_idle_in_transaction_timeout_seconds * 1000)}ms",
            f"{int(cfg.db_statement_timeout_seconds * 1000)}ms",
        ),
    )
    conn.commit()


def close_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.close()
        _pool = None


@contextmanager
def transaction() -> Iterator[psycopg.Connection[Any]]:
    """One transaction on a pooled connection: committed on success, rolled back on error."""
    with pool().connection() as conn, conn.transaction():
        yield conn


def connect(url: str | None = None) -> psycopg.Connection[Any]:
    """A standalone connection (CLI commands, tests) outside the pool."""
    return psycopg.connect(url or env().database_url, row_factory=dict_row)
