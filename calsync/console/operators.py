"""Operator pages: the list, one operator, adding, changing, disabling, and the CSV import wizard.

Every change calls the function `calsync operators ...` calls, on one transaction that also
holds the audit row, so the console and the CLI cannot disagree about what a change does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any
from urllib.parse import urlencode

import psycopg
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from calsync.console import broker
from calsync.console.web import audited, flash, in_transaction, page, redirect, render, safe_next
from calsync.notify.catalogue import lookup
from calsync.operators.csv_import import CsvFileError, ParsedFile, parse_operators_csv
from calsync.settings import EMAIL_RE
from calsync.store import console as console_store
from calsync.store import lifecycle
from calsync.store import operators as store
from calsync.store import settings as settings_store
from calsync.store.db import pool
from calsync.store.operators import ImportResult, OperatorError
from calsync.store.status import STATUSES

PER_PAGE = 50
PREVIEW_ROWS = 500


def email_problem(value: str) -> str | None:
    """The CLI's rule for an address (calsync.cli.operators._email), with its message."""
    email = value.strip()
    if not EMAIL_RE.match(email) or len(email) > 254:
        return f"{value!r} is not an email address like name@example.com"
    return None


def _query(request: Request) -> console_store.OperatorQuery:
    params = request.query_params
    status = params.get("status") or None
    sort = params.get("sort", "email")
    try:
        number = max(1, int(params.get("page", "1")))
    except ValueError:
        number = 1
    return console_store.OperatorQuery(
        search=params.get("q", "")[:200],
        status=status if status in STATUSES else None,
        error_code=(params.get("code") or None),
        sort=sort if sort in console_store.SORTS else "email",
        descending=params.get("dir") == "desc",
        page=number,
        per_page=PER_PAGE,
    )


def _list_url(query: console_store.OperatorQuery, **change: Any) -> str:
    values = {
        "q": query.search,
        "status": query.status or "",
        "code": query.error_code or "",
        "sort": query.sort,
        "dir": "desc" if query.descending else "asc",
        "page": query.page,
    }
    values.update(change)
    return "/operators?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})


@page
def operator_list(request: Request, user: str) -> Response:
    query = _query(request)
    result = in_transaction(lambda conn: console_store.operator_page(conn, query))
    return render(
        request,
        "operators.html",
        nav="operators",
        result=result,
        query=query,
        statuses=STATUSES,
        url=lambda **c: _list_url(query, **c),
        here=_list_url(query),
        add_errors={},
        add_values={},
    )


def _push_view(conn: Any, op: dict[str, Any]) -> dict[str, Any]:
    """How the operator's changes reach calsync: "off" says why there is no push."""
    current = settings_store.load(conn)
    if not current.notification_url:
        return {"mode": "off"}
    # EWS push or Graph change notifications: the same facts, plus what only one of them has
    # (StatusFrequency; expiry and renewals).
    kind = "graph" if (op["source"] or current.source.value) == "graph" else "ews"
    return {"mode": "push", "kind": kind, **console_store.push_detail(conn, op["id"])}


def _detail(conn: Any, operator_id: int) -> dict[str, Any] | None:
    op = console_store.operator_by_id(conn, operator_id)
    if op is None:
        return None
    return {
        "op": op,
        "runs": console_store.last_runs(conn, operator_id),
        "episode": console_store.open_episode(conn, operator_id),
        "push": _push_view(conn, op),
    }


@page
def operator_detail(request: Request, user: str) -> Response:
    operator_id = int(request.path_params["operator_id"])

    data = in_transaction(lambda conn: _detail(conn, operator_id))
    if data is None:
        return render(request, "error.html", status_code=404, title="No such operator",
                      message=f"There is no operator with id {operator_id}; it may have been deleted.")  # fmt: skip
    op = data["op"]
    failure = lookup(op["last_error_code"]) if op["last_error_code"] else None
    return render(request, "operator.html", nav="operators", failure=failure, email_error=None, **data)


def _one(conn: Any, operator_id: int) -> str:
    emails = console_store.emails_of(conn, [operator_id])
    if operator_id not in emails:
        raise OperatorError(f"no operator with id {operator_id}; it may have been deleted")
    return emails[operator_id]


def _back(form: FormData, default: str) -> str:
    return safe_next(str(form.get("back", "")), default)


