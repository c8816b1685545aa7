"""`calsync settings`: show and change the run-time settings stored in Postgres.

Secrets are not settings (they come from the environment, see calsync.config); `show`
says where each one comes from so an administrator can check a deployment without the
values ever reaching a terminal, a log or a support ticket.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import click
import psycopg

from calsync.config import ConfigError, EnvConfig, env
from calsync.settings import SETTING_KEYS, SettingError, SyncSettings, allowed_text
from calsync.store import settings as settings_store
from calsync.store.db import connect
from calsync.store.migrate import redact


@contextmanager
def open_database() -> Iterator[psycopg.Connection[Any]]:
    """One transaction for one command; the usual setup mistakes become one clear line.

    Committed when the block ends normally, rolled back on any exception (so a refused
    value or a bad import row leaves the database as it was).
    """
    url = env().database_url
    try:
        conn = connect(url)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        missing = re.search(r'database "([^"]+)" does not exist', str(exc))
        if missing:
            raise ConfigError(
                f"the database {missing.group(1)!r} does not exist on the Postgres server at {redact(url)}; "
                "create it with `calsync db create && calsync db upgrade` (or `make db`), or point "
                "CALSYNC_DATABASE_URL at the right database"
            ) from exc
        raise ConfigError(
            f"cannot connect to Postgres at {redact(url)}: {first}; "
            "start it or set CALSYNC_DATABASE_URL, then run `calsync db create` and `calsync db upgrade`"
        ) from exc
    try:
        with conn:
            yield conn
    except psycopg.errors.UndefinedTable as exc:
        raise ConfigError(
            f"the database at {redact(url)} has no calsync schema ({exc.diag.message_primary}); "
            "run `calsync db upgrade`"
        ) from exc


def smtp_source(config: EnvConfig) -> str:
    """Where the SMTP URL comes from, with the URL's password masked, never shown."""
    if config.smtp_url is None:
        return "not set (CALSYNC_SMTP_URL); failure notifications are not emailed"
    url = config.smtp_url.get_secret_value()
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}:***@" if parts.username and parts.password else ""
        user = user or (f"{parts.username}@" if parts.username else "")
        shown = f"{parts.scheme}://{user}{host}{port}"
    except ValueError:
        shown = "unparsable URL"
    return f"environment (CALSYNC_SMTP_URL: {shown})"


def ews_username_source(config: EnvConfig) -> str:
    return "environment (CALSYNC_EWS_USERNAME)" if config.ews_username else "not set (CALSYNC_EWS_USERNAME)"


def ews_password_source(config: EnvConfig) -> str:
    source = config.ews_password_source()
    if source == "not set":
        source += " (CALSYNC_EWS_PASSWORD or CALSYNC_EWS_PASSWORD_FILE)"
    path = config.ews_password_file
    if path is not None and not (path.is_file() and _readable(path)):
        source += " - NOT READABLE, fix the path or its permissions"
    return source


def _readable(path: Any) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def secrets_report(config: EnvConfig) -> dict[str, str]:
    return {
        "ews_username": ews_username_source(config),
        "ews_password": ews_password_source(config),
        "graph_credential": graph_credential_source(config),
        "smtp_url": smtp_source(config),
    }


def graph_credential_source(config: EnvConfig) -> str:
    source = config.graph_secret_source()
    if source == "not set":
        source += " (CALSYNC_GRAPH_CLIENT_SECRET, CALSYNC_GRAPH_CLIENT_SECRET_FILE or CALSYNC_GRAPH_CERTIFICATE)"
    path = config.graph_client_secret_file or config.graph_certificate
    if path is not None and not (path.is_file() and _readable(path)):
        source += " - NOT READABLE, fix the path or its permissions"
    return source


def settings_report(current: SyncSettings) -> dict[str, dict[str, Any]]:
    values = current.model_dump(mode="json")
    defaults = SyncSettings().model_dump(mode="json")
    return {
        key: {"value": values[key], "default": values[key] == defaults[key], "allowed": allowed_text(key)}
        for key in SETTING_KEYS
    }


@click.group()
def settings() -> None:
    """Run-time settings (stored in Postgres; every worker sees a change on its next tick)."""


@settings.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(as_json: bool) -> None:
    """List every setting with its value, whether it is the default, and what is allowed."""
    with open_database() as conn:
        current = settings_store.load(conn)
    report = settings_report(current)
    secrets = secrets_report(env())
    if as_json:
        click.echo(json.dumps({"settings": report, "secrets": secrets}, indent=2))
        return
    width = max(map(len, SETTING_KEYS))
    click.echo("Settings (change with: calsync settings set KEY VALUE)")
    for key, item in report.items():
        value = "(none)" if item["value"] in (None, "") else json.dumps(item["value"])
        marker = "default" if item["default"] else "set"
        click.echo(f"  {key:<{width}}  {value}  [{marker}]")
        click.echo(f"  {'':<{width}}  allowed: {item['allowed']}")
    click.echo("Secrets (from the environment; values are never shown)")
    labels = {
        "ews_username": "EWS service account user",
        "ews_password": "EWS service account password",
        "graph_credential": "Graph client secret or certificate",
        "smtp_url": "SMTP server",
    }
    for key, source in secrets.items():
        click.echo(f"  {labels[key]:<{width}}  {source}")


# Negative numbers ("-1") are values here, not options.
@settings.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Validate and store one setting; a refused value changes nothing (exit status 2)."""
    try:
        with open_database() as conn:
            updated = settings_store.set_value(conn, key, value)
    except SettingError as exc:
        click.echo(f"calsync: {exc}", err=True)
        sys.exit(2)
    shown = updated.model_dump(mode="json")[key]
    click.echo(f"{key} = {json.dumps(shown)}")
