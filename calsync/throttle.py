"""Fleet-wide limits on EWS traffic per service account, kept in Redis.

Exchange budgets concurrency per service account (EWSMaxConcurrency), not per worker, so
the cap must be shared by every process on every host: a Redis sorted set of current
holders (scored by expiry, so a killed holder frees its slot by itself) acquired with one
Lua script. A "not before" key carries a server's back-off request (ErrorServerBusy's
BackOffMilliseconds, Retry-After) to every worker that uses the same account.

A slot is held for one request's deadline at a time (CALSYNC_EWS_REQUEST_DEADLINE_SECONDS plus a
small margin) and extended before each HTTP request (calsync.source.request_hook), so it cannot
expire under a request that is still allowed to run, and a stuck holder frees it by itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from calsync.config import env
from calsync.errors import Disposition, SourceError

log = logging.getLogger(__name__)
# Slack between a request's deadline and its slot's expiry: the watchdog's wake-up and the
# Redis round trip that releases the slot.
HOLD_MARGIN_SECONDS = 5.0

_ACQUIRE = """
local key, nbkey = KEYS[1], KEYS[2]
local now, ttl, limit, holder = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local not_before = tonumber(redis.call('GET', nbkey) or '0')
if not_before > now then
  return -math.ceil((not_before - now) * 1000)
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now + ttl, holder)
  redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1000)
  return 1
end
return 0
"""

# A holder that keeps its slot across several requests: check the back-off, extend the slot.
_RENEW = """
local key, nbkey = KEYS[1], KEYS[2]
local now, ttl, holder = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local not_before = tonumber(redis.call('GET', nbkey) or '0')
if not_before > now then
  return -math.ceil((not_before - now) * 1000)
end
if not redis.call('ZSCORE', key, holder) then
  return 0
end
redis.call('ZADD', key, now + ttl, holder)
redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1000)
return 1
"""

# Before each HTTP request of a holder: its slot covers the request's whole deadline.
_EXTEND = """
local key, now, ttl, holder = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if not redis.call('ZSCORE', key, holder) then
  return 0
end
redis.call('ZADD', key, now + ttl, holder)
if redis.call('PTTL', key) < math.ceil(ttl * 1000) + 1000 then
  redis.call('PEXPIRE', key, math.ceil(ttl * 1000) + 1000)
end
return 1
"""


class ThrottleBusy(SourceError):
    """No slot became free in time; the task retries later instead of holding a worker slot.

    Not a failure of the operator: it never starts a failure episode.
    """

    CODE = "LocalThrottle"

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(
            self.CODE,
            Disposition.TRANSIENT,
            f"fleet-wide EWS concurrency cap reached; retry in {wait_seconds:.1f}s",
            retry_after=wait_seconds,
        )


class AccountThrottle:
    def __init__(self, client: redis.Redis, account: str, limit: int, hold_seconds: float | None = None) -> None:
        self.client = client
        self.account = account.lower()
        self.limit = limit
        # >= any single EWS request: the adapter cuts every request at its deadline.
        self.hold_seconds = (
            hold_seconds if hold_seconds is not None else env().ews_request_deadline_seconds + HOLD_MARGIN_SECONDS
        )
        self.request_seconds = max(self.hold_seconds - HOLD_MARGIN_SECONDS, 0.0)
        self._sem_key = f"calsync:ews:sem:{self.account}"
        self._nb_key = f"calsync:ews:notbefore:{self.account}"
        self._acquire = client.register_script(_ACQUIRE)
        self._renew_script = client.register_script(_RENEW)
        self._extend_script = client.register_script(_EXTEND)

    def not_before(self) -> float:
        raw = self.client.get(self._nb_key)
        return float(raw) if raw else 0.0

    def push_back(self, seconds: float) -> None:
        """Nobody using this account calls Exchange for `seconds` (never shortens an existing wait)."""
        until = time.time() + seconds
        self.client.eval(
            "local cur = tonumber(redis.call('GET', KEYS[1]) or '0') "
            "if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end return 1",
            1,
            self._nb_key,
            repr(until),
            int(seconds * 1000) + 1000,
        )

    def _take(self, holder: str, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        delay = 0.005
        while True:
            # One round trip: the back-off check and the slot are taken atomically, so a
            # back-off published by another worker is never jumped.
            args: list[str | float | int] = [time.time(), self.hold_seconds, self.limit, holder]
            got = int(self._acquire(keys=[self._sem_key, self._nb_key], args=args))
            if got == 1:
                return
            if got < 0:
                wait = -got / 1000.0
                if time.monotonic() + wait > deadline:
                    raise ThrottleBusy(wait)
                time.sleep(wait)
                continue
            if time.monotonic() > deadline:
                raise ThrottleBusy(1.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def renew(self, holder: str) -> None:
        """Before a holder's next request: honour a back-off (ThrottleBusy), extend the slot."""
        args: list[str | float | int] = [time.time(), self.hold_seconds, holder]
        got = int(self._renew_script(keys=[self._sem_key, self._nb_key], args=args))
        if got < 0:
            raise ThrottleBusy(-got / 1000.0)
        if got == 0:  # the slot outlived hold_seconds and was reclaimed: queue again
            self._take(holder, max_wait=10.0)

    def extend(self, holder: str) -> bool:
        """Hold the slot for one more request's deadline; False if it was reclaimed meanwhile."""
        args: list[str | float | int] = [time.time(), self.hold_seconds, holder]
        try:
            return bool(int(self._extend_script(keys=[self._sem_key], args=args)))
        except redis.RedisError as exc:  # the request may go on; its slot expires by itself at worst
            log.warning("could not extend the EWS slot of %s: %s", self.account, exc)
            return False

    @contextmanager
    def slot(self, max_wait: float = 10.0) -> Iterator[Lane]:
        """Hold one of the account's slots for one call (one or more HTTP requests, one after another)."""
        with self.lane(max_wait) as lane:
            yield lane

    @contextmanager
    def lane(self, max_wait: float = 10.0) -> Iterator[Lane]:
        """Hold one slot for a sequence of requests made one after another (a chunk of polls).

        The requests of a lane are never concurrent, so one slot is the honest count; each
        request after the first re-checks the back-off and extends the slot in one round
        trip instead of taking and returning a slot (two).
        """
        holder = uuid.uuid4().hex
        self._take(holder, max_wait)
        try:
            yield Lane(self, holder, time.monotonic() + self.hold_seconds)
        finally:
            self.client.zrem(self._sem_key, holder)


class Lane:
    def __init__(self, throttle: AccountThrottle, holder: str, held_until: float) -> None:
        self.throttle = throttle
        self.holder = holder
        self._fresh = True  # just taken: the acquire has checked the back-off already
        self.held_until = held_until  # time.monotonic() when the slot expires unless extended

    def before_request(self) -> None:
        """Raise ThrottleBusy instead of waiting: a lane's caller defers its remaining work."""
        if self._fresh:
            self._fresh = False
            return
        self.throttle.renew(self.holder)
        self.held_until = time.monotonic() + self.throttle.hold_seconds

    def cover_request(self) -> None:
        """Before each HTTP request: make the slot outlast this request's deadline (one round trip
        only when it would not already)."""
        now = time.monotonic()
        if self.held_until - now >= self.throttle.request_seconds + 1.0:
            return
        if self.throttle.extend(self.holder):
            self.held_until = now + self.throttle.hold_seconds
