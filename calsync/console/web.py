"""The plumbing every page shares: templates, login and CSRF checks, flash messages, the audit trail.

Pages are plain functions; `page` wraps a GET (login required) and `action` wraps a POST
(login and a valid CSRF token required, the form parsed, the work run in a thread so a slow
database never blocks the event loop).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from calsync.console.auth import CSRF_FIELD, csrf_ok, csrf_token, current_user
from calsync.store import audit
from calsync.store.db import transaction

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
log = logging.getLogger("calsync.console.audit")


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["tojson_compact"] = lambda v: json.dumps(v, default=str, separators=(",", ":"))

Page = Callable[[Request, str], Response]
Action = Callable[[Request, FormData, str], Response]


def flash(request: Request, text: str, kind: str = "ok") -> None:
    request.session.setdefault("flash", []).append({"text": text, "kind": kind})


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    messages = request.session.pop("flash", [])
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "user": current_user(request),
            "csrf_field": CSRF_FIELD,
            "csrf": csrf_token(request),
            "messages": messages,
            "chart_available": (HERE / "static" / "vendor" / "chart.umd.min.js").is_file(),
            **context,
        },
        status_code=status_code,
    )


def safe_next(target: str | None, default: str = "/") -> str:
    """Only local paths: a crafted ?next= must not send an administrator to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def page(fn: Page) -> Callable[[Request], Response]:
    @functools.wraps(fn)
    def endpoint(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect("/login?next=" + quote(wanted, safe=""))
        return fn(request, user)

    return endpoint


def refused(request: Request) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status_code=403,
        title="Request refused",
        message="The form's security token is missing or out of date (CSRF protection); nothing was changed. "
        "Reload the page and submit the form again.",
    )


def action(fn: Action, max_part_size: int = 1024 * 1024) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return render(
                request, "error.html", status_code=401, title="Not logged in", message="Log in first; nothing changed."
            )
        form = await request.form(max_part_size=max_part_size)
        if not csrf_ok(request, form.get(CSRF_FIELD)):
            log.warning("console: refused %s %s by %s: bad CSRF token", request.method, request.url.path, user)
            return refused(request)
        return await run_in_threadpool(fn, request, form, user)

    endpoint.__name__ = fn.__name__
    return endpoint


def audited(user: str, what: str, target: str = "", **detail: Any) -> Callable[[Any], None]:
    """Write the audit row on the change's own connection and log it; returns the writer."""

    def write(conn: Any) -> None:
        audit.record(conn, user, what, target, **detail)
        log.info("console: %s %s %s %s", user, what, target, json.dumps(detail, default=str))

    return write


def in_transaction(work: Callable[[Any], Any]) -> Any:
    with transaction() as conn:
        return work(conn)
