"""The beat scheduler: redbeat's, made to survive a Redis that lost its data or its master.

redbeat keeps the schedule and the leader's lock in Redis. When that Redis is wiped
(FLUSHDB, a restart without persistence, a failover to an empty replica) the lock is gone,
redbeat's `tick` raises LockNotOwnedError and beat exits; a standby, or the leader started
again, reads an empty schedule and never ticks until someone installs it. Here the leader
takes the lock back when nobody else holds it, and whoever leads installs the static
schedule again when it is missing, so ticks go on by themselves. A lock that another beat
holds now is never taken: the scheduler raises as redbeat does, the process exits, and its
supervisor starts it again as a standby.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis
from redis.exceptions import LockNotOwnedError

log = logging.getLogger(__name__)

# How soon the scheduler tries again after Redis did not answer (a restart or a failover).
RETRY_SECONDS = 1.0


class Scheduler(RedBeatScheduler):
    _closed = False

    def close(self) -> None:
        self._closed = True
        super().close()

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        if self._closed:
            # beat's SIGTERM handler closes the scheduler (releasing the lock), then raises
            # SystemExit wherever the main thread is; seen swallowed while a Redis call was
            # being retried, after which beat would tick on without its lock. A closed
            # scheduler never ticks again.
            raise SystemExit("beat: scheduler closed")
        try:
            self._restore_schedule()
            try:
                return float(super().tick(min=min, **kwargs))
            except LockNotOwnedError:
                self._retake_lock()
                self._restore_schedule()
                return float(super().tick(min=min, **kwargs))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The lock still expires on its own if this lasts: a standby then leads, and our
            # next extend fails with LockNotOwnedError, which _retake_lock lets through.
            log.warning("beat: Redis did not answer (%s); trying again in %.0fs", exc, RETRY_SECONDS)
            return RETRY_SECONDS

    def _retake_lock(self) -> None:
        """Our lock vanished (Redis wiped): take it again unless another beat took it first."""
        if self.lock is None or not self.lock.acquire(blocking=False):
            log.error("beat: lost the redbeat lock to another beat; exiting so the supervisor restarts us as standby")
            raise LockNotOwnedError("the redbeat lock is held by another beat")
        log.warning("beat: the redbeat lock had vanished (Redis wiped or failed over); took it again")

    def _restore_schedule(self) -> None:
        client = get_redis(self.app)
        if client.exists(self.app.redbeat_conf.schedule_key):
            return
        log.warning("beat: the schedule in Redis is gone (Redis wiped or failed over); installing it again")
        self.setup_schedule()
        # The lost schedule took the last run times with it. An interval job (the dispatcher's
        # tick) is due at once rather than one interval after the reinstall: its slot dedupe
        # (dispatch_ticks) makes a tick sent early harmless. A daily crontab job keeps its time.
        now = self.app.now()
        for name, definition in self.app.redbeat_conf.schedule.items():
            every = definition.get("schedule")
            if isinstance(every, dt.timedelta):
                entry = self.Entry.from_key(self.Entry.generate_key(self.app, name), app=self.app)
                entry.reschedule(last_run_at=now - every)
