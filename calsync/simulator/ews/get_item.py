"""GetItem for calendar items: singles, masters, and occurrences/exceptions by their own ids."""

from __future__ import annotations

import datetime as dt

from calsync.simulator import series
from calsync.simulator.ews.context import Context, M, T
from calsync.simulator.ews.render import parse_shape, render_instance, render_item
from calsync.simulator.ews.soap import error_message, response
from calsync.simulator.mailbox import parse_occurrence_id

_INDEX_HORIZON = dt.timedelta(days=3 * 366)
NOT_FOUND = "The specified object was not found in the store."


def _one(ctx: Context, elem) -> str:
    mbx = ctx.mailbox
    shape = parse_shape(ctx.request.body.find(f"{M}ItemShape"), ctx.version_at_least_2010)
    tag = elem.tag
    xml = None
    if tag == f"{T}ItemId":
        item_id = elem.get("Id") or ""
        item = mbx.items.get(item_id)
        if item is not None:
            xml = render_item(item, shape, ctx.render, ctx.owner)
        else:
            parsed = parse_occurrence_id(item_id)
            master = mbx.items.get(parsed[0]) if parsed else None
            if parsed and master is not None:
                inst = series.instance_at(master, parsed[1])
                if inst is not None:
                    xml = render_instance(inst, shape, ctx.render, ctx.owner)
    elif tag == f"{T}RecurringMasterItemId":
        parsed = parse_occurrence_id(elem.get("OccurrenceId") or "")
        master = mbx.items.get(parsed[0]) if parsed else None
        if master is not None:
            xml = render_item(master, shape, ctx.render, ctx.owner)
    elif tag == f"{T}OccurrenceItemId":
        master = mbx.items.get(elem.get("RecurringMasterId") or "")
        try:
            index = int(elem.get("InstanceIndex") or "0")
        except ValueError:
            index = 0
        if master is not None and master.recurrence is not None and index >= 1:
            # InstanceIndex counts occurrences from the first; three years covers what clients ask for.
            found = series.instances(master, master.start, master.start + _INDEX_HORIZON)
            if index <= len(found):
                xml = render_instance(found[index - 1], shape, ctx.render, ctx.owner)
    if xml is None:
        return error_message("GetItem", "ErrorItemNotFound", NOT_FOUND)
    return (
        '<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:Items>{xml}</m:Items></m:GetItemResponseMessage>"
    )


def handle(ctx: Context) -> str:
    ids = ctx.request.body.find(f"{M}ItemIds")
    messages = [_one(ctx, e) for e in (ids if ids is not None else []) if isinstance(e.tag, str)]
    return response("GetItem", "".join(messages))
