"""`calsync operators`: enable calendar sync one by one or in bulk from a CSV file.

The seed enables operators in bulk by a Data Import and one by one when an operator is
created or updated; these commands are that, for deployments without the CRM's own UI.
Each command is one transaction: it either does everything it was asked or nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click

from calsync.cli.settings import open_database
from calsync.operators import emails
from calsync.operators.csv_import import CsvFileError, ParsedFile, read_operators_file
from calsync.store import operators as store
from calsync.store import settings as settings_store
from calsync.store.lifecycle import STATUSES
from calsync.store.operators import ImportResult, OperatorError


def _fail(message: str) -> NoReturn:
    click.echo(f"calsync: {message}", err=True)
    sys.exit(2)


def _email(_ctx: click.Context | None, _param: click.Parameter | None, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return emails.normalize(value)
    except emails.BadEmail as exc:
        raise click.BadParameter(str(exc)) from exc


def _emails(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> list[str]:
    return [e for e in (_email(ctx, param, v) for v in values) if e is not None]


@click.group()
def operators() -> None:
    """Operators (CRM users) and their Calendar Sync flag."""


@operators.command("add")
@click.argument("email", callback=_email)
@click.option("--name", default="", help="Display name.")
@click.option(
    "--sync/--no-sync", default=True, show_default=True, help="Calendar Sync on creation (the seed's default)."
)
@click.option(
    "--source",
    type=click.Choice(["ews", "graph"]),
    default=None,
    help="Read this mailbox through EWS or Graph (default: the `source` setting).",
)
def add(email: str, name: str, sync: bool, source: str | None) -> None:
    """Create an operator; with --sync (default) its first sync is due at once."""
    try:
        with open_database() as conn:
            op = store.add(conn, email, name.strip(), sync)
            if source is not None:
                store.set_source(conn, [op.id], source, settings_store.load(conn).source.value)
    except OperatorError as exc:
        _fail(str(exc))
    click.echo(f"added {op.email} (id {op.id}, calendar sync {'on' if op.calendar_sync else 'off'}, {op.status})")


@operators.command("source")
@click.argument("source", type=click.Choice(["ews", "graph", "default"]))
@click.argument("emails", nargs=-1, required=True, callback=_emails)
def source_(source: str, emails: list[str]) -> None:
    """Read these mailboxes through EWS or Graph ('default': the `source` setting).

    A switch resyncs the operator; its appointments keep their row ids (matched by
    iCalendar UID and original start), so the CRM sees updates, not deletes and creates.
    """
    try:
        with open_database() as conn:
            ids = store.resolve(conn, emails)
            default = settings_store.load(conn).source.value
            switched = store.set_source(conn, ids, None if source == "default" else source, default)
    except OperatorError as exc:
        _fail(str(exc))
    click.echo(f"source {source} for {len(ids)} operator(s); {switched} switched and resyncing")


@operators.command("update")
@click.argument("email", callback=_email)
@click.option("--name", default=None, help="New display name ('' clears it).")
@click.option("--email", "new_email", default=None, callback=_email, help="New Exchange address.")
def update(email: str, name: str | None, new_email: str | None) -> None:
    """Rename an operator or change its address (a new mailbox is synced again from scratch)."""
    if name is None and new_email is None:
        _fail("nothing to update; give --name and/or --email")
    try:
        with open_database() as conn:
            op = store.update(conn, email, name.strip() if name is not None else None, new_email)
    except OperatorError as exc:
        _fail(str(exc))
    click.echo(f"updated {op.email} (id {op.id}, name {op.display_name!r}, {op.status})")


@operators.command("enable")
@click.argument("emails", nargs=-1, required=True, callback=_emails)
def enable(emails: list[str]) -> None:
    """Switch Calendar Sync on; all addresses must exist, else nothing changes."""
    try:
        with open_database() as conn:
            ids = store.resolve(conn, emails)
            changed = store.set_calendar_sync(conn, ids, True)
    except OperatorError as exc:
        _fail(str(exc))
    click.echo(f"enabled {changed} operator(s); {len(ids) - changed} already enabled")


@operators.command("disable")
@click.argument("emails", nargs=-1, required=True, callback=_emails)
@click.option("--purge", is_flag=True, help="Also delete their mirrored appointments and restart their sync state.")
def disable(emails: list[str], purge: bool) -> None:
    """Switch Calendar Sync off at once; the mirror is kept unless --purge."""
    try:
        with open_database() as conn:
            ids = store.resolve(conn, emails)
            changed = store.set_calendar_sync(conn, ids, False)
            deleted = store.purge(conn, ids) if purge else None
    except OperatorError as exc:
        _fail(str(exc))
    click.echo(f"disabled {changed} operator(s); {len(ids) - changed} already disabled")
    if deleted is not None:
        click.echo(f"purged {deleted} appointment(s) and reset the sync state of {len(ids)} operator(s)")


@operators.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only operators in this sync status.")
def list_(as_json: bool, status: str | None) -> None:
    """Operators with their Calendar Sync flag and sync status."""
    with open_database() as conn:
        found = store.list_operators(conn, status)
    if as_json:
        click.echo(json.dumps([op.as_json() for op in found], indent=2))
        return
    for op in found:
        last = op.last_success_at.isoformat(timespec="seconds") if op.last_success_at else "never"
        sync = "on " if op.calendar_sync else "off"
        click.echo(f"{op.email:<40} {sync} {op.status:<12} last sync {last:<25} {op.display_name}")
    click.echo(f"{len(found)} operator(s)", err=True)


@operators.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change and write nothing.")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even when some rows are bad.")
def import_(file: Path, dry_run: bool, skip_invalid: bool) -> None:
    """Enable (or disable) operators in bulk from a CSV file with email, name, calendar_sync.

    Every row is checked first; any bad row makes the whole import fail (exit status 2,
    nothing written) unless --skip-invalid. UTF-8 (with or without BOM), ',' or ';'
    delimited; header names are case-insensitive ('Display Name', 'Calendar Sync' work);
    calendar_sync is true/false, yes/no, y/n or 1/0. An empty name keeps an existing
    operator's name. Importing the same file again changes nothing.
    """
    try:
        parsed = read_operators_file(file)
    except CsvFileError as exc:
        _fail(str(exc))
    _report_file(parsed)
    if parsed.errors and not skip_invalid:
        _fail(
            f"{file}: {len(parsed.bad_lines)} bad row(s), nothing imported; "
            "fix them, or use --skip-invalid to import the other rows"
        )
    with open_database() as conn:
        result = store.import_rows(conn, parsed.rows, dry_run=dry_run)
        if dry_run:
            conn.rollback()
    _report_result(result, parsed, dry_run)


def _report_file(parsed: ParsedFile) -> None:
    for error in parsed.errors:
        click.echo(f"  {error}", err=True)
    if parsed.ignored_columns:
        click.echo("ignored columns: " + ", ".join(parsed.ignored_columns), err=True)


def _report_result(result: ImportResult, parsed: ParsedFile, dry_run: bool) -> None:
    if dry_run:
        for change in result.changes:
            if change.action == "new":
                click.echo(
                    f"  new      line {change.line}: {change.email} name={change.name!r} "
                    f"calendar_sync={str(change.calendar_sync).lower()}"
                )
            elif change.action == "updated":
                diffs = []
                if change.old_name != change.name:
                    diffs.append(f"name {change.old_name!r} -> {change.name!r}")
                if change.old_calendar_sync != change.calendar_sync:
                    diffs.append(
                        f"calendar_sync {str(change.old_calendar_sync).lower()} -> {str(change.calendar_sync).lower()}"
                    )
                click.echo(f"  updated  line {change.line}: {change.email} " + ", ".join(diffs))
    summary = f"{result.new} new, {result.updated} updated, {result.unchanged} unchanged"
    if parsed.errors:
        summary += f", {len(parsed.bad_lines)} bad row(s) skipped"
    if not dry_run and (result.disabled or result.enabled):
        summary += f"; sync {result.disabled} stopped, {result.enabled} restarted"
    click.echo(("dry run (nothing written): " if dry_run else "imported: ") + summary)
