"""Group commit: the notifications that arrive while a statement runs share the next one.

Per notification the listener's work is one parse, one Postgres statement and, for a
change, a Redis round trip; the statement's round trip and psycopg's per-statement cost
were most of its CPU. Here a change notification waits for no timer: the first one goes to
Postgres at once, and those that arrive while its statement is in flight are recorded
together by the next (calsync.store.push.hear_many, one statement, one round trip). Every
answer still comes from the database, after the statement that recorded the notification
has committed; nothing is cached. Under light load a batch is one notification, as before.

Two statements may be in flight at once, so that one waiting on a row lock does not stall
the listener; one subscription never appears twice in a statement (the later notification
goes into the next one, in arrival order).

Keep-alives (StatusEvents) may also linger: alone, as they come at 55 a second for 100,000
mailboxes, each paid a Postgres statement and the wakeups around it (measured: 1.1 ms of
Postgres CPU and about 1 ms of the listener's, as much as the HTTP request itself). With `linger`,
the first of them waits up to that long for company, and a batch of `linger_batch` goes at
once, so a load of closed-loop senders never waits on the timer. Nobody waits for a
keep-alive's answer but Exchange, whose timeout is far longer; change notifications never
linger (their group is built without it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool

from calsync.store import push

MAX_BATCH = 256
MAX_IN_FLIGHT = 2
LINGER_BATCH = 8


class GroupCommit:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        max_batch: int = MAX_BATCH,
        in_flight: int = MAX_IN_FLIGHT,
        linger: float = 0.0,
        linger_batch: int = LINGER_BATCH,
    ):
        self.pool = pool
        self.max_batch = max_batch
        self.max_in_flight = in_flight
        self.linger = linger
        self.linger_batch = linger_batch
        self.pending: list[tuple[push.Notice, asyncio.Future[push.Heard]]] = []
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None

    async def hear(self, notice: push.Notice) -> push.Heard:
        fut: asyncio.Future[push.Heard] = asyncio.get_running_loop().create_future()
        self.pending.append((notice, fut))
        if self.in_flight < self.max_in_flight:
            if self.linger <= 0 or len(self.pending) >= self.linger_batch:
                self._start()
            elif self.timer is None:
                self.timer = asyncio.get_running_loop().call_later(self.linger, self._lingered)
        return await fut

    def _lingered(self) -> None:
        self.timer = None
        if self.pending and self.in_flight < self.max_in_flight:
            self._start()

    def _start(self) -> None:
        self.close()  # the batch goes now: no timer left to start another
        self.in_flight += 1
        task = asyncio.create_task(self._drain())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        """Cancel the linger timer (at shutdown, or when a batch goes before it fires)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _take(self) -> list[tuple[push.Notice, asyncio.Future[push.Heard]]]:
        batch: list[tuple[push.Notice, asyncio.Future[push.Heard]]] = []
        rest: list[tuple[push.Notice, asyncio.Future[push.Heard]]] = []
        seen: set[bytes] = set()
        for item in self.pending:
            if len(batch) < self.max_batch and item[0].secret_hash not in seen:
                seen.add(item[0].secret_hash)
                batch.append(item)
            else:
                rest.append(item)
        self.pending = rest
        return batch

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch = self._take()
                try:
                    async with self.pool.connection() as conn:
                        heard = await push.hear_many(conn, [n for n, _ in batch])
                except BaseException as exc:
                    # Those notifications get no answer (500): Exchange sends them again.
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, fut), h in zip(batch, heard, strict=True):
                    if not fut.done():
                        fut.set_result(h)
        finally:
            self.in_flight -= 1
