"""The faults only Exchange has: its throttling answers, its concurrency budgets, a stale SyncState.

Registered with the neutral fault table on import, so ``POST /admin/faults`` accepts them and
a fault's ``operation`` may name an EWS operation.
"""

from __future__ import annotations

from calsync.simulator import faults

OPERATIONS = ("GetFolder", "SyncFolderItems", "GetItem", "FindItem", "Subscribe", "Unsubscribe")
#: Error answers, checked in this order after the neutral HTTP ones when several fire for one request.
ERROR_KINDS = ("server_busy_fault", "server_busy_message", "invalid_sync_state")
#: Valid answers in a form real Exchange (or a proxy, or a migration tool's items) sometimes has:
#: ``fractional_seconds`` writes every item Start and End with milliseconds
#: (``2014-06-09T04:00:00.000Z``, valid xs:dateTime), which exchangelib cannot parse.
REWRITE_KINDS = ("fractional_seconds",)
#: Not drawn: they refuse requests over ``limit`` concurrent ones, as Exchange's throttling budgets do.
LIMIT_KINDS = ("concurrent_sync_limit", "account_concurrency_limit")

faults.register(
    kinds=(*ERROR_KINDS, *REWRITE_KINDS),
    operations=OPERATIONS,
    limit_kinds=LIMIT_KINDS,
    default_operation={
        "invalid_sync_state": "SyncFolderItems",
        "concurrent_sync_limit": "SyncFolderItems",
        "fractional_seconds": "GetItem",
    },
)
