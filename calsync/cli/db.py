"""`calsync db`: create the database and apply migrations."""

from __future__ import annotations

import click

from calsync.config import env
from calsync.store import migrate


@click.group()
def db() -> None:
    """Database: create it, apply migrations."""


@db.command()
def create() -> None:
    """Create the database named by CALSYNC_DATABASE_URL if it does not exist."""
    created = migrate.create_database(env().database_url)
    click.echo(("created " if created else "exists: ") + migrate.redact(env().database_url))


@db.command()
def upgrade() -> None:
    """Apply every migration not yet applied (safe to run from several hosts at once)."""
    applied = migrate.upgrade(env().database_url)
    click.echo(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
