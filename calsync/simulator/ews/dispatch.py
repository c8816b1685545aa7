"""The EWS request pipeline minus HTTP: parse, check version and mailbox access, run the operation.

The server (server.py) adds what needs the event loop or the socket: authentication, latency,
concurrency accounting and the HTTP-level faults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from calsync.simulator.core import Simulator
from calsync.simulator.ews import find_item, get_folder, get_item, subscribe, sync_folder_items, validation
from calsync.simulator.ews.context import Context, Fault, T
from calsync.simulator.ews.soap import (
    Request,
    SchemaError,
    envelope,
    error_message,
    esc,
    fault,
    parse_request,
    response,
    schema_fault,
    server_busy_fault,
)
from calsync.simulator.mailbox import Mailbox
from calsync.simulator.versions import REQUEST_VERSIONS

HANDLERS: dict[str, Callable[[Context], str]] = {
    "GetFolder": get_folder.handle,
    "SyncFolderItems": sync_folder_items.handle,
    "GetItem": get_item.handle,
    "FindItem": find_item.handle,
    "Subscribe": subscribe.handle_subscribe,
    "Unsubscribe": subscribe.handle_unsubscribe,
}
SERVER_BUSY_TEXT = "The server cannot service this request right now. Try again later."
CONNECTION_COUNT_TEXT = (
    "You have exceeded the available concurrent connections for your account. "
    "Try again once your other requests have completed."
)
_SYNC_TAIL = "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"


@dataclass(slots=True)
class Prepared:
    """A parsed request whose mailbox is known and accessible."""

    request: Request
    mailbox: Mailbox


def parse(sim: Simulator, data: bytes) -> Request:
    request = parse_request(data)
    if sim.validate:
        problem = validation.errors(request.body)
        if problem is not None:
            raise Fault(schema_fault(SchemaError(problem, request.body.sourceline or 0, 0)))
    if request.operation not in HANDLERS:
        raise Fault(
            fault(
                "ErrorInvalidRequest", f"The request is invalid: {request.operation} is not supported by the simulator."
            )
        )
    requested = request.requested_version
    if requested is not None and not sim.version.accepts(requested):
        # Unknown to this server's schema (too new, or not a version at all).
        raise Fault(fault("ErrorInvalidServerVersion", "The specified server version is invalid."))
    return request


def target_mailbox(request: Request, anchor: str | None) -> str | None:
    """Impersonated address, else X-AnchorMailbox, else the Mailbox named in the folder id."""
    if request.impersonated:
        return request.impersonated
    if anchor:
        return anchor
    for elem in request.body.iter(f"{T}EmailAddress"):
        if elem.text:
            return elem.text.strip()
    return None


def resolve(sim: Simulator, request: Request, email: str | None) -> Mailbox:
    mailbox = sim.find_mailbox(email) if email else None
    if mailbox is None:
        raise Fault(
            fault(
                "ErrorNonExistentMailbox",
                "The SMTP address has no mailbox associated with it.",
                f'<t:Value Name="SmtpAddress">{esc(email or "")}</t:Value>',
            )
        )
    if mailbox.impersonation_denied and request.impersonated:
        raise Fault(
            fault(
                "ErrorImpersonateUserDenied", "The account does not have permission to impersonate the requested user."
            )
        )
    return mailbox


def run(sim: Simulator, prepared: Prepared) -> bytes:
    request = prepared.request
    ctx = Context(sim, prepared.mailbox, request, _at_least_2010(sim, request.requested_version))
    with sim.lock:
        body = HANDLERS[request.operation](ctx)
    return envelope(sim.version, body)


def _at_least_2010(sim: Simulator, requested: str | None) -> bool:
    version = requested or sim.version.api_version
    return REQUEST_VERSIONS.index(version) >= REQUEST_VERSIONS.index("Exchange2010")


def message_error(sim: Simulator, operation: str, code: str, text: str, message_xml: str = "") -> bytes:
    tail = _SYNC_TAIL if operation == "SyncFolderItems" else ""
    return envelope(sim.version, response(operation, error_message(operation, code, text, message_xml, tail)))


def server_busy_message(sim: Simulator, operation: str, back_off_ms: int) -> bytes:
    return message_error(
        sim,
        operation,
        "ErrorServerBusy",
        SERVER_BUSY_TEXT,
        f'<t:Value Name="BackOffMilliseconds">{int(back_off_ms)}</t:Value>',
    )


def invalid_sync_state(sim: Simulator) -> bytes:
    return envelope(sim.version, sync_folder_items.invalid_sync_state())


def connection_count_exceeded(sim: Simulator, operation: str) -> bytes:
    return message_error(sim, operation, "ErrorExceededConnectionCount", CONNECTION_COUNT_TEXT)


__all__ = [
    "HANDLERS",
    "Fault",
    "Prepared",
    "connection_count_exceeded",
    "invalid_sync_state",
    "parse",
    "resolve",
    "run",
    "server_busy_fault",
    "server_busy_message",
    "target_mailbox",
]
