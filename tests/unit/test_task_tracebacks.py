"""A retrying task leaves no garbage behind: calsync.celery cuts the tracebacks Celery keeps.

Celery's tracer, as a worker runs it, on a task that retries as calsync's tasks do during an
outage (`raise self.retry(exc=exc) from exc`). With the garbage collector off, every
ExceptionInfo still alive after the runs is one that only a full collection would free.
"""

from __future__ import annotations

import gc
import uuid
from typing import Any

from billiard.einfo import ExceptionInfo
from celery import Celery
from celery.app.trace import build_tracer
from celery.signals import task_postrun

from calsync import celery as calsync_celery

RUNS = 50


def _alive() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is ExceptionInfo)


def _retries_left_alive() -> int:
    app = Celery("tracebacks", broker="memory://", set_as_current=False)
    app.conf.task_ignore_result = True

    @app.task(bind=True, max_retries=None)
    def flaky(self: Any) -> None:
        try:
            raise ConnectionError("Postgres is restarting")
        except ConnectionError as exc:
            raise self.retry(countdown=60, exc=exc) from exc

    tracer = build_tracer(flaky.name, flaky, app=app, eager=False, propagate=False)
    gc.collect()
    gc.disable()
    try:
        before = _alive()
        for _ in range(RUNS):
            task_id = str(uuid.uuid4())
            tracer(task_id, (), {}, {"id": task_id, "delivery_info": {}, "hostname": "test"})
        return _alive() - before
    finally:
        gc.enable()
        gc.collect()


def test_a_retrying_task_leaves_no_exception_info_for_the_garbage_collector() -> None:
    assert _retries_left_alive() == 0
    # Without calsync's handler each retry leaves its ExceptionInfo in a reference cycle.
    task_postrun.disconnect(calsync_celery._drop_tracebacks)
    try:
        assert _retries_left_alive() == RUNS
    finally:
        task_postrun.connect(calsync_celery._drop_tracebacks)
