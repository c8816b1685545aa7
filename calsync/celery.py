"""The Celery app (`celery -A calsync worker|beat|flower` finds it here)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, worker_process_init, worker_process_shutdown

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


@task_postrun.connect
def _drop_tracebacks(retval: Any = None, **_: Any) -> None:
    """A task that retried, was rejected or failed leaves its exception as the return value; cut
    the tracebacks of it and of every exception behind it, once Celery has logged and formatted them.

    Otherwise each one is garbage in a reference cycle that only a full collection frees: the
    original exception's traceback reaches the task's frame, whose f_back is Celery's trace_task
    frame, whose locals hold the ExceptionInfo (a copy of every frame's code positions), which
    holds the Retry, which holds the original exception. Full collections are rare in a worker
    with a large heap, so under a burst of retries (a Postgres restart, Exchange answering 503)
    the worker's memory grew by megabytes and never came back (soak: +15% in 30 minutes).
    """
    seen: set[int] = set()
    todo: list[object] = [retval]
    while todo:
        exc = todo.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        todo += [exc.__cause__, exc.__context__, getattr(exc, "exc", None)]  # Retry and Reject carry .exc
