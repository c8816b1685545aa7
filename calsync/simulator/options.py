"""The options of `calsync simulator serve` and `python -m calsync.simulator`, defined once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import click
from aiohttp import web

from calsync.simulator.core import DEFAULT_ACCOUNT, Simulator
from calsync.simulator.generator import generate
from calsync.simulator.server import EWS_PATH, build_app
from calsync.simulator.versions import DEFAULT_VERSION, VERSIONS


def _account(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    accounts: dict[str, str] = {}
    for entry in value:
        user, sep, password = entry.partition(":")
        if not sep or not user:
            raise click.BadParameter("expected USER:PASSWORD")
        accounts[user] = password
    return accounts or dict([DEFAULT_ACCOUNT])


def serve_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--port", default=8080, show_default=True, type=int, help="0 picks a free port."),
        click.option("--mailboxes", default=5, show_default=True, type=int),
        click.option("--appointments", default=50, show_default=True, type=int, help="Per mailbox."),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--latency-ms", default=0, show_default=True, type=int, help="Added to every EWS answer."),
        click.option(
            "--version", "version", default=DEFAULT_VERSION, show_default=True, type=click.Choice(sorted(VERSIONS))
        ),
        click.option(
            "--service-account",
            multiple=True,
            callback=_account,
            metavar="USER:PASSWORD",
            help=f"Repeatable; default {DEFAULT_ACCOUNT[0]}:{DEFAULT_ACCOUNT[1]}.",
        ),
        click.option("--validate/--no-validate", default=None, help="Validate bodies against the EWS schema."),
        click.option(
            "--also",
            "also",
            multiple=True,
            metavar="N:M",
            help="Repeatable: N more mailboxes of M appointments each, numbered after the others.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def serve(
    host: str,
    port: int,
    mailboxes: int,
    appointments: int,
    seed: int,
    latency_ms: int,
    version: str,
    service_account: dict[str, str],
    validate: bool | None,
    also: tuple[str, ...] = (),
) -> None:
    started = time.perf_counter()
    sim = Simulator(
        version=version, service_accounts=service_account, validate=validate, latency_ms=latency_ms, seed=seed
    )
    generate(mailboxes, appointments, seed, into=sim)
    first = mailboxes + 1
    for spec in also:
        count, _, size = spec.partition(":")
        if not (count.isdigit() and size.isdigit()):
            raise click.BadParameter(f"--also {spec!r}: expected N:M, e.g. 1:50000")
        generate(int(count), int(size), seed + first, into=sim, first=first)
        first += int(count)
        mailboxes += int(count)
    elapsed = time.perf_counter() - started
    asyncio.run(_serve(sim, host, port, mailboxes, appointments, elapsed))


async def _serve(sim: Simulator, host: str, port: int, mailboxes: int, appointments: int, elapsed: float) -> None:
    runner = web.AppRunner(build_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    if sockets:
        port = sockets[0].getsockname()[1]
    user, password = sim.service_account
    click.echo(f"EWS URL: http://{host}:{port}{EWS_PATH}", nl=True)
    click.echo(f"Admin API: http://{host}:{port}/admin/")
    click.echo(f"Service account: {user} / password: {password}")
    click.echo(
        f"Exchange version: {sim.version.name} ({sim.version.build}); {mailboxes} mailboxes x {appointments} "
        f"appointments (user0001@example.com ...) generated in {elapsed:.2f}s; validation "
        f"{'on' if sim.validate else 'off'}"
    )
    click.echo("READY", nl=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