def toggle(request: Request, form: FormData, user: str) -> Response:
    operator_id = int(request.path_params["operator_id"])
    enabled = form.get("calendar_sync") == "on"

    def work(conn: Any) -> tuple[str, int]:
        email = _one(conn, operator_id)
        changed = store.set_calendar_sync(conn, [operator_id], enabled)
        audited(user, "operators.enable" if enabled else "operators.disable", email)(conn)
        return email, changed

    try:
        email, changed = in_transaction(work)
    except OperatorError as exc:
        flash(request, str(exc), "error")
    else:
        state = "on" if enabled else "off"
        flash(
            request,
            f"Calendar Sync {state} for {email}." if changed else f"Calendar Sync was already {state} for {email}.",
        )
    return redirect(_back(form, f"/operators/{operator_id}"))


def bulk(request: Request, form: FormData, user: str) -> Response:
    back = _back(form, "/operators")
    verb = form.get("do")
    try:
        ids = sorted({int(str(v)) for v in form.getlist("ids")})
    except ValueError:
        ids = []
    if verb not in ("enable", "disable") or not ids:
        flash(request, "Select at least one operator, then choose Enable or Disable.", "error")
        return redirect(back)
    enabled = verb == "enable"

    def work(conn: Any) -> int:
        found = console_store.emails_of(conn, ids)
        missing = [i for i in ids if i not in found]
        if missing:  # all or nothing, like `calsync operators enable`
            raise OperatorError(f"{len(missing)} selected operator(s) no longer exist; nothing changed")
        changed = store.set_calendar_sync(conn, ids, enabled)
        audited(user, f"operators.{verb}", f"{len(ids)} operators", emails=sorted(found.values()))(conn)
        return changed

    try:
        changed = in_transaction(work)
    except OperatorError as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, f"{verb.capitalize()}d {changed} operator(s); {len(ids) - changed} already {verb}d.")
    return redirect(back)


def add(request: Request, form: FormData, user: str) -> Response:
    email = str(form.get("email", "")).strip()
    name = str(form.get("name", "")).strip()
    sync = form.get("calendar_sync") == "on"
    problem = email_problem(email)
    if problem is None:

        def work(conn: Any) -> store.Operator:
            op = store.add(conn, email, name, sync)
            audited(user, "operators.add", op.email, calendar_sync=sync, name=name)(conn)
            return op

        try:
            op = in_transaction(work)
        except OperatorError as exc:
            problem = str(exc)
        else:
            flash(request, f"Added {op.email} (Calendar Sync {'on' if op.calendar_sync else 'off'}).")
            return redirect(f"/operators/{op.id}")
    query = console_store.OperatorQuery(per_page=PER_PAGE)
    result = in_transaction(lambda conn: console_store.operator_page(conn, query))
    return render(
        request, "operators.html", status_code=400, nav="operators", result=result, query=query,
        statuses=STATUSES, url=lambda **c: _list_url(query, **c), here=_list_url(query),
        add_errors={"email": problem}, add_values={"email": email, "name": name, "calendar_sync": sync},
    )  # fmt: skip


def change(request: Request, form: FormData, user: str) -> Response:
    operator_id = int(request.path_params["operator_id"])
    new_email = str(form.get("email", "")).strip()
    name = str(form.get("name", "")).strip()
    problem = email_problem(new_email)
    if problem is None:

        def work(conn: Any) -> store.Operator:
            email = _one(conn, operator_id)
            op = store.update(conn, email, name, new_email)
            audited(user, "operators.update", email, email=new_email, name=name)(conn)
            return op

        try:
            op = in_transaction(work)
        except OperatorError as exc:
            problem = str(exc)
        else:
            flash(request, f"Saved {op.email}.")
            return redirect(f"/operators/{operator_id}")
    data = in_transaction(lambda conn: _detail(conn, operator_id))
    if data is None:
        return redirect("/operators")
    failure = lookup(data["op"]["last_error_code"]) if data["op"]["last_error_code"] else None
    return render(request, "operator.html", status_code=400, nav="operators", failure=failure, email_error=problem,
                  new_email=new_email, **data)  # fmt: skip


@page
def disable_confirm(request: Request, user: str) -> Response:
    operator_id = int(request.path_params["operator_id"])
    op = in_transaction(lambda conn: console_store.operator_by_id(conn, operator_id))
    if op is None:
        return redirect("/operators")
    return render(request, "disable.html", nav="operators", op=op)


