"""exchangelib exceptions -> SourceError with a catalogue code and what to do about it.

The mapping is data: one table from exception type to (code, disposition). Anything not
listed is treated as transient, because a wrong "permanent" verdict silently stops a
mailbox while a wrong "transient" one only costs retries until the notification timeout.

`retry_after` is set only when the *server* asked for a wait, because calsync.throttle
turns it into a pause for every worker of the service account:

- ErrorServerBusy in a SOAP Fault: exchangelib parses BackOffMilliseconds itself.
- ErrorServerBusy in a response message: exchangelib drops the MessageXml and substitutes its
  own 10 s; `install_back_off_parser` reads BackOffMilliseconds from it.
- HTTP 503 and 429: exchangelib's FailFast loses the response (503) or does not know the
  status (429); `ServerHintPolicy` raises HttpStatusError with Retry-After instead.

Waits exchangelib invents ("Reraised from ...", "Caused by ...") are not server hints.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import ssl
from collections.abc import Iterator
from typing import Any

import requests
from exchangelib import errors as ex
from exchangelib.fields import InvalidFieldForVersion
from exchangelib.protocol import FailFast
from exchangelib.services.common import EWSService

from calsync.errors import Disposition, InvalidCursor, SourceError

T, R, OP, G = Disposition.TRANSIENT, Disposition.RESYNC, Disposition.OPERATOR, Disposition.GLOBAL

_TABLE: tuple[tuple[type[BaseException], str, Disposition], ...] = (
    (ex.ErrorInvalidSyncStateData, "ErrorInvalidSyncStateData", R),
    (ex.ErrorNonExistentMailbox, "ErrorNonExistentMailbox", OP),
    (ex.ErrorImpersonateUserDenied, "ErrorImpersonateUserDenied", OP),
    (ex.ErrorImpersonationFailed, "ErrorImpersonationFailed", OP),
    (ex.ErrorAccessDenied, "ErrorAccessDenied", OP),
    (ex.ErrorAccountDisabled, "ErrorAccountDisabled", OP),
    (ex.ErrorCrossSiteRequest, "MailboxMovedAway", OP),
    (ex.RedirectError, "MailboxMovedAway", OP),
    (ex.ErrorInvalidSchemaVersionForMailboxVersion, "ErrorInvalidSchemaVersionForMailboxVersion", OP),
    (ex.ErrorFolderNotFound, "ErrorFolderNotFound", OP),
    (ex.ErrorMailboxMoveInProgress, "ErrorMailboxMoveInProgress", T),
    (ex.ErrorMailboxStoreUnavailable, "ErrorMailboxStoreUnavailable", T),
    (ex.ErrorServerBusy, "ErrorServerBusy", T),
    (ex.ErrorExceededConnectionCount, "ErrorExceededConnectionCount", T),
    (ex.ErrorTooManyObjectsOpened, "ErrorTooManyObjectsOpened", T),
    (ex.ErrorTimeoutExpired, "ErrorTimeoutExpired", T),
    (ex.ErrorInternalServerTransientError, "ErrorInternalServerTransientError", T),
    (ex.ErrorConnectionFailedTransientError, "ErrorConnectionFailedTransientError", T),
    (ex.ErrorInvalidServerVersion, "ErrorInvalidServerVersion", G),
    (ex.UnauthorizedError, "Unauthorized", G),
    (ex.RateLimitError, "HttpThrottled", T),
    (ex.MalformedResponseError, "MalformedResponse", T),
    (ex.ErrorInternalServerError, "ErrorInternalServerError", T),
)

# Below EWS: what a failed connection attempt looks like in requests/urllib3 messages.
_UNREACHABLE = re.compile(
    r"Connection refused|NameResolutionError|Failed to resolve|Name or service not known|nodename nor servname"
    r"|Temporary failure in name resolution|No route to host|Network is unreachable|ConnectTimeout"
    r"|Max retries exceeded .* NewConnectionError",
    re.IGNORECASE,
)
_TLS = re.compile(
    r"SSLError|SSL: |CERTIFICATE_VERIFY_FAILED|certificate verify failed|TLSV1_ALERT|WRONG_VERSION_NUMBER"
)
_RESET = re.compile(
    r"Connection reset|Connection broken|IncompleteRead|RemoteDisconnected|ChunkedEncodingError|closed connection"
    r"|Connection aborted|ProtocolError",
    re.IGNORECASE,
)
_TIMEOUT = re.compile(r"Read timed out|ReadTimeout|timed out", re.IGNORECASE)
_INVENTED = ("Reraised from", "Caused by")


class HttpStatusError(ex.TransportError):
    """HTTP 429 or 503 from Exchange or its load balancer, with the Retry-After it sent."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        self.status = status
        self.retry_after = retry_after
        text = "429 Too Many Requests" if status == 429 else f"{status} Service Unavailable"
        wait = f" (Retry-After {retry_after:g}s)" if retry_after else ""
        super().__init__(f"HTTP {text}{wait}")


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value) or None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return seconds if seconds > 0 else None


