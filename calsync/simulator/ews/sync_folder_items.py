"""SyncFolderItems on the calendar: the change log since the client's SyncState, one page at a time."""

from __future__ import annotations

from calsync.simulator.ews.context import Context, Fault, M, T, is_calendar
from calsync.simulator.ews.render import ID_ONLY, parse_shape, render_id_only, render_item
from calsync.simulator.ews.soap import SchemaError, attr, error_message, esc, response, schema_fault
from calsync.simulator.mailbox import CREATE, DELETE, InvalidSyncState

INVALID_SYNC_STATE = "Synchronization state data is corrupt or otherwise invalid."
# Exchange sends these two even on errors; exchangelib reads them before looking at the code.
_ERROR_TAIL = "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"


def invalid_sync_state() -> str:
    return response(
        "SyncFolderItems",
        error_message("SyncFolderItems", "ErrorInvalidSyncStateData", INVALID_SYNC_STATE, extra=_ERROR_TAIL),
    )


def max_changes(ctx: Context) -> int:
    raw = ctx.request.body.findtext(f"{M}MaxChangesReturned")
    try:
        value = int((raw or "").strip())
    except ValueError:
        value = -1
    if not 1 <= value <= 512:
        # The schema type MaxSyncChangesReturnedType is xs:int 1..512; Exchange rejects the request.
        raise Fault(
            schema_fault(
                SchemaError(
                    f"The 'http://schemas.microsoft.com/exchange/services/2006/messages:MaxChangesReturned' element "
                    f"is invalid - The value '{raw}' is invalid according to its datatype "
                    "'http://schemas.microsoft.com/exchange/services/2006/types:MaxSyncChangesReturnedType' - "
                    "The MinInclusive constraint failed."
                    if value < 1
                    else f"The 'http://schemas.microsoft.com/exchange/services/2006/messages:MaxChangesReturned' element "
                    f"is invalid - The value '{raw}' is invalid according to its datatype "
                    "'http://schemas.microsoft.com/exchange/services/2006/types:MaxSyncChangesReturnedType' - "
                    "The MaxInclusive constraint failed.",
                    1,
                    1,
                )
            )
        )
    return value


def handle(ctx: Context) -> str:
    body = ctx.request.body
    limit = max_changes(ctx)
    folder = body.find(f"{M}SyncFolderId")
    target = folder[0] if folder is not None and len(folder) else None
    if target is None or not is_calendar(ctx, target):
        text = "The specified folder could not be found in the store."
        return response(
            "SyncFolderItems", error_message("SyncFolderItems", "ErrorFolderNotFound", text, extra=_ERROR_TAIL)
        )
    mbx = ctx.mailbox
    try:
        base, cursor = mbx.parse_sync_state(body.findtext(f"{M}SyncState"))
    except InvalidSyncState:
        return invalid_sync_state()
    if cursor == mbx.log.seq:  # the common case: nothing changed, O(1)
        return response(
            "SyncFolderItems",
            '<m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"<m:SyncState>{mbx.sync_state(cursor, cursor)}</m:SyncState>"
            "<m:IncludesLastItemInRange>true</m:IncludesLastItemInRange><m:Changes/>"
            "</m:SyncFolderItemsResponseMessage>",
        )
    shape = parse_shape(body.find(f"{M}ItemShape"), ctx.version_at_least_2010)
    changes, new_cursor, complete = mbx.changes_since(base, cursor, limit)
    parts = []
    rctx = ctx.render
    for kind, value in changes:
        if kind == DELETE:
            parts.append(f'<t:Delete><t:ItemId Id="{attr(value)}"/></t:Delete>')
            continue
        tag = "Create" if kind == CREATE else "Update"
        if shape.fields == ID_ONLY:
            xml = render_id_only(value.id, value.change_key)
        else:
            xml = render_item(value, shape, rctx, ctx.owner)
        parts.append(f"<t:{tag}>{xml}</t:{tag}>")
    changes_xml = f"<m:Changes>{''.join(parts)}</m:Changes>" if parts else "<m:Changes/>"
    return response(
        "SyncFolderItems",
        '<m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:SyncState>{esc(mbx.sync_state(new_cursor if complete else base, new_cursor))}</m:SyncState>"
        f"<m:IncludesLastItemInRange>{'true' if complete else 'false'}</m:IncludesLastItemInRange>"
        f"{changes_xml}</m:SyncFolderItemsResponseMessage>",
    )


__all__ = ["T", "handle", "invalid_sync_state"]
