"""`calsync sync`: sync operators now instead of at their next poll."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import click

from calsync.cli.settings import open_database
from calsync.operators.emails import key as email_key
from calsync.store import lifecycle
from calsync.store import status as status_store


def _workers_online(app: Any) -> str | bool:
    """True, or what is wrong: --wait must not wait ten minutes for workers that do not exist."""
    try:
        replies = app.control.ping(timeout=2.0) or []
    except Exception as exc:  # broker down: kombu's errors vary by transport
        return f"the broker is unreachable ({type(exc).__name__}: {exc})"
    return True if replies else "no calsync worker is online (none answered a ping within 2 s)"


@click.command()
@click.argument("emails", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every operator with Calendar Sync on.")
@click.option("--wait", is_flag=True, help="Show progress until each has finished (or failed).")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds --wait waits at most.")
def sync(emails: tuple[str, ...], all_: bool, wait: bool, timeout: float) -> None:
    """Make operators due now and send a dispatcher tick (workers must be running)."""
    if bool(emails) == all_:
        raise click.UsageError("name operators by email, or pass --all")
    started = dt.datetime.now(dt.UTC)
    with open_database() as conn:
        due = lifecycle.request_sync(conn, None if all_ else list(emails))
    if not all_:
        missing = sorted({email_key(e) for e in emails} - {email_key(email) for _, email in due})
        if missing:
            raise click.UsageError(f"not an operator with Calendar Sync on: {', '.join(missing)}")
    from calsync.celery import app

    app.send_task("calsync.dispatch", kwargs={"slot": started.isoformat()}, queue="dispatch")
    click.echo(f"{len(due)} operator(s) due now; dispatcher tick sent")
    if not wait:
        return
    online = _workers_online(app)
    if online is not True:
        click.echo(
            f"calsync: {online}; nothing will sync until one runs. Start one with "
            "`celery -A calsync worker -Q dispatch,sync,notify -P threads` (or `make up`); "
            "the operators stay due and sync as soon as a worker is up",
            err=True,
        )
        raise SystemExit(1)
    deadline = time.monotonic() + timeout
    pending = {email for _, email in due}
    while pending and time.monotonic() < deadline:
        time.sleep(1.0)
        with open_database() as conn:
            rows = status_store.operators(conn, sorted(pending))
        for r in rows:
            done_at = r["last_success_at"]
            if r["status"] == "failed" and r["last_error_code"]:
                click.echo(f"{r['email']}: failed ({r['last_error_code']})")
                pending.discard(r["email"])
            elif done_at and dt.datetime.fromisoformat(done_at) >= started and not r["in_flight"]:
                click.echo(f"{r['email']}: synced, {r['appointments']} appointments")
                pending.discard(r["email"])
    if pending:
        click.echo(f"still running after {timeout:.0f}s: {', '.join(sorted(pending))}", err=True)
        raise SystemExit(1)
