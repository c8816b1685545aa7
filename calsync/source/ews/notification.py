"""Reading Exchange's SendNotification and writing the listener's SendNotificationResult.

exchangelib's `services.SendNotification` does both (parse, ok_payload, unsubscribe_payload),
and the answers here are its bytes, built once. Its parser is not used per request: measured
on this machine it parses about 2,000 notifications a second on one core (it builds full
event objects with parsed timestamps), which is the listener's whole budget, and it fails
with AttributeError on a response message of class Error. This reader takes only what the
listener needs (subscription id, watermarks, whether anything changed) with one lxml parse
that refuses DTDs and entities; tests/push/test_notification_parse.py checks that it agrees
with exchangelib's parser on the same bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchangelib.services import SendNotification
from lxml import etree

NS_SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"
STATUS_EVENT = f"{T}StatusEvent"
CHANGE_EVENTS = frozenset(
    f"{T}{name}"
    for name in (
        "CopiedEvent",
        "CreatedEvent",
        "DeletedEvent",
        "ModifiedEvent",
        "MovedEvent",
        "NewMailEvent",
        "FreeBusyChangedEvent",
    )
)

_service = SendNotification(protocol=None)
OK_ANSWER: bytes = _service.ok_payload()
UNSUBSCRIBE_ANSWER: bytes = _service.unsubscribe_payload()

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


class BadNotification(ValueError):
    """The body is not a SendNotification calsync can act on; str() says what is wrong."""


@dataclass(frozen=True, slots=True)
class Notification:
    subscription_id: str
    previous_watermark: str | None
    more_events: bool
    changes: int  # events other than StatusEvent (an Error message counts as one: sync to be sure)
    watermark: str | None  # the newest watermark in the body


def parse(body: bytes) -> Notification:
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadNotification(f"not well-formed XML: {exc}") from exc
    if root.getroottree().docinfo.doctype:
        raise BadNotification("a DOCTYPE is not allowed")
    if root.tag != f"{NS_SOAP}Envelope":
        raise BadNotification(f"expected a SOAP Envelope, got {root.tag}")
    body_elem = root.find(f"{NS_SOAP}Body")
    if body_elem is None or not len(body_elem):
        raise BadNotification("no SOAP Body")
    send = body_elem[0]
    if send.tag != f"{M}SendNotification":
        raise BadNotification(f"expected m:SendNotification, got {send.tag}")
    messages = send.findall(f"{M}ResponseMessages/{M}SendNotificationResponseMessage")
    if not messages:
        raise BadNotification("no SendNotificationResponseMessage")
    sub_id: str | None = None
    previous: str | None = None
    more = False
    changes = 0
    watermark: str | None = None
    for message in messages:
        note = message.find(f"{M}Notification")
        if message.get("ResponseClass") != "Success":
            changes += 1  # Exchange could not say what changed: sync to be sure
        if note is None:
            continue
        this_id = (note.findtext(f"{T}SubscriptionId") or "").strip()
        if not this_id:
            raise BadNotification("a Notification without SubscriptionId")
        if sub_id is not None and this_id != sub_id:
            raise BadNotification("notifications of two subscriptions in one body")
        sub_id = this_id
        if previous is None:
            previous = note.findtext(f"{T}PreviousWatermark")
        more = more or (note.findtext(f"{T}MoreEvents") or "").strip().lower() == "true"
        for event in note:
            if event.tag == STATUS_EVENT or event.tag in CHANGE_EVENTS:
                if event.tag != STATUS_EVENT:
                    changes += 1
                mark = event.findtext(f"{T}Watermark")
                if mark:
                    watermark = mark.strip()
    if sub_id is None:
        raise BadNotification("no Notification with a SubscriptionId")
    return Notification(sub_id, previous, more, changes, watermark)
