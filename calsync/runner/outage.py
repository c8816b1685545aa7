"""Errors that are nobody's mailbox's fault: the task retries the whole step later.

Postgres or Redis unreachable is an outage of calsync itself. No operator is failed for it
(its failure could not even be recorded); the task is retried with back-off under the same
lease token, and the step runs again from Postgres' state. A statement cancelled by its
timeout is the exception: that is one operator's work being too slow, so it is classified
like any other error of that operator.
"""

from __future__ import annotations

import psycopg
import psycopg_pool
import redis
from celery.exceptions import SoftTimeLimitExceeded

from calsync import errors

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    redis.ConnectionError,
    redis.TimeoutError,
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGE_ERRORS) and not isinstance(exc, psycopg.errors.QueryCanceled)


def outage_code(exc: BaseException) -> str:
    return errors.REDIS_UNAVAILABLE if isinstance(exc, redis.RedisError) else errors.DATABASE_UNAVAILABLE


def struck_by_time_limit(exc: BaseException) -> bool:
    """The task's soft time limit interrupted this work, however an adapter wrapped it (the
    EWS client and the adapter's classification re-raise it as their own errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SoftTimeLimitExceeded):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def passes_through(exc: BaseException) -> bool:
    """Not an operator's failure: an outage (the task retries) or the task's time limit (its
    own handler released the lease)."""
    return is_outage(exc) or isinstance(exc, SoftTimeLimitExceeded)
