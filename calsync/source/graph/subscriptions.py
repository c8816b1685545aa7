"""Graph change-notification subscriptions: create, renew, reauthorize, delete.

The four calls Graph documents for `/subscriptions`, with their errors classified for the
push tasks: a 404 on renew, reauthorize or delete means the subscription is gone (lapsed,
removed by Graph), never that the mailbox is; a failed validation handshake and the
per-mailbox subscription limit have codes of their own so that `calsync status` says what
to fix. Every call runs through the app's and the mailbox's fleet-wide slots like reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from calsync.errors import Disposition, SourceError
from calsync.push.renewal import format_expiration, parse_expiration
from calsync.source.graph.client import GraphClient
from calsync.source.graph.errors import GraphHttpError, classify

CHANGE_TYPES = "created,updated,deleted"
T = Disposition.TRANSIENT


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    id: str
    expires_at: dt.datetime


def classify_subscription(exc: GraphHttpError, token: str | None = None) -> SourceError:
    detail = f"HTTP {exc.status} {exc.code}: {exc.message}".strip()[:1000]
    if exc.status == 404 and exc.code in ("ResourceNotFound", "ItemNotFound", "NotFound", "SubscriptionNotFound"):
        return SourceError("GraphSubscriptionNotFound", T, detail)
    if exc.status == 400 and (exc.code == "ValidationError" or "validation request" in exc.message):
        return SourceError("GraphSubscriptionValidationFailed", T, detail)
    if exc.status == 403 and (exc.code == "ExtensionError" or "maximum number of subscriptions" in exc.message):
        return SourceError("GraphSubscriptionLimit", T, detail)
    if exc.status == 400:
        return SourceError("GraphSubscriptionRejected", T, detail)
    return classify(exc, token)


def _subscription(body: Any) -> GraphSubscription:
    try:
        return GraphSubscription(str(body["id"]), parse_expiration(str(body["expirationDateTime"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError("MalformedResponse", T, "Graph's subscription answer lacks id or expirationDateTime") from exc


class GraphSubscriptions:
    def __init__(self, client: GraphClient) -> None:
        self.client = client

    def create(
        self, mailbox: str, notification_url: str, lifecycle_url: str, client_state: str, expires: dt.datetime
    ) -> GraphSubscription:
        """POST /subscriptions on the mailbox's events; Graph validates both URLs before answering."""
        body = {
            "changeType": CHANGE_TYPES,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": "/users/" + quote(mailbox, safe="@.") + "/events",
            "expirationDateTime": format_expiration(expires),
            "clientState": client_state,
        }
        answer = self.client.request("POST", "/subscriptions", json=body, classifier=classify_subscription)
        return _subscription(answer)

    def renew(self, subscription_id: str, expires: dt.datetime) -> dt.datetime:
        """PATCH the expiry; returns the one Graph granted."""
        answer = self.client.request(
            "PATCH",
            "/subscriptions/" + quote(subscription_id, safe=""),
            json={"expirationDateTime": format_expiration(expires)},
            classifier=classify_subscription,
        )
        if not answer:  # a 204 leaves the asked expiry in force
            return expires
        return _subscription(answer).expires_at

    def reauthorize(self, subscription_id: str) -> None:
        self.client.request(
            "POST",
            "/subscriptions/" + quote(subscription_id, safe="") + "/reauthorize",
            classifier=classify_subscription,
        )

    def delete(self, subscription_id: str) -> bool:
        """True when deleted, False when Graph did not know it (gone already: nothing to do)."""
        try:
            self.client.request(
                "DELETE", "/subscriptions/" + quote(subscription_id, safe=""), classifier=classify_subscription
            )
        except SourceError as exc:
            if exc.code == "GraphSubscriptionNotFound":
                return False
            raise
        return True
