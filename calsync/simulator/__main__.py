"""`python -m calsync.simulator`: the same as `calsync simulator serve`."""

from __future__ import annotations

from typing import Any

import click

from calsync.simulator.options import serve, serve_options


@click.command()
@serve_options
def main(**options: Any) -> None:
    """Run the Exchange (EWS) simulator."""
    try:
        serve(**options)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