def disable(request: Request, form: FormData, user: str) -> Response:
    operator_id = int(request.path_params["operator_id"])
    purge = form.get("purge") == "on"

    def work(conn: Any) -> tuple[str, int, int | None]:
        email = _one(conn, operator_id)
        changed = store.set_calendar_sync(conn, [operator_id], False)
        deleted = store.purge(conn, [operator_id]) if purge else None
        audited(user, "operators.disable", email, purge=purge, appointments_deleted=deleted)(conn)
        return email, changed, deleted

    try:
        email, _changed, deleted = in_transaction(work)
    except OperatorError as exc:
        flash(request, str(exc), "error")
        return redirect("/operators")
    text = f"Calendar Sync off for {email}."
    if deleted is not None:
        text += f" Purged {deleted} appointment(s) and reset its sync state."
    flash(request, text)
    return redirect(f"/operators/{operator_id}")


def sync_now(request: Request, form: FormData, user: str) -> Response:
    operator_id = int(request.path_params["operator_id"])
    started = dt.datetime.now(dt.UTC)

    def work(conn: Any) -> tuple[str, bool]:
        email = _one(conn, operator_id)
        due = lifecycle.request_sync(conn, [email])
        if due:
            audited(user, "operators.sync_now", email)(conn)
        return email, bool(due)

    try:
        email, due = in_transaction(work)
    except OperatorError as exc:
        flash(request, str(exc), "error")
        return redirect("/operators")
    if not due:
        flash(request, f"{email} has Calendar Sync off; switch it on first.", "error")
    else:
        try:
            broker.send_dispatch_tick(started.isoformat())
            flash(request, f"{email} is due now; a dispatcher tick was sent.")
        except Exception as exc:
            flash(request, f"{email} is due now; it syncs at the next tick (the broker did not take the request: "
                           f"{type(exc).__name__}).", "error")  # fmt: skip
    return redirect(f"/operators/{operator_id}")


# --- import wizard ---


@page
def import_form(request: Request, user: str) -> Response:
    return render(request, "import.html", nav="operators", error=None)


def _parse(data: bytes, filename: str) -> ParsedFile:
    return parse_operators_csv(data, source=filename)


def _dry_run(parsed: ParsedFile) -> ImportResult:
    """import_rows(dry_run=True) on a transaction that is always rolled back: nothing is written."""
    with pool().connection() as conn, conn.transaction() as tx:
        result = store.import_rows(conn, parsed.rows, dry_run=True)
        raise psycopg.Rollback(tx)
    return result


def import_preview(request: Request, form: FormData, user: str) -> Response:
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return render(request, "import.html", status_code=400, nav="operators", error="Choose a CSV file to upload.")
    data = upload.file.read()
    filename = upload.filename
    try:
        parsed = _parse(data, filename)
    except CsvFileError as exc:
        return render(request, "import.html", status_code=400, nav="operators", error=str(exc))
    result = _dry_run(parsed)
    return render(
        request, "import_preview.html", nav="operators", parsed=parsed, result=result, filename=filename,
        payload=base64.b64encode(data).decode("ascii"),
        changes=[c for c in result.changes if c.action != "unchanged"][:PREVIEW_ROWS],
        preview_rows=PREVIEW_ROWS,
    )  # fmt: skip


def import_confirm(request: Request, form: FormData, user: str) -> Response:
    filename = str(form.get("filename", "upload.csv"))
    skip = form.get("mode") == "skip"
    try:
        data = base64.b64decode(str(form.get("payload", "")), validate=True)
        parsed = _parse(data, filename)
    except (binascii.Error, CsvFileError) as exc:
        return render(request, "import.html", status_code=400, nav="operators", error=f"The upload could not be read again ({exc}); upload the file again.")  # fmt: skip
    if parsed.errors and not skip:
        # The CLI's rule and message: any bad row fails the whole import unless skipping was chosen.
        return render(
            request, "import.html", status_code=400, nav="operators",
            error=f"{filename}: {len(parsed.bad_lines)} bad row(s), nothing imported; fix them, or choose "
            "to skip the bad rows and import the other rows",
        )  # fmt: skip

    def work(conn: Any) -> ImportResult:
        result = store.import_rows(conn, parsed.rows)
        audited(user, "operators.import", filename, new=result.new, updated=result.updated,
                unchanged=result.unchanged, skipped_lines=parsed.bad_lines)(conn)  # fmt: skip
        return result

    result = in_transaction(work)
    summary = f"Imported {filename}: {result.new} new, {result.updated} updated, {result.unchanged} unchanged"
    if parsed.errors:
        summary += f", {len(parsed.bad_lines)} bad row(s) skipped (line {', '.join(map(str, parsed.bad_lines))})"
    if result.disabled or result.enabled:
        summary += f"; sync {result.disabled} stopped, {result.enabled} restarted"
    flash(request, summary + ".")
    return redirect("/operators")
