"""FindItem on the calendar: a CalendarView expands series into occurrences and exceptions."""

from __future__ import annotations

import datetime as dt

from calsync.simulator.core import MAX_VIEW
from calsync.simulator.ews.context import Context, M, T, is_calendar
from calsync.simulator.ews.render import parse_shape, render_instance, render_item
from calsync.simulator.ews.soap import error_message, response

#: EWSFindCountLimit of the default throttling policy: a CalendarView returns at most this many.
FIND_COUNT_LIMIT = 1000


def _time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _error(code: str, text: str) -> str:
    return response("FindItem", error_message("FindItem", code, text))


def handle(ctx: Context) -> str:
    body = ctx.request.body
    parents = body.find(f"{M}ParentFolderIds")
    if parents is None or not len(parents) or not all(is_calendar(ctx, p) for p in parents):
        return _error("ErrorFolderNotFound", "The specified folder could not be found in the store.")
    shape = parse_shape(body.find(f"{M}ItemShape"), ctx.version_at_least_2010)
    view = body.find(f"{M}CalendarView")
    mbx = ctx.mailbox
    rctx = ctx.render
    if view is None:
        # A plain (unexpanded) FindItem: singles and masters, optionally paged.
        items = sorted(mbx.items.values(), key=lambda i: (i.start, i.id))
        paging = body.find(f"{M}IndexedPageItemView")
        offset, limit = 0, len(items)
        if paging is not None:
            offset = int(paging.get("Offset", "0"))
            limit = int(paging.get("MaxEntriesReturned", str(len(items))))
        chunk = items[offset : offset + limit]
        last = offset + len(chunk) >= len(items)
        xml = "".join(render_item(i, shape, rctx, ctx.owner) for i in chunk)
        return _ok(xml, len(items), last, offset + len(chunk) if not last else None)
    start, end = _time(view.get("StartDate")), _time(view.get("EndDate"))
    if start is None or end is None:
        return _error("ErrorInvalidRequest", "The request is invalid.")
    if end < start:
        return _error("ErrorCalendarEndDateIsEarlierThanStartDate", "EndDate is earlier than StartDate")
    if end - start > MAX_VIEW:
        return _error("ErrorCalendarViewRangeTooBig", "The time span between StartDate and EndDate is too long.")
    max_entries = view.get("MaxEntriesReturned")
    found = ctx.sim.instances(mbx, start, end)
    cap = min(int(max_entries), FIND_COUNT_LIMIT) if max_entries else FIND_COUNT_LIMIT
    page = found[:cap]
    xml = "".join(render_instance(i, shape, rctx, ctx.owner, find=True) for i in page)
    return _ok(xml, len(found), len(page) == len(found), None)


def _ok(items_xml: str, total: int, last: bool, next_offset: int | None) -> str:
    paging = f' IndexedPagingOffset="{next_offset}"' if next_offset is not None else ""
    items = f"<t:Items>{items_xml}</t:Items>" if items_xml else "<t:Items/>"
    return response(
        "FindItem",
        '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f'<m:RootFolder{paging} TotalItemsInView="{total}" IncludesLastItemInRange="{"true" if last else "false"}">'
        f"{items}</m:RootFolder></m:FindItemResponseMessage>",
    )


__all__ = ["T", "handle"]
