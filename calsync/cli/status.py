"""`calsync status`: the fleet at a glance, per operator, for people and for monitoring.

Exit status 1 when any operator is failed or syncing is paused for everyone, so a monitoring
check can call it as it is.
"""

from __future__ import annotations

import json
from typing import Any

import click

from calsync.cli.settings import open_database
from calsync.config import env
from calsync.notify.catalogue import lookup
from calsync.operators.emails import key as email_key
from calsync.store import pause as pause_store
from calsync.store import push as push_store
from calsync.store import refusals
from calsync.store import status as status_store


def _broker_view() -> dict[str, Any]:
    """Workers online and queue depths; a missing broker is reported, not fatal."""
    try:
        from calsync import redis_url
        from calsync.celery import app
        from calsync.config import env

        cfg = env()
        client = redis_url.client(cfg.broker, cfg.redis_sentinel_master, socket_connect_timeout=2, socket_timeout=2)
        queues = {q: int(client.llen(q)) for q in ("dispatch", "sync", "notify")}
        replies = app.control.ping(timeout=1.0) or []
        workers = sorted(name for reply in replies for name in reply)
        return {"queues": queues, "workers": workers, "broker": "ok"}
    except Exception as exc:
        return {"queues": None, "workers": None, "broker": f"unreachable: {exc}"}


def _failure(row: dict[str, Any]) -> dict[str, Any]:
    entry = lookup(row["last_error_code"] or "")
    return {
        "email": row["email"],
        "code": row["last_error_code"],
        "message": entry.message,
        "fix": entry.fix,
        "since": row["failing_since"],
        "attempts": row["attempts"],
        "detail": row["last_error_message"],
    }


def _refusal(row: dict[str, Any]) -> dict[str, Any]:
    entry = lookup(row["code"])
    return {
        "email": row["email"],
        "item_id": row["item_id"],
        "code": row["code"],
        "message": entry.message,
        "fix": entry.fix,
        "reason": row["reason"],
        "since": row["first_refused_at"],
    }


@click.command()
@click.argument("emails", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-broker", is_flag=True, help="Do not ask Redis and the workers (database only).")
def status(emails: tuple[str, ...], as_json: bool, no_broker: bool) -> None:
    """Operators per status, last tick, workers, queues and failures; or the named operators in detail."""
    with open_database() as conn:
        fleet = status_store.fleet(conn)
        rows = status_store.operators(conn, list(emails) or None)
        failed_rows = (
            [r for r in rows if r["status"] == "failed"] if emails else status_store.operators(conn, status="failed")
        )
        retrying_rows = (
            [r for r in rows if r["status"] == "retrying"]
            if emails
            else status_store.operators(conn, status="retrying")
        )
        refused = refusals.listed(conn, list(emails) or None)
        paused = pause_store.current(conn)
        push_fleet = push_store.fleet(conn, env().push_minute_seconds)
        push_rows = push_store.per_operator(conn, [r["id"] for r in rows]) if emails else {}
    for r in rows:
        if r["id"] in push_rows:
            r["push"] = push_rows[r["id"]]
    report: dict[str, Any] = {
        **fleet,
        "failures": [_failure(r) for r in failed_rows],
        "retrying": [_failure(r) for r in retrying_rows if r["last_error_code"]],
        "items_set_aside": [_refusal(r) for r in refused],
        "pause": None,
        "push": push_fleet,
    }
    if paused is not None:
        entry = lookup(paused.code)
        report["pause"] = {
            "code": paused.code,
            "message": entry.message,
            "fix": entry.fix,
            "since": paused.since.isoformat(),
            "next_probe": paused.until.isoformat(),
            "probes": paused.probes,
            "detail": paused.message,
        }
    if not no_broker:
        report.update(_broker_view())
    if emails:
        missing = sorted({email_key(e) for e in emails} - {email_key(r["email"]) for r in rows})
        if missing:
            raise click.UsageError(f"no such operator: {', '.join(missing)}")
        report["operators_detail"] = rows
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print(report)
    if report["failures"] or report["pause"]:
        raise SystemExit(1)


def _print(report: dict[str, Any]) -> None:
    by = report["by_status"]
    click.echo(f"operators: {report['operators']}  " + "  ".join(f"{k} {v}" for k, v in by.items()))
    tick = report["last_tick"]
    click.echo(f"last tick: {tick['at']} ({tick['dispatched']} dispatched)" if tick else "last tick: never")
    click.echo(f"appointments mirrored: {report['appointments']}")
    p = report["push"]
    click.echo(
        f"push: {p['subscribed']} subscribed ({p['healthy']} healthy), {p['subscribing']} subscribing, "
        f"{p['dead']} dead, last heard {p['last_heard'] or 'never'}"
    )
    for mode, m in (p.get("by_mode") or {}).items():
        if m["subscribed"] or m["subscribing"] or m["dead"]:
            click.echo(
                f"    {'graph' if mode == 'graph' else 'ews push'}: {m['subscribed']} subscribed ({m['healthy']} healthy), "
                f"{m['subscribing']} subscribing, {m['dead']} dead, last heard {m['last_heard'] or 'never'}"
            )
    if "broker" in report:
        if report["broker"] == "ok":
            click.echo(f"workers online: {len(report['workers'])} {' '.join(report['workers'])}")
            click.echo("queue depth: " + "  ".join(f"{q} {n}" for q, n in report["queues"].items()))
        else:
            click.echo(f"broker: {report['broker']}")
    if report["pause"]:
        p = report["pause"]
        click.echo(f"SYNCING PAUSED FOR EVERYONE: {p['code']}: {p['message']} (since {p['since']})")
        click.echo(f"       fix: {p['fix']}")
    for f in report["failures"]:
        click.echo(f"FAILED {f['email']}: {f['code']}: {f['message']} (since {f['since']}, {f['attempts']} attempts)")
        click.echo(f"       fix: {f['fix']}")
    for f in report["retrying"]:
        click.echo(f"RETRYING {f['email']}: {f['code']}: {f['message']} (since {f['since']}, {f['attempts']} attempts)")
        click.echo(f"       detail: {f['detail']}")
    for r in report["items_set_aside"]:
        click.echo(f"SET ASIDE {r['email']} item {r['item_id']}: {r['code']}: {r['reason']}")
        click.echo(f"       fix: {r['fix']}")
    for r in report.get("operators_detail", []):
        click.echo(
            f"{r['email']}: {r['status']} ({r['stage']}), {r['appointments']} appointments, "
            f"last success {r['last_success_at'] or 'never'}, next poll {r['next_poll_at']}"
            + (f", last error {r['last_error_code']}" if r["last_error_code"] else "")
        )
        push = r.get("push")
        if push and (push["subscribed"] or push["dead_since"] or push["last_error"]):
            graph = push.get("mode") == "graph"
            click.echo(
                f"    push{' (graph)' if graph else ''}: {'subscribed' if push['subscribed'] else 'not subscribed'}, "
                f"last heard {push['last_heard'] or 'never'}"
                + (
                    f", expires {push['expires_at']}, next renewal {push['renew_at']}"
                    if graph and push["subscribed"]
                    else ""
                )
                + (f", dead since {push['dead_since']}" if push["dead_since"] else "")
                + (f", last subscribe error {push['last_error']}" if push["last_error"] else "")
            )
