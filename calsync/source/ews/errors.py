"""exchangelib exceptions -> SourceError with a catalogue code and what to do about it.

The mapping is data: one table from exception type to (code, disposition). Anything not
listed is treated as transient, because a wrong "permanent" verdict silently stops a
mailbox while a wrong "transient" one only costs retries until the notification timeout.
"""

from __future__ import annotations

import re
import ssl

import requests
from exchangelib import errors as ex

from calsync.source.errors import Disposition, InvalidCursor, SourceError

_TABLE: tuple[tuple[type[BaseException], str, Disposition], ...] = (
    (ex.ErrorInvalidSyncStateData, "ErrorInvalidSyncStateData", Disposition.RESYNC),
    (ex.ErrorNonExistentMailbox, "ErrorNonExistentMailbox", Disposition.OPERATOR),
    (ex.ErrorImpersonateUserDenied, "ErrorImpersonateUserDenied", Disposition.OPERATOR),
    (ex.ErrorImpersonationFailed, "ErrorImpersonationFailed", Disposition.OPERATOR),
    (ex.ErrorAccessDenied, "ErrorAccessDenied", Disposition.OPERATOR),
    (ex.ErrorMailboxMoveInProgress, "ErrorMailboxMoveInProgress", Disposition.TRANSIENT),
    (ex.ErrorMailboxStoreUnavailable, "ErrorMailboxStoreUnavailable", Disposition.TRANSIENT),
    (ex.ErrorServerBusy, "ErrorServerBusy", Disposition.TRANSIENT),
    (ex.ErrorExceededConnectionCount, "ErrorExceededConnectionCount", Disposition.TRANSIENT),
    (ex.ErrorTooManyObjectsOpened, "ErrorTooManyObjectsOpened", Disposition.TRANSIENT),
    (ex.ErrorTimeoutExpired, "ErrorTimeoutExpired", Disposition.TRANSIENT),
    (ex.ErrorInternalServerTransientError, "ErrorInternalServerTransientError", Disposition.TRANSIENT),
    (ex.ErrorConnectionFailedTransientError, "ErrorConnectionFailedTransientError", Disposition.TRANSIENT),
    (ex.ErrorInvalidServerVersion, "ErrorInvalidServerVersion", Disposition.GLOBAL),
    (ex.UnauthorizedError, "Unauthorized", Disposition.GLOBAL),
    (ex.RateLimitError, "HttpThrottled", Disposition.TRANSIENT),
    (ex.MalformedResponseError, "MalformedResponse", Disposition.TRANSIENT),
    (ex.ErrorInternalServerError, "ErrorInternalServerError", Disposition.TRANSIENT),
)

_STATUS = re.compile(r"\b(429|503|502|504|500)\b")


def classify(exc: BaseException) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    detail = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ex.ErrorInvalidSyncStateData):
        return InvalidCursor(detail)
    for exc_type, code, disposition in _TABLE:
        if isinstance(exc, exc_type):
            back_off = getattr(exc, "back_off", None)
            return SourceError(code, disposition, detail, retry_after=float(back_off) if back_off else None)
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return SourceError("TlsFailure", Disposition.GLOBAL, detail)
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return SourceError("ExchangeUnreachable", Disposition.TRANSIENT, detail)
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
        return SourceError("ExchangeTimeout", Disposition.TRANSIENT, detail)
    if isinstance(exc, ex.TransportError):
        m = _STATUS.search(detail)
        code = (
            {"429": "HttpThrottled", "503": "HttpUnavailable"}.get(m.group(1), "HttpError") if m else "TransportError"
        )
        return SourceError(code, Disposition.TRANSIENT, detail)
    if isinstance(exc, ex.ResponseMessageError):
        return SourceError(type(exc).__name__, Disposition.TRANSIENT, detail)
    return SourceError("UnexpectedError", Disposition.TRANSIENT, f"{type(exc).__name__}: {detail}")
