"""At most one pending sync per operator: a Redis key per operator, and one task message.

The first change notification of an operator sets `calsync:push:kick:<id>` (SET NX) and
publishes one `calsync.push_kick` message on its queue (dispatch: a short queue that sync
floods do not delay); every notification while the key exists is coalesced into it. The
task deletes the key before it claims the operator, so a change that arrives while the
sync runs sets it again and gets exactly one more sync. The durable record of a pending
change is push_status.last_event_at in Postgres, written before this: a kick lost with a
killed listener or Redis is found by the sweep (calsync.tasks.push).
"""

from __future__ import annotations

from typing import Any

from calsync import redis_url
from calsync.tasks import names
from calsync.tasks.publish import build_template, render

KICK_TASK = names.PUSH_KICK
KEY_PREFIX = "calsync:push:kick:"
# The key outlives a lost message by this much at most; the sweep covers the rest.
KEY_TTL_MS = 60_000


def kick_key(operator_id: int) -> str:
    return f"{KEY_PREFIX}{operator_id}"


def kick_template() -> dict[str, Any]:
    from calsync.celery import app

    return build_template(app, KICK_TASK)


class Kicker:
    def __init__(self, lock_url: str, broker_url: str, sentinel_master: str = "mymaster") -> None:
        # sentinel:// URLs as everywhere else in calsync: the clients follow the master across failovers.
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
        self.locks = redis_url.async_client(lock_url, sentinel_master, **options)
        self.broker = (
            self.locks if broker_url == lock_url else redis_url.async_client(broker_url, sentinel_master, **options)
        )
        self.template = kick_template()
        self.queue = str(self.template["_queue"])  # celeryconfig routes the kick (the dispatch queue)

    async def kick(self, operator_id: int) -> bool:
        """True when this call started the operator's pending sync; False: coalesced into one."""
        if not await self.locks.set(kick_key(operator_id), b"1", nx=True, px=KEY_TTL_MS):
            return False
        await self.broker.lpush(self.queue, render(self.template, (operator_id,)))
        return True

    async def ping(self) -> None:
        await self.locks.ping()
        if self.broker is not self.locks:
            await self.broker.ping()

    async def close(self) -> None:
        await self.locks.aclose()
        if self.broker is not self.locks:
            await self.broker.aclose()
