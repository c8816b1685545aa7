"""Prometheus metrics, safe with many worker processes.

Workers only count; they never serve HTTP. With PROMETHEUS_MULTIPROC_DIR set in the
environment of every worker (before it starts: prometheus-client reads it at import), each
process writes its samples to files there, and `calsync metrics serve` (or
`python -m calsync.metrics`) aggregates them, adding what it reads from Postgres at scrape
time: operators per status, the global pause, open failure episodes. docs/metrics.md lists
every metric and how to scrape it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_WAITS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

EWS_REQUESTS = Counter(
    "calsync_ews_requests", "HTTP requests sent to EWS, by operation and HTTP status ('error': no answer)",
    ["operation", "status"],
)  # fmt: skip
EWS_LATENCY = Histogram(
    "calsync_ews_request_duration_seconds", "Time from sending an EWS request to its complete answer",
    ["operation"], buckets=_LATENCY,
)  # fmt: skip
SYNC_ERRORS = Counter(
    "calsync_sync_errors", "Failed batches by catalogue code and disposition", ["code", "disposition"]
)
BATCHES = Counter(
    "calsync_sync_batches",
    "Batch tasks by outcome: more, done, retry, failed, paused, skipped, throttled, time_limit",
    ["outcome"],
)
BATCH_DURATION = Histogram(
    "calsync_sync_batch_duration_seconds", "Wall time of one batch task", ["outcome"], buckets=_LATENCY
)
POLLS = Counter(
    "calsync_polls",
    "Operators handled by poll chunks: quiet (nothing changed, settled in bulk), batch (changes or a failure: "
    "a batch ran), lost (lease moved on), deferred (throttled or over budget), handed_off (to single batches), time_limit (stopped by the soft time limit; lease given back)",
    ["outcome"],
)
POLL_CHUNK_DURATION = Histogram(
    "calsync_poll_chunk_duration_seconds", "Wall time of one poll chunk task", buckets=_LATENCY
)
RUNS = Counter("calsync_sync_runs", "Finished sync runs (first batch to in-sync, or given up)", ["outcome"])
RUN_DURATION = Histogram(
    "calsync_sync_run_duration_seconds", "Wall time of successful sync runs, first batch to in-sync",
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0),
)  # fmt: skip
ITEMS = Counter("calsync_items", "Mirror rows written, by change", ["change"])
BACKOFF = Histogram(
    "calsync_backoff_wait_seconds",
    "Waits before a batch is retried; reason=server when Exchange asked for at least that long",
    ["reason"],
    buckets=_WAITS,
)
SERVER_BACKOFFS = Counter(
    "calsync_server_backoff_requests", "Times Exchange asked every worker of the service account to wait", ["code"]
)
NOTIFICATIONS = Counter("calsync_notifications_sent", "Emails sent, by kind (failure, recovery)", ["kind"])
PAUSES = Counter("calsync_global_pauses", "Global pauses started, by catalogue code", ["code"])

# Push notifications (issue 15); the listener counts into PROMETHEUS_MULTIPROC_DIR like a worker.
PUSH_NOTIFICATIONS = Counter(
    "calsync_push_notifications",
    "SendNotifications received by the listener, by kind: change, status, unsubscribed, rejected",
    ["kind"],
)
PUSH_COALESCED = Counter(
    "calsync_push_coalesced", "Change notifications that found a sync of their operator already pending"
)
PUSH_UNSUBSCRIBES = Counter("calsync_push_unsubscribes", "Notifications answered Unsubscribe, by reason", ["reason"])
PUSH_REJECTED = Counter("calsync_push_rejected", "Notifications refused (nothing enqueued), by reason", ["reason"])
PUSH_DEATHS = Counter("calsync_push_subscription_deaths", "Subscriptions found dead (silent 2 x StatusFrequency)")
PUSH_SUBSCRIBES = Counter("calsync_push_subscribes", "Subscribe calls, by outcome", ["outcome"])
# Graph change notifications (issue 17) count into the PUSH_* metrics above like EWS push
# (kind "validation" for a validation handshake answered); what only Graph has is here.
GRAPH_LIFECYCLE = Counter(
    "calsync_graph_lifecycle_notifications", "Graph lifecycle notifications received, by event", ["event"]
)
GRAPH_RENEWALS = Counter("calsync_graph_renewals", "Graph subscription renewals, by outcome", ["outcome"])
PUSH_LATENCY = Histogram(
    "calsync_push_notification_to_commit_seconds",
    "From the first notification a sync covered to the commit that ended that sync",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)

_OPERATION = re.compile(rb"<(?:[A-Za-z]+:)?Body[^>]*>\s*<(?:[A-Za-z]+:)?([A-Za-z]+)")


def operation_of(body: bytes | str | None) -> str:
    """The EWS operation a SOAP request body calls (its first element inside Body)."""
    if body is None:
        return "unknown"
    raw = body.encode() if isinstance(body, str) else body
    m = _OPERATION.search(raw[:4096] if len(raw) > 4096 else raw)
    return m.group(1).decode() if m else "unknown"


def observe_ews(operation: str, status: str, seconds: float) -> None:
    EWS_REQUESTS.labels(operation, status).inc()
    EWS_LATENCY.labels(operation).observe(seconds)


class StatusCollector(Collector):
    """Read at scrape time from Postgres: the truth, whichever worker last touched an operator."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from calsync.store import status
        from calsync.store.db import transaction

        operators = GaugeMetricFamily("calsync_operators", "Operators per sync status", labels=["status"])
        paused = GaugeMetricFamily(
            "calsync_global_pause", "1 while syncing is paused for everyone, by catalogue code", labels=["code"]
        )
        episodes = GaugeMetricFamily(
            "calsync_failure_episodes_open", "Open failure episodes (operator or global)", labels=["scope"]
        )
        up = GaugeMetricFamily("calsync_database_up", "1 when the exporter could read Postgres")
        try:
            with transaction() as conn:
                gauges = status.gauges(conn)
        except Exception as exc:  # the exporter must answer even when Postgres is down
            log.warning("metrics: cannot read Postgres: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        for name, n in gauges.by_status.items():
            operators.add_metric([name], n)
        paused.add_metric([gauges.pause_code or ""], 1 if gauges.pause_code else 0)
        episodes.add_metric(["operator"], gauges.open_operator_episodes)
        episodes.add_metric(["global"], gauges.open_global_episodes)
        up.add_metric([], 1)
        yield from (operators, paused, episodes, up)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exporter_registry(with_status: bool = True) -> CollectorRegistry:
    """What the exporter serves: all processes' samples (multiprocess mode) plus the Postgres view."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    if with_status:
        registry.register(StatusCollector())
    return registry


def serve(port: int = 9464, addr: str = "0.0.0.0") -> Any:
    """Start the HTTP exporter on a background thread; returns (server, thread)."""
    mp = multiprocess_dir()
    if mp:
        os.makedirs(mp, exist_ok=True)
    else:
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set: only this process's own metrics are served")
    return start_http_server(port, addr=addr, registry=exporter_registry())


def process_exit(pid: int) -> None:
    """Bookkeeping when a worker process exits (call from worker_process_shutdown)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m calsync.metrics", description="Serve calsync's Prometheus metrics")
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    serve(args.port, args.host)
    print(f"serving calsync metrics on http://{args.host}:{args.port}/metrics", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