class ServerHintPolicy(FailFast):
    """FailFast (the task layer owns back-offs) that keeps the server's Retry-After on 503 and 429."""

    def raise_response_errors(self, response: Any) -> Any:
        if response.status_code in (429, 503):
            raise HttpStatusError(response.status_code, parse_retry_after(response.headers.get("Retry-After")))
        return super().raise_response_errors(response)


_TNS = "{http://schemas.microsoft.com/exchange/services/2006/types}"
_installed = False


def _back_off_from_message_xml(msg_xml: Any) -> float | None:
    if msg_xml is None:
        return None
    for value in msg_xml.iter(f"{_TNS}Value"):
        if value.get("Name") == "BackOffMilliseconds" and value.text and value.text.strip().isdigit():
            return int(value.text.strip()) / 1000.0
    return None


def install_back_off_parser() -> None:
    """Make exchangelib keep BackOffMilliseconds of a response-message-level ErrorServerBusy.

    exchangelib parses the hint only from a SOAP Fault; from a ResponseMessage it builds
    ErrorServerBusy(text) and later fills in its own retry wait. This wraps the one static
    method that sees the MessageXml. Idempotent; checked by tests/failures/test_classify.py.
    """
    global _installed
    if _installed:
        return
    original = EWSService._get_exception

    def _get_exception(code: Any, text: Any, msg_xml: Any = None, rule_errors: Any = None) -> Any:
        exc = original(code=code, text=text, msg_xml=msg_xml, rule_errors=rule_errors)
        if isinstance(exc, ex.ErrorServerBusy):
            hint = _back_off_from_message_xml(msg_xml)
            exc.server_hint = hint
            if hint:
                exc.back_off = hint
        return exc

    EWSService._get_exception = staticmethod(_get_exception)
    _installed = True


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 12:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _server_hint(exc: BaseException) -> float | None:
    if isinstance(exc, HttpStatusError):
        return exc.retry_after
    if not isinstance(exc, ex.ErrorServerBusy):
        return None
    if hasattr(exc, "server_hint"):  # response-message level, read by install_back_off_parser
        hint = exc.server_hint
        return float(hint) if hint else None
    if str(exc).startswith(_INVENTED):
        return None  # exchangelib's own wait after a connection error, not Exchange's
    return float(exc.back_off) if exc.back_off else None


