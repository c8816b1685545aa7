"""Schema migrations with yoyo: numbered SQL files in calsync/store/migrations.

yoyo takes a lock in the database while it applies migrations, so `calsync db upgrade` can
run from every container of a deployment at start without racing.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

from calsync.config import ConfigError


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _yoyo_url(database_url: str) -> str:
    scheme, rest = database_url.split("://", 1)
    if scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"CALSYNC_DATABASE_URL={redact(database_url)}: expected a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


def create_database(database_url: str) -> bool:
    """Create the database if missing; True when it was created."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise ConfigError(f"CALSYNC_DATABASE_URL={redact(database_url)}: the URL names no database")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.OperationalError as exc:
        raise ConfigError(
            f"cannot reach Postgres at {redact(admin_url)}: {str(exc).strip().splitlines()[0]}. "
            "Start it (pg_ctlcluster <version> main start, or `make up`) or set CALSYNC_DATABASE_URL"
        ) from exc


def upgrade(database_url: str) -> list[str]:
    """Apply pending migrations; returns the ids applied now."""
    backend = get_backend(_yoyo_url(database_url))
    migrations_dir = resources.files("calsync.store") / "migrations"
    migrations = read_migrations(str(migrations_dir))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]
