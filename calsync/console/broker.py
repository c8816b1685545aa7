"""Workers online and queue depths, as `calsync status` shows them; a missing broker is reported, not fatal."""

from __future__ import annotations

from typing import Any

QUEUES = ("dispatch", "sync", "notify")


def broker_view(ping_timeout: float = 1.0) -> dict[str, Any]:
    try:
        import redis

        from calsync.celery import app
        from calsync.config import env

        client = redis.Redis.from_url(env().broker, socket_connect_timeout=2, socket_timeout=2)
        queues = {q: int(client.llen(q)) for q in QUEUES}
        client.close()
        replies = app.control.ping(timeout=ping_timeout) or []
        workers = sorted(name for reply in replies for name in reply)
        return {"queues": queues, "workers": workers, "broker": "ok"}
    except Exception as exc:  # the page still shows the database's view
        return {"queues": None, "workers": None, "broker": f"unreachable: {type(exc).__name__}"}


def send_dispatch_tick(slot: str) -> None:
    """What `calsync sync` does after making operators due: ask for a dispatcher tick now."""
    from calsync.celery import app

    app.send_task("calsync.dispatch", kwargs={"slot": slot}, queue="dispatch")
