"""What the EWS and Graph sides of the listener answer alike: a rejection (counted, with the
reason in the body), and a request body read under a size cap, so that a 10 MB POST is
refused before it is read, whichever protocol it claims to be."""

from __future__ import annotations

from aiohttp import web

from calsync import metrics

# A SendNotification pages its events (MoreEvents) and a Graph POST holds at most 100
# notifications: both are tens of kilobytes.
MAX_BODY = 1024 * 1024


def reject(status: int, reason: str, text: str) -> web.Response:
    metrics.PUSH_REJECTED.labels(reason).inc()
    metrics.PUSH_NOTIFICATIONS.labels("rejected").inc()
    return web.Response(status=status, text=text + "\n")


async def read_body(request: web.Request) -> bytes | web.Response:
    """The body, or the 413 to answer instead."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return reject(413, "too_large", f"request body over {MAX_BODY} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return reject(413, "too_large", f"request body over {MAX_BODY} bytes")
