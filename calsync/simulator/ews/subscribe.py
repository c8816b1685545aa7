"""Subscribe/Unsubscribe: push (and pull/streaming) subscriptions are stored; nothing is POSTed yet."""

from __future__ import annotations

import base64
import uuid

from calsync.simulator.ews.context import Context, M, T, is_calendar
from calsync.simulator.ews.soap import error_message, esc, response
from calsync.simulator.mailbox import Subscription, now


def handle_subscribe(ctx: Context) -> str:
    body = ctx.request.body
    request = None
    for name in ("PushSubscriptionRequest", "PullSubscriptionRequest", "StreamingSubscriptionRequest"):
        request = body.find(f"{M}{name}")
        if request is not None:
            break
    if request is None:
        return response(
            "Subscribe",
            error_message("Subscribe", "ErrorInvalidSubscriptionRequest", "The subscription request is invalid."),
        )
    folders = request.find(f"{T}FolderIds")
    if folders is not None and not all(is_calendar(ctx, f) for f in folders if isinstance(f.tag, str)):
        return response(
            "Subscribe",
            error_message("Subscribe", "ErrorFolderNotFound", "The specified folder could not be found in the store."),
        )
    events = [e.text or "" for e in request.iterfind(f"{T}EventTypes/{T}EventType")]
    frequency = int(request.findtext(f"{T}StatusFrequency") or "30")
    if request.tag == f"{M}PushSubscriptionRequest" and not 1 <= frequency <= 1440:
        return response(
            "Subscribe",
            error_message(
                "Subscribe",
                "ErrorInvalidArgument",
                "StatusFrequency must be 1..1440.",
            ),
        )
    mbx = ctx.mailbox
    sub_id = base64.b64encode(uuid.uuid4().bytes + mbx.key.encode()).decode()
    watermark = base64.b64encode(f"{mbx.key}:{mbx.log.seq}".encode()).decode()
    mbx.subscriptions[sub_id] = Subscription(
        id=sub_id,
        watermark=watermark,
        url=(request.findtext(f"{T}URL") or "").strip(),
        status_frequency=frequency,
        event_types=events,
        folder="calendar",
        created=now(),
    )
    return response(
        "Subscribe",
        '<m:SubscribeResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:SubscriptionId>{esc(sub_id)}</m:SubscriptionId><m:Watermark>{esc(watermark)}</m:Watermark>"
        "</m:SubscribeResponseMessage>",
    )


def handle_unsubscribe(ctx: Context) -> str:
    sub_id = (ctx.request.body.findtext(f"{M}SubscriptionId") or "").strip()
    if ctx.mailbox.subscriptions.pop(sub_id, None) is None:
        return response(
            "Unsubscribe",
            error_message("Unsubscribe", "ErrorSubscriptionNotFound", "The specified subscription was not found."),
        )
    return response(
        "Unsubscribe",
        '<m:UnsubscribeResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        "</m:UnsubscribeResponseMessage>",
    )
