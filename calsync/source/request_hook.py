"""A per-thread callback run before each HTTP request an adapter sends.

One call to a source (a GetItem of 512 ids) can be several HTTP requests. The fleet-wide cap
(calsync.throttle) holds its slot for one request's deadline at a time and extends it here
before each request, so the slot lives exactly as long as the requests it covers, however
many there are. Adapters call `before_request()`; nothing else needs to know.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()


@contextmanager
def each_request(callback: Callable[[], None]) -> Iterator[None]:
    previous = getattr(_local, "callback", None)
    _local.callback = callback
    try:
        yield
    finally:
        _local.callback = previous


def before_request() -> None:
    callback = getattr(_local, "callback", None)
    if callback is not None:
        callback()
