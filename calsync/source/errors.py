"""Source errors, classified by what calsync must do about them.

Adapters raise these (wrapping the library's exception) so that orchestration code never
imports exchangelib to decide between retry, resync, failing one operator, and pausing all.
"""

from __future__ import annotations

from enum import StrEnum


class Disposition(StrEnum):
    TRANSIENT = "transient"  # retry with backoff, honouring the server's hint
    RESYNC = "resync"  # the cursor is unusable: full resync
    OPERATOR = "operator"  # permanent for this mailbox: mark it failed, go on with others
    GLOBAL = "global"  # the service account or endpoint is broken: pause everyone


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
        super().__init__("ErrorInvalidSyncStateData", Disposition.RESYNC, detail)
