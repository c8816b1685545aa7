"""A wall-clock deadline for a whole HTTP exchange with Exchange, enforced under any worker pool.

requests' timeout bounds each socket read, not the response: a server (or a proxy) that sends
one byte every minute keeps a thread forever. Celery's time limits do not help under
`-P threads` (they are not enforced there). So every request gets a ticket with a deadline,
and one watchdog thread per process shuts the request's socket down when the deadline
passes. A blocked read anywhere (status line, headers, body) then returns at once, and the
adapter turns the error into ResponseTimeout.

The socket is found through the connection pool: `_get_conn` hands each connection to the
ticket of the thread that asked for it (thread-local), so no request ever sees another's
socket.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class Ticket:
    """One request's deadline; `fired` tells the adapter that the watchdog cut the request."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self.done = False
        self._conn: Any = None
        self._lock = threading.Lock()

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conn = conn
            if self.fired:
                _shutdown(conn)

    def expire(self) -> bool:
        """Cut the request; False while its connection has no socket yet (still connecting)."""
        with self._lock:
            if self.done:
                return True
            self.fired = True
            return _shutdown(self._conn)


def _shutdown(conn: Any) -> bool:
    """Shut the socket down under the blocked reader; for TLS, below the SSL layer (thread-safe)."""
    sock = getattr(conn, "sock", None)
    if sock is None:
        return False
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
    return True


class _Watchdog:
    """One daemon thread per process, waking at the earliest open deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, ticket: Ticket) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._heap = []
                self._thread = threading.Thread(target=self._run, name="calsync-ews-deadline", daemon=True)
                self._pid = os.getpid()
                self._thread.start()
            heapq.heappush(self._heap, (ticket.deadline, next(self._seq), ticket))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, ticket = self._heap[0]
                now = time.monotonic()
                if when > now:
                    self._cond.wait(when - now)
                    continue
                heapq.heappop(self._heap)
            if not ticket.expire():  # connecting (bounded by the connect timeout): look again soon
                with self._cond:
                    heapq.heappush(self._heap, (time.monotonic() + 0.2, next(self._seq), ticket))


_watchdog = _Watchdog()


def start(seconds: float) -> Ticket:
    """A ticket for the calling thread's next request, already watched."""
    ticket = Ticket(seconds)
    _local.ticket = ticket
    _watchdog.watch(ticket)
    return ticket


def finish(ticket: Ticket) -> None:
    with ticket._lock:
        ticket.done = True
        ticket._conn = None  # the heap keeps finished tickets until their deadline: not their sockets
    if getattr(_local, "ticket", None) is ticket:
        _local.ticket = None


class _Attach:
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        ticket = getattr(_local, "ticket", None)
        if ticket is not None:
            ticket.attach(conn)
        return conn


class DeadlineHTTPPool(_Attach, HTTPConnectionPool):
    pass


class DeadlineHTTPSPool(_Attach, HTTPSConnectionPool):
    pass


POOL_CLASSES = {"http": DeadlineHTTPPool, "https": DeadlineHTTPSPool}