def _network(exc: BaseException, text: str) -> SourceError | None:
    """Failures below EWS, found anywhere in the exception chain (exchangelib re-raises them)."""
    for link in _chain(exc):
        if isinstance(link, requests.exceptions.SSLError | ssl.SSLError):
            return SourceError("TlsFailure", G, text)
        if isinstance(link, requests.exceptions.ConnectTimeout):
            return SourceError("ExchangeUnreachable", G, text)
    if _TLS.search(text):
        return SourceError("TlsFailure", G, text)
    if _UNREACHABLE.search(text):
        return SourceError("ExchangeUnreachable", G, text)
    for link in _chain(exc):
        if isinstance(link, requests.exceptions.ChunkedEncodingError | ConnectionResetError):
            return SourceError("ConnectionReset", T, text)
        if isinstance(link, requests.exceptions.Timeout | TimeoutError):
            return SourceError("ExchangeTimeout", T, text)
    return None


class TruncatedResponse(Exception):
    """An HTTP 200 whose SOAP body is incomplete (see connection.VerifyingAdapter); retried as transient."""


class ResponseTimeout(Exception):
    """No complete answer within the request's deadline; the watchdog closed the connection.

    Not a ConnectionError on purpose: exchangelib would rename it ErrorTimeoutExpired.
    """


class ResponseTooLarge(Exception):
    """An answer beyond CALSYNC_EWS_MAX_RESPONSE_BYTES, refused before it was read whole."""


class MalformedBody(Exception):
    """An HTTP 200 that is not SOAP at all (an HTML page from a proxy)."""


class UnsafeXml(Exception):
    """An answer with a DTD: entity expansion (billion laughs) or an external entity (XXE)."""


# Refusals of the adapter, by what it found; the first in the exception chain decides.
_REFUSED: tuple[tuple[type[BaseException], str], ...] = (
    (ResponseTimeout, "ResponseTimeout"),
    (ResponseTooLarge, "ResponseTooLarge"),
    (MalformedBody, "MalformedResponse"),
    (UnsafeXml, "UnsafeXmlResponse"),
    (TruncatedResponse, "TruncatedResponse"),
)


def _detail(exc: BaseException) -> str:
    text = " | ".join(str(link).strip() or type(link).__name__ for link in _chain(exc))
    return text[:1000]


def classify(exc: BaseException) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    text = _detail(exc)
    first = text.split(" | ", 1)[0].splitlines()[0][:500] if text else type(exc).__name__
    if isinstance(exc, ex.ErrorInvalidSyncStateData):
        return InvalidCursor(first)
    for link in _chain(exc):
        for refused, code in _REFUSED:
            if isinstance(link, refused):
                return SourceError(code, T, str(link)[:500] or first)
    if any(isinstance(link, InvalidFieldForVersion) for link in _chain(exc)):
        # exchangelib fell back to the older version the server speaks, which lacks fields calsync reads.
        return SourceError("ErrorInvalidServerVersion", G, first)
    network = _network(exc, text)
    if network is not None:
        network.detail = first
        return network
    if isinstance(exc, HttpStatusError):
        code = "HttpThrottled" if exc.status == 429 else "HttpUnavailable"
        return SourceError(code, T, first, retry_after=exc.retry_after)
    for exc_type, code, disposition in _TABLE:
        if isinstance(exc, exc_type):
            if code in ("ErrorServerBusy", "ErrorTimeoutExpired") and str(exc).startswith(_INVENTED):
                # exchangelib's name for a dropped or timed-out connection, not Exchange's answer
                code = "ConnectionReset" if _RESET.search(text) else "ExchangeTimeout"
            return SourceError(code, disposition, first, retry_after=_server_hint(exc))
    if _RESET.search(text):
        return SourceError("ConnectionReset", T, first)
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError) or _TIMEOUT.search(text):
        return SourceError("ExchangeTimeout", T, first)
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return SourceError("ConnectionReset", T, first)
    if isinstance(exc, ex.TransportError):
        return SourceError("HttpError" if re.search(r"\b5\d\d\b|\b4\d\d\b", first) else "TransportError", T, first)
    if isinstance(exc, ex.ResponseMessageError):
        return SourceError(type(exc).__name__, T, first)
    return SourceError("UnexpectedError", T, f"{type(exc).__name__}: {first}")
