"""Entry point of the `calsync` command.

Each domain registers its own Click group (db, simulator, settings, operators, ...), so this
module only wires them together and turns known errors into one clear line and exit status 2.
"""

from __future__ import annotations

import logging
import sys

import click

from calsync import logredact
from calsync.cli.console import console
from calsync.cli.db import db
from calsync.cli.metrics import metrics
from calsync.cli.operators import operators
from calsync.cli.settings import settings
from calsync.cli.simulator import simulator
from calsync.cli.status import status
from calsync.cli.sync import sync
from calsync.config import ConfigError


class CalsyncGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"calsync: {exc}", err=True)
            sys.exit(2)


@click.group(cls=CalsyncGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details to stderr.")
def cli(verbose: bool) -> None:
    """calsync: mirror Exchange calendars into the CRM's Postgres calendar."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logredact.install()


cli.add_command(db)
cli.add_command(simulator)
cli.add_command(settings)
cli.add_command(operators)
cli.add_command(status)
cli.add_command(sync)
cli.add_command(metrics)
cli.add_command(console)
