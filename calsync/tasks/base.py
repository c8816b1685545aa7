"""The task base class: what every calsync task shares, and nothing domain-specific.

Like Warehouse's task base it owns the cross-cutting rules: tasks are acknowledged late and
come back when their worker dies (every task is idempotent, fenced by lease tokens), and an
outage of Postgres or Redis inside a task is retried here, once for all tasks, with
Celery's exponential back-off under the same arguments.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, NoReturn

from celery import Task

from calsync import metrics
from calsync.errors import Disposition
from calsync.runner.backoff import backoff_seconds
from calsync.runner.outage import outage_code

log = logging.getLogger(__name__)


class CalsyncTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True

    @property
    def owner(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{self.request.id}"

    def retry_outage(self, exc: BaseException, args: Sequence[Any], what: str) -> NoReturn:
        """Postgres or Redis is down for everyone: run this task again later, same arguments."""
        code = outage_code(exc)
        metrics.SYNC_ERRORS.labels(code, Disposition.TRANSIENT.value).inc()
        countdown = backoff_seconds(self.request.retries, None)
        metrics.BACKOFF.labels("backoff").observe(countdown)
        log.warning("%s: %s (%s); retrying in %.0fs", what, code, type(exc).__name__, countdown)
        raise self.retry(args=tuple(args), countdown=countdown, exc=exc) from exc
