"""`calsync console`: the admin web console, and the password hashes its accounts need."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def console() -> None:
    """The admin web console (settings, operators, status, history) for CRM administrators."""


@console.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
def serve(host: str, port: int, ssl_certfile: Path | None, ssl_keyfile: Path | None) -> None:
    """Serve the console. Accounts: CALSYNC_CONSOLE_ADMINS / _ADMINS_FILE, or a trusted proxy header."""
    import logging

    import uvicorn

    from calsync.console.app import create_app
    from calsync.console.config import load

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise click.UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    config = load(cookie_secure=ssl_certfile is not None)
    logging.getLogger("calsync.console.audit").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.secret_key_generated:
        click.echo(
            "calsync console: CALSYNC_CONSOLE_SECRET_KEY is not set; sessions end when this process restarts",
            err=True,
        )
    proxies = [str(n) for n in config.trusted_proxies] or None
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        access_log=False,
        timeout_graceful_shutdown=10,
        log_level="warning",
    )


@console.command("hash-password")
@click.argument("name")
def hash_password(name: str) -> None:
    """Print NAME:HASH for CALSYNC_CONSOLE_ADMINS(_FILE); the password is read from the terminal or stdin."""
    from calsync.console.auth import hash_password as make_hash

    if ":" in name or not name.strip() or any(c.isspace() for c in name):
        raise click.UsageError("NAME must be a user name without ':' or spaces")
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise click.UsageError("the password must have at least 8 characters")
    click.echo(f"{name}:{make_hash(password)}")
