"""Login, overview, history and settings pages."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from calsync.cli.settings import secrets_report
from calsync.config import env
from calsync.console import broker
from calsync.console.auth import CSRF_FIELD, check_password, csrf_ok, current_user
from calsync.console.web import audited, flash, in_transaction, page, redirect, refused, render, safe_next
from calsync.notify.catalogue import lookup
from calsync.settings import SETTING_KEYS, ExchangeVersion, SettingError, SyncSettings, allowed_text, validate_one
from calsync.store import console as console_store
from calsync.store import pause as pause_store
from calsync.store import push as push_store
from calsync.store import settings as settings_store
from calsync.store import status as status_store

log = logging.getLogger("calsync.console.audit")

HISTORY_RANGES = {"24h": 24, "7d": 24 * 7}


def login_form(request: Request) -> Response:
    if current_user(request):
        return redirect(safe_next(request.query_params.get("next")))
    return render(request, "login.html", next=safe_next(request.query_params.get("next")), error=None, name="")


async def login_submit(request: Request) -> Response:
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return refused(request)
    name = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    ok = await run_in_threadpool(check_password, request.app.state.config, name, password)
    if not ok:
        log.warning("console: failed login for %r from %s", name, request.client.host if request.client else "?")
        return render(
            request,
            "login.html",
            status_code=401,
            next=target,
            name=name,
            error="Wrong user name or password.",
        )
    request.session.clear()  # a fresh session (and CSRF token) after login: no session fixation
    request.session["user"] = name
    log.info("console: %s logged in", name)
    return redirect(target)


async def logout(request: Request) -> Response:
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return refused(request)
    request.session.clear()
    return redirect("/login")


@page
def overview(request: Request, user: str) -> Response:
    def read(conn: Any) -> dict[str, Any]:
        paused = pause_store.current(conn)
        return {
            "fleet": status_store.fleet(conn),
            "failures": console_store.failures_by_code(conn),
            "pause": paused,
            "pause_entry": lookup(paused.code) if paused else None,
            "audit": console_store.recent_audit(conn, 10),
            "push_on": bool(settings_store.load(conn).notification_url),
            "push": push_store.fleet(conn, env().push_minute_seconds),
        }

    data = in_transaction(read)
    for group in data["failures"]:
        group["entry"] = lookup(group["code"])
    return render(request, "overview.html", nav="overview", broker=broker.broker_view(), **data)


@page
def history(request: Request, user: str) -> Response:
    chosen = request.query_params.get("range", "24h")
    if chosen not in HISTORY_RANGES:
        chosen = "24h"
    hours = HISTORY_RANGES[chosen]
    rows, latency = in_transaction(
        lambda conn: (console_store.history(conn, hours), console_store.push_latency_history(conn, hours))
    )
    label = "%H:00" if chosen == "24h" else "%m-%d %H:00"
    series = {
        "labels": [r["hour"].astimezone(dt.UTC).strftime(label) for r in rows],
        "syncs": [r["syncs"] for r in rows],
        "changes": [r["changes"] for r in rows],
        "failures": [r["failed_runs"] + r["failures"] for r in rows],
    }
    totals = {k: sum(series[k]) for k in ("syncs", "changes", "failures")}
    # Change latency exists only where push covered notifications in the range (table push_latencies).
    covered = sum(r["n"] for r in latency)
    if covered:
        series["latency_p50"] = [r["p50"] for r in latency]
        series["latency_p95"] = [r["p95"] for r in latency]
        series["latency_n"] = [r["n"] for r in latency]
    return render(
        request, "history.html", nav="history", chosen=chosen, ranges=list(HISTORY_RANGES), rows=rows,
        series=series, totals=totals, covered=covered,
    )  # fmt: skip


def _fields(values: dict[str, Any], errors: dict[str, str]) -> list[dict[str, Any]]:
    defaults = SyncSettings().model_dump(mode="json")
    out = []
    for key in SETTING_KEYS:
        annotation = SyncSettings.model_fields[key].annotation
        if key == "exchange_version":
            kind, choices = "select", [v.value for v in ExchangeVersion]
        elif annotation is bool:
            kind, choices = "select", ["true", "false"]
        else:
            kind, choices = "text", []
        value = values.get(key)
        shown = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        out.append(
            {
                "key": key,
                "label": key.replace("_", " ").capitalize(),
                "kind": kind,
                "choices": choices,
                "value": shown,
                "allowed": allowed_text(key),
                "default": defaults[key],
                "error": errors.get(key),
            }
        )
    return out


EXCHANGE_TAB = ("exchange_url", "exchange_version", "batch_size", "notification_url",
                "notification_frequency_minutes", "notify_sync_failure_to")  # fmt: skip


def _settings_page(request: Request, values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Response:
    fields = _fields(values, errors)
    return render(
        request,
        "settings.html",
        status_code=status,
        nav="settings",
        exchange=[f for f in fields if f["key"] in EXCHANGE_TAB],
        others=[f for f in fields if f["key"] not in EXCHANGE_TAB],
        errors=errors,
        secrets=secrets_report(env()),
    )


@page
def settings_form(request: Request, user: str) -> Response:
    current = in_transaction(settings_store.load)
    return _settings_page(request, current.model_dump(mode="json"), {})


def settings_save(request: Request, form: FormData, user: str) -> Response:
    """Every field is checked before anything is written: one bad field and nothing is saved."""
    submitted = {key: str(form[key]) for key in SETTING_KEYS if key in form}

    def work(conn: Any) -> tuple[dict[str, str], list[str]]:
        current = settings_store.load(conn)
        before = current.model_dump(mode="json")
        candidate = current
        errors: dict[str, str] = {}
        for key, raw in submitted.items():
            try:
                candidate = validate_one(key, raw, candidate)
            except SettingError as exc:
                errors[key] = str(exc)
        if errors:
            return errors, []
        after = candidate.model_dump(mode="json")
        changed = [key for key in submitted if after[key] != before[key]]
        for key in changed:
            settings_store.set_value(conn, key, submitted[key])
            audited(user, "settings.set", key, old=before[key], new=after[key])(conn)
        return {}, changed

    errors, changed = in_transaction(work)
    if errors:
        return _settings_page(request, submitted, errors, status=400)
    flash(request, ("Saved: " + ", ".join(changed) + ". ") if changed else "Nothing changed. ")
    if changed:
        flash(request, "The change takes effect on the next batch of every worker.")
    return redirect("/settings")
