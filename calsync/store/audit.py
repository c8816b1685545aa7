"""The console's audit trail: one row per state-changing action, with who did it.

Written in the same transaction as the change it describes, so a refused or rolled-back
change leaves no entry and a committed one always has its entry.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def record(conn: psycopg.Connection[Any], actor: str, action: str, target: str = "", **detail: Any) -> None:
    conn.execute(
        "INSERT INTO console_audit (actor, action, target, detail) VALUES (%s, %s, %s, %s)",
        (actor, action, target, Jsonb(detail)),
    )
