"""Settings rows in Postgres: one JSON value per key, validated by calsync.settings."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from calsync.settings import SyncSettings, validate_one


def load(conn: psycopg.Connection[Any]) -> SyncSettings:
    rows = conn.execute("SELECT key, value FROM settings").fetchall()
    stored = {(r["key"] if isinstance(r, dict) else r[0]): (r["value"] if isinstance(r, dict) else r[1]) for r in rows}
    known = {k: v for k, v in stored.items() if k in SyncSettings.model_fields}
    return SyncSettings.model_validate({**SyncSettings().model_dump(), **known})


def set_value(conn: psycopg.Connection[Any], key: str, raw: Any) -> SyncSettings:
    """Validate and store one setting; raises SettingError and writes nothing when it is bad."""
    current = load(conn)
    updated = validate_one(key, raw, current)
    value = updated.model_dump(mode="json")[key]
    conn.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (%s, %s, now()) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        (key, Jsonb(value)),
    )
    return updated
