"""The dispatcher's tick bookkeeping: a tick slot is taken once, however many beats race on it.

The claim of due operators is a lifecycle transition (calsync.store.lifecycle.claim_due).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg


def take_slot(conn: psycopg.Connection[Any], slot: dt.datetime) -> bool:
    row = conn.execute(
        "INSERT INTO dispatch_ticks (slot) VALUES (%s) ON CONFLICT DO NOTHING RETURNING slot", (slot,)
    ).fetchone()
    return row is not None


def record_tick(conn: psycopg.Connection[Any], slot: dt.datetime, operators: int) -> None:
    conn.execute("UPDATE dispatch_ticks SET operators = %s WHERE slot = %s", (operators, slot))
