"""calsync.beat.Scheduler against the real Redis: a wiped lock is taken back, a taken one never.

The scheduler runs in this process on the test's Redis database, with its lock acquired the
way `celery beat` acquires it (redbeat's beat_init handler); test_flushdb.py shows the same
with a real beat process among real workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from redbeat.schedulers import acquire_distributed_beat_lock
from redis.exceptions import LockNotOwnedError

from calsync.beat import Scheduler

LOCK = "calsync:redbeat::lock"
SCHEDULE = "calsync:redbeat::schedule"
TICK_ENTRY = "calsync:redbeat:CalendarSynchronization"


@pytest.fixture
def leader(clean_redis: Any) -> Iterator[Scheduler]:
    from calsync.celery import app

    scheduler = Scheduler(app=app)
    acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=scheduler))
    assert scheduler.lock is not None and clean_redis.exists(LOCK)
    yield scheduler
    scheduler.close()


def test_a_wiped_lock_and_schedule_are_restored_and_the_tick_is_due_at_once(
    leader: Scheduler, clean_redis: Any
) -> None:
    leader.tick()
    assert clean_redis.exists(SCHEDULE)
    clean_redis.flushdb()
    before = time.time()
    leader.tick()  # redbeat's own tick raises LockNotOwnedError here, and beat exits
    assert leader.lock.owned(), "the lock is ours again"
    assert clean_redis.ttl(LOCK) > 0
    assert clean_redis.zscore(SCHEDULE, TICK_ENTRY) is not None, "the schedule is installed again"
    # The dispatcher's tick was due at once after the reinstall, so this tick sent it.
    assert clean_redis.llen("dispatch") >= 1
    meta = clean_redis.hget(TICK_ENTRY, "meta")
    assert meta is not None and clean_redis.zscore(SCHEDULE, TICK_ENTRY) >= before


def test_a_lock_another_beat_took_is_never_taken_over(leader: Scheduler, clean_redis: Any) -> None:
    leader.tick()
    clean_redis.flushdb()
    clean_redis.set(LOCK, "another-beat", px=30_000)  # the standby won the race after the wipe
    with pytest.raises(LockNotOwnedError):
        leader.tick()
    assert clean_redis.get(LOCK) == b"another-beat"


def test_a_schedule_lost_alone_is_installed_again(leader: Scheduler, clean_redis: Any) -> None:
    leader.tick()
    clean_redis.delete(SCHEDULE, TICK_ENTRY)
    leader.tick()
    assert clean_redis.zscore(SCHEDULE, TICK_ENTRY) is not None
    assert leader.lock.owned()


def test_a_closed_scheduler_never_ticks_again(leader: Scheduler, clean_redis: Any) -> None:
    """beat's SIGTERM handler closes the scheduler; a tick after that must end the loop."""
    leader.tick()
    leader.close()
    assert not clean_redis.exists(LOCK), "the lock is released at close"
    with pytest.raises(SystemExit):
        leader.tick()
    assert not clean_redis.exists(LOCK), "and never taken again"
