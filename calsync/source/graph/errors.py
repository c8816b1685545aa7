"""Graph's HTTP errors as catalogue entries (code, disposition, detail, Retry-After).

Graph answers 403 ErrorAccessDenied both when the app lacks admin consent and when an RBAC
for Applications scope leaves a mailbox out. Both fail the operator alone, never pause
everyone: with RBAC for Applications the token carries no Calendars role by design, so one
mailbox outside the scope must not stop the others. A revoked consent therefore fails every
operator once, and the failure digest gathers them in one email. The token's `roles` claim
only chooses the text: without a Calendars role the likely cause is consent (or the scope),
with one it is an application access policy or scope.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import requests

from calsync.errors import Disposition, InvalidCursor, SourceError
from calsync.source.ews.errors import parse_retry_after

T, R, OP, G = Disposition.TRANSIENT, Disposition.RESYNC, Disposition.OPERATOR, Disposition.GLOBAL

CALENDAR_ROLES = frozenset({"Calendars.Read", "Calendars.ReadBasic.All", "Calendars.ReadWrite", "Calendars.Read.All"})
RESYNC_CODES = frozenset({"syncStateNotFound", "syncStateInvalid", "fullSyncRequired", "resyncRequired"})


class GraphHttpError(Exception):
    """A non-2xx answer from Graph, with what its error body said."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def http_error(response: requests.Response) -> GraphHttpError:
    code, message = "", ""
    try:
        body = response.json()
        err = body.get("error") or {}
        code, message = str(err.get("code") or ""), str(err.get("message") or "")
    except ValueError:
        message = response.text[:300]
    return GraphHttpError(
        response.status_code,
        code or response.reason or "",
        message,
        parse_retry_after(response.headers.get("Retry-After")),
    )


def token_roles(token: str) -> frozenset[str] | None:
    """The `roles` claim of a JWT access token (unverified: only to explain a 403), None if unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return frozenset(str(r) for r in claims.get("roles") or ())
    except (IndexError, ValueError, AttributeError):
        return None


def classify(exc: GraphHttpError, token: str | None = None) -> SourceError:
    status, code = exc.status, exc.code
    detail = f"HTTP {status} {code}: {exc.message}".strip()[:1000]
    if status == 410 or code in RESYNC_CODES:
        return InvalidCursor(detail)
    if status == 429:
        return SourceError("GraphThrottled", T, detail, retry_after=exc.retry_after or 1.0)
    if status == 503:
        return SourceError("GraphUnavailable", T, detail, retry_after=exc.retry_after)
    if status == 504:
        return SourceError("GraphGatewayTimeout", T, detail, retry_after=exc.retry_after)
    if status == 401:
        return SourceError("GraphUnauthorized", G, detail)
    if status == 403:
        if code == "MailboxNotEnabledForRESTAPI" or "not enabled for REST" in exc.message:
            return SourceError("GraphMailboxNotEnabledForRest", OP, detail)
        roles = token_roles(token) if token else None
        if roles is not None and not roles & CALENDAR_ROLES:
            return SourceError("GraphConsentMissing", OP, detail)
        return SourceError("GraphMailboxAccessDenied", OP, detail)
    if status == 404:
        if code in ("ErrorInvalidUser", "ResourceNotFound", "MailboxNotFound") or re.search(
            r"user .* invalid", exc.message
        ):
            return SourceError("GraphMailboxNotFound", OP, detail)
        return SourceError("GraphResourceNotFound", OP, detail)
    if status >= 500:
        return SourceError("GraphServerError", T, detail, retry_after=exc.retry_after)
    return SourceError("GraphRequestRejected", T, detail)


def network_error(exc: requests.RequestException) -> SourceError:
    text = str(exc)[:500]
    if isinstance(exc, requests.exceptions.SSLError):
        return SourceError("TlsFailure", G, text)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return SourceError("GraphUnreachable", G, text)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return SourceError("GraphTimeout", T, text)
    if isinstance(exc, requests.exceptions.ConnectionError) and re.search(
        r"Connection refused|NewConnectionError|Name or service not known|Failed to resolve", text
    ):
        return SourceError("GraphUnreachable", G, text)
    return SourceError("ConnectionReset", T, text)


def describe(value: Any) -> str:
    return json.dumps(value)[:200]
