"""One SyncFolderItems call: a single page of changes, never the whole loop.

exchangelib's folder.sync_items() loops to the end and only then exposes the new state;
calsync needs one page per task so that each page commits with its own SyncState. The
service object itself is driven here for exactly one call.
"""

from __future__ import annotations

import datetime as dt

from exchangelib.fields import FieldPath
from exchangelib.items import CalendarItem
from exchangelib.properties import ItemId
from exchangelib.services import SyncFolderItems

from calsync.sync.model import ChangeKind, ChangeRef, SyncPage

# Cheap properties that let the engine skip fetching items far in the past.
_PAGE_FIELDS = frozenset(FieldPath(field=CalendarItem.get_field_by_fieldname(name)) for name in ("end", "type"))
_KINDS = {"create": ChangeKind.CREATE, "update": ChangeKind.UPDATE, "delete": ChangeKind.DELETE}


def _utc(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return dt.datetime.fromtimestamp(value.timestamp(), tz=dt.UTC)
    return None


def sync_page(account: object, calendar: object, cursor: str | None, max_changes: int) -> SyncPage:
    svc = SyncFolderItems(account=account)
    changes: list[ChangeRef] = []
    for result in svc.call(
        folder=calendar,
        shape="IdOnly",
        additional_fields=_PAGE_FIELDS,
        sync_state=cursor,
        ignore=None,
        max_changes_returned=max_changes,
        sync_scope=None,
    ):
        if isinstance(result, Exception):
            raise result
        change_type, item = result
        kind = _KINDS.get(change_type)
        if kind is None:  # read-flag changes mean nothing to a calendar
            continue
        if kind is ChangeKind.DELETE:
            assert isinstance(item, ItemId)
            changes.append(ChangeRef(kind=kind, item_id=item.id))
        else:
            changes.append(
                ChangeRef(
                    kind=kind,
                    item_id=item.id,
                    change_key=item.changekey,
                    end=_utc(getattr(item, "end", None)),
                    # CalendarItemType, not IsRecurring: Exchange reports IsRecurring false on a master.
                    is_recurring=None if getattr(item, "type", None) is None else item.type != "Single",
                )
            )
    if svc.sync_state is None:
        raise RuntimeError("SyncFolderItems answered without a SyncState")
    return SyncPage(
        changes=tuple(changes),
        sync_state=svc.sync_state,
        includes_last=bool(svc.includes_last_item_in_range),
    )
