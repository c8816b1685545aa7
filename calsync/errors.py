"""The failure vocabulary every layer shares: what calsync must do about an error, and its code.

Adapters (EWS, later Graph) raise SourceError with a catalogue code; the store records the
code; notify explains it; the throttle reads the server's back-off from it. None of them
imports another for these words, so a second source adds codes, not dependencies.
"""

from __future__ import annotations

from enum import StrEnum


class Disposition(StrEnum):
    TRANSIENT = "transient"  # retry with backoff, honouring the server's hint
    RESYNC = "resync"  # the cursor is unusable: full resync
    OPERATOR = "operator"  # permanent for this mailbox: mark it failed, go on with others
    GLOBAL = "global"  # the service account or endpoint is broken: pause everyone
    ITEM = "item"  # one item cannot be read: it is set aside, the rest of the mailbox syncs


# calsync's own codes (Exchange's response codes are used as they are; see notify/catalogue.py).
UNEXPECTED = "UnexpectedError"
TIME_LIMIT = "TaskTimeLimit"
DATABASE_UNAVAILABLE = "DatabaseUnavailable"
REDIS_UNAVAILABLE = "RedisUnavailable"
INVALID_CURSOR = "ErrorInvalidSyncStateData"
ITEM_WITHOUT_TIMES = "ItemWithoutTimes"
ITEM_UNCONVERTIBLE = "ItemUnconvertible"


class SourceError(Exception):
    """An error from a calendar source with its catalogue code and disposition."""

    def __init__(
        self,
        code: str,
        disposition: Disposition,
        detail: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.disposition = disposition
        self.detail = detail
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said


class InvalidCursor(SourceError):
    def __init__(self, detail: str) -> None:
        super().__init__(INVALID_CURSOR, Disposition.RESYNC, detail)


def unexpected(exc: BaseException) -> SourceError:
    """Any other exception met while syncing one operator (a bug, an answer never seen before).

    It is retried like a transient failure, so it ends in `failed` and an email after the
    notification timeout instead of repeating silently at every lease expiry.
    """
    text = str(exc).strip().replace("\n", " ")
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return SourceError(UNEXPECTED, Disposition.TRANSIENT, detail[:2000])
