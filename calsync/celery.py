"""The Celery app (`celery -A calsync worker|beat|flower` finds it here)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from calsync import logredact

# Worker, beat and flower import this module first: no log record of theirs carries a credential.
logredact.install()

app = Celery(
    "calsync",
    include=[
        "calsync.tasks.sync",
        "calsync.tasks.poll",
        "calsync.tasks.dispatch",
        "calsync.tasks.horizon",
        "calsync.tasks.notify",
        "calsync.tasks.push",
        "calsync.tasks.graph_push",
    ],
)
# Celery's own CELERY_CONFIG_MODULE (set by `celery --config`) may name an overlay module;
# bench/proto/celeryconfig.py uses it to measure proposed settings.
app.config_from_object(os.environ.get("CELERY_CONFIG_MODULE") or "calsync.celeryconfig")


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked child must not reuse the parent's sockets: drop them, they reopen lazily."""
    from calsync import runtime
    from calsync.store import db

    db.close_pool()
    runtime.reset_process_state()


@worker_process_shutdown.connect
def _close_connections(**_: Any) -> None:
    from calsync.store import db

    db.close_pool()
