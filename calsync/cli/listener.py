"""`calsync listener serve`: the push notification listener (calsync.listener.app)."""

from __future__ import annotations

import click


@click.group()
def listener() -> None:
    """The push listener that Exchange POSTs notifications to (the notification_url setting)."""


@listener.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Answer Exchange's SendNotification (OK or Unsubscribe) and start at most one sync per operator.

    Stateless: run as many as wanted behind a load balancer; notification_url must reach them
    (the per-subscription secret is appended to its path).
    """
    from calsync.config import env
    from calsync.listener.app import serve as run

    cfg = env()
    click.echo(f"calsync listener on http://{host}:{port}/ (POST <notification_url path>/<secret>, GET /healthz)")
    run(
        host,
        port,
        cfg.database_url,
        cfg.lock_url,
        cfg.broker,
        cfg.redis_sentinel_master,
        keepalive_linger=cfg.listener_keepalive_linger_ms / 1000,
    )
