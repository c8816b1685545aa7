"""Subscribe/Unsubscribe. Push subscriptions are delivered by calsync.simulator.ews.push; pull
and streaming ones are stored only (nothing serves GetEvents/GetStreamingEvents yet)."""

from __future__ import annotations

import base64
import re
import uuid

from calsync.simulator.ews.context import Context, M, T, is_calendar
from calsync.simulator.ews.push import parse_watermark, pusher_for, watermark
from calsync.simulator.ews.soap import error_message, esc, response
from calsync.simulator.mailbox import Subscription, now

_URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")


def _error(code: str, text: str) -> str:
    return response("Subscribe", error_message("Subscribe", code, text))


def handle_subscribe(ctx: Context) -> str:
    body = ctx.request.body
    request = None
    for name in ("PushSubscriptionRequest", "PullSubscriptionRequest", "StreamingSubscriptionRequest"):
        request = body.find(f"{M}{name}")
        if request is not None:
            break
    if request is None:
        return _error("ErrorInvalidSubscriptionRequest", "The subscription request is invalid.")
    push = request.tag == f"{M}PushSubscriptionRequest"
    folders = request.find(f"{T}FolderIds")
    if folders is not None and not all(is_calendar(ctx, f) for f in folders if isinstance(f.tag, str)):
        return _error("ErrorFolderNotFound", "The specified folder could not be found in the store.")
    events = [e.text or "" for e in request.iterfind(f"{T}EventTypes/{T}EventType")]
    if not events:
        return _error("ErrorInvalidSubscriptionRequest", "EventTypes must name at least one event type.")
    frequency_text = request.findtext(f"{T}StatusFrequency")
    try:
        frequency = int(frequency_text or "30")
    except ValueError:
        return _error("ErrorInvalidArgument", "StatusFrequency must be an integer.")
    if push and not 1 <= frequency <= 1440:
        return _error("ErrorInvalidArgument", "StatusFrequency must be 1..1440.")
    url = (request.findtext(f"{T}URL") or "").strip()
    if push and not _URL.match(url):
        return _error("ErrorInvalidPushSubscriptionUrl", "The URL of a push subscription must be an http(s) URL.")
    mbx = ctx.mailbox
    # Schema-valid requests carry t:Watermark; exchangelib 5.6 writes m:Watermark (accepted when
    # validation is off, as a lenient server would).
    mark = request.findtext(f"{T}Watermark") or request.findtext(f"{M}Watermark")
    seq = mbx.log.seq
    if mark:
        resumed = parse_watermark(mbx, mark)
        if resumed is None:
            return _error("ErrorInvalidWatermark", "The watermark used for creating this subscription was not found.")
        seq = resumed
    sub_id = base64.urlsafe_b64encode(uuid.uuid4().bytes + mbx.key.encode()).decode()
    mark = watermark(mbx, seq)
    mbx.subscriptions[sub_id] = Subscription(
        id=sub_id,
        watermark=mark,
        url=url,
        status_frequency=frequency,
        event_types=events,
        folder="calendar",
        created=now(),
    )
    if push:
        pusher_for(ctx.sim).start(mbx, sub_id, seq)
    return response(
        "Subscribe",
        '<m:SubscribeResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:SubscriptionId>{esc(sub_id)}</m:SubscriptionId><m:Watermark>{esc(mark)}</m:Watermark>"
        "</m:SubscribeResponseMessage>",
    )


def handle_unsubscribe(ctx: Context) -> str:
    sub_id = (ctx.request.body.findtext(f"{M}SubscriptionId") or "").strip()
    if ctx.mailbox.subscriptions.pop(sub_id, None) is None:
        return response(
            "Unsubscribe",
            error_message("Unsubscribe", "ErrorSubscriptionNotFound", "The specified subscription was not found."),
        )
    pusher_for(ctx.sim).stop(sub_id, "unsubscribed")
    return response(
        "Unsubscribe",
        '<m:UnsubscribeResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        "</m:UnsubscribeResponseMessage>",
    )
