"""The callback URL of one subscription, with its secret as the last path segment.

Exchange POSTs every notification of a subscription to the URL given at Subscribe, so a
secret in the URL proves that a notification comes from the party the URL was given to.
One secret per subscription: a superseded subscription's URL stays recognisable (answer
Unsubscribe) and a leaked URL is worth one subscription. Only its sha256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from urllib.parse import urlsplit

SECRET_BYTES = 24
_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def callback_url(notification_url: str, secret: str) -> str:
    """notification_url (query and fragment not allowed) + "/" + secret."""
    return notification_url.rstrip("/") + "/" + secret


def secret_of(path: str) -> str | None:
    """The secret in a request path (its last segment), or None when it cannot be one."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if len(last) < 16 or len(last) > 128 or not set(last) <= _ALPHABET:
        return None
    return last


def check_notification_url(url: str) -> str | None:
    """Why `url` cannot carry a secret as its last segment, or None when it can."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        return "must have no ?query or #fragment (the listener's secret is appended to its path)"
    return None


# Graph change notifications use the same notification_url with a path segment before the
# secret (one secret serves both URLs of a subscription; the segment says which URL it is).
GRAPH_CHANGE = "graph"
GRAPH_LIFECYCLE = "graph-lifecycle"


def graph_urls(notification_url: str, secret: str) -> tuple[str, str]:
    """(notificationUrl, lifecycleNotificationUrl) of a Graph subscription."""
    base = notification_url.rstrip("/")
    return f"{base}/{GRAPH_CHANGE}/{secret}", f"{base}/{GRAPH_LIFECYCLE}/{secret}"


def graph_kind(path: str) -> str | None:
    """GRAPH_CHANGE or GRAPH_LIFECYCLE when the path is a Graph callback's, else None."""
    parts = path.rstrip("/").rsplit("/", 2)
    if len(parts) == 3 and parts[1] in (GRAPH_CHANGE, GRAPH_LIFECYCLE):
        return parts[1]
    return None
