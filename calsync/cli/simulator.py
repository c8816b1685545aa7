"""`calsync simulator`: run the built-in Exchange simulator (see calsync/simulator)."""

from __future__ import annotations

from typing import Any

import click


@click.group()
def simulator() -> None:
    """The built-in Exchange (EWS) simulator for demos, tests and benchmarks."""


def _serve_command() -> click.Command:
    # Built in a function so the options live in one place (calsync/simulator/options.py).
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


simulator.add_command(_serve_command())
