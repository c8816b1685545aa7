"""One Subscribe call: a push subscription on the calendar folder.

exchangelib's `Folder.subscribe_to_push` is the model, with two differences:

- StatusFrequency is always given (exchangelib defaults to 1 minute, which leaves Exchange
  about one minute of retries before it drops the subscription);
- the resume Watermark goes out as `t:Watermark`. exchangelib 5.6 writes `m:Watermark`
  (services/subscribe.py), which Microsoft's schema (BaseSubscriptionRequestType in
  types.xsd) does not allow: a server that validates requests refuses it.
"""

from __future__ import annotations

from typing import Any

from exchangelib.services.common import add_xml_child
from exchangelib.services.subscribe import SubscribeToPush
from exchangelib.util import create_element

# Calendar changes only; NewMailEvent and FreeBusyChangedEvent mean nothing to a calendar.
EVENT_TYPES = ("CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent")


class _SchemaValidSubscribeToPush(SubscribeToPush):
    def get_payload(self, folders: Any, event_types: Any, watermark: Any, status_frequency: Any, url: Any) -> Any:
        payload = create_element(f"m:{self.SERVICE_NAME}")
        request_elem = self._partial_payload(folders=folders, event_types=event_types)
        if watermark:
            add_xml_child(request_elem, "t:Watermark", watermark)
        add_xml_child(request_elem, "t:StatusFrequency", status_frequency)
        add_xml_child(request_elem, "t:URL", url)
        payload.append(request_elem)
        return payload


def subscribe_push(
    account: Any, calendar: Any, url: str, watermark: str | None, status_frequency: int
) -> tuple[str, str]:
    """(subscription id, watermark) of a new push subscription to `calendar`."""
    if not 1 <= status_frequency <= 1440:
        raise ValueError(f"status_frequency must be 1..1440 minutes, not {status_frequency}")
    svc = _SchemaValidSubscribeToPush(account=account)
    for result in svc.call(
        folders=[calendar], event_types=EVENT_TYPES, watermark=watermark, status_frequency=status_frequency, url=url
    ):
        if isinstance(result, Exception):
            raise result
        subscription_id, new_watermark = result
        if not subscription_id:
            raise RuntimeError("Subscribe answered without a SubscriptionId")
        return str(subscription_id), str(new_watermark or "")
    raise RuntimeError("Subscribe answered no response message")
