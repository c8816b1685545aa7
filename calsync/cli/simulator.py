"""`calsync simulator`: run the built-in Exchange simulator (see calsync/simulator)."""

from __future__ import annotations

from typing import Any

import click


class _LazyGroup(click.Group):
    """Builds `serve` only when asked for: its options live with the simulator
    (calsync/simulator/options.py), whose import (aiohttp, exchangelib, the generator) took
    0.9 of the 1.5 s every other calsync command spent starting."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["serve"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return _serve_command() if cmd_name == "serve" else None


@click.group(cls=_LazyGroup)
def simulator() -> None:
    """The built-in Exchange (EWS) simulator for demos, tests and benchmarks."""


def _serve_command() -> click.Command:
    from calsync.simulator.options import serve, serve_options

    @click.command("serve")
    @serve_options
    def serve_cmd(**options: Any) -> None:
        """Serve EWS on http://HOST:PORT/EWS/Exchange.asmx with generated mailboxes.

        Mailboxes are user0001@example.com, user0002@example.com, ...; the admin API is under /admin/.
        """
        try:
            serve(**options)
        except KeyboardInterrupt:
            pass

    return serve_cmd
