"""`calsync metrics serve`: the Prometheus exporter (see docs/metrics.md)."""

from __future__ import annotations

import time

import click


@click.group()
def metrics() -> None:
    """Prometheus metrics of the workers and of the database."""


@metrics.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=9464, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve /metrics: worker metrics from PROMETHEUS_MULTIPROC_DIR plus operators per status."""
    from calsync import metrics as exporter

    exporter.serve(port, host)
    click.echo(f"serving calsync metrics on http://{host}:{port}/metrics")
    while True:
        time.sleep(3600)
