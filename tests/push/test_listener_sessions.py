"""The listener's two kinds of Postgres session, against real Postgres.

Keep-alives are recorded on sessions with synchronous_commit off (a crash can lose only how
recently a subscription was heard); change notifications, whose record is the durable trace
of a pending sync, on sessions that commit durably. The app is built and started in this
process (its pools open, nothing is served), and each group's own connection is asked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from calsync.listener.app import GROUP_KEY, KEEPALIVE_KEY, build_app


async def _settings(database_url: str, redis_url: str) -> dict[str, str]:
    app = build_app(database_url, redis_url, redis_url, pool_size=2)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the app's cleanup context: the pools open
    try:
        out = {}
        for name, key in (("changes", GROUP_KEY), ("keepalives", KEEPALIVE_KEY)):
            async with app[key].pool.connection() as conn:
                row: Any = await (await conn.execute("SHOW synchronous_commit")).fetchone()
                out[name] = row["synchronous_commit"]
        return out
    finally:
        await runner.cleanup()


def test_keepalives_commit_without_waiting_for_the_disk_and_changes_durably(database_url: str, redis_url: str) -> None:
    settings = asyncio.run(_settings(database_url, redis_url))
    assert settings == {"changes": "on", "keepalives": "off"}
