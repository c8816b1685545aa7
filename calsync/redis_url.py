"""Redis URLs as calsync accepts them: a plain Redis, or a group behind Redis Sentinel.

A deployment with Sentinel names the sentinels the way kombu and Celery's result backend
read them, `sentinel://host1:26379;sentinel://host2:26379/DB`, and the master group in
CALSYNC_REDIS_SENTINEL_MASTER. One parser serves the configuration check (calsync.config),
the Celery configuration (the redbeat options) and calsync's own clients (calsync.runtime),
so a URL that passes the check is one every part of calsync connects to the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class RedisTarget:
    url: str
    # Empty for a plain Redis; (host, port) of each sentinel otherwise.
    sentinels: tuple[tuple[str, int], ...] = ()
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse(url: str, variable: str = "CALSYNC_REDIS_URL") -> RedisTarget:
    """Check a Redis URL; a ValueError names the variable, what is wrong and the fix."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in PLAIN_SCHEMES:
        return RedisTarget(url=url)
    if scheme != SENTINEL_SCHEME:
        raise ValueError(
            f"{variable}={_safe(url)}: the scheme must be redis://, rediss://, unix:// or sentinel:// "
            "(e.g. redis://127.0.0.1:6379/0, or sentinel://s1:26379;sentinel://s2:26379/0 for Redis Sentinel)"
        )
    sentinels: list[tuple[str, int]] = []
    dbs: set[int] = set()
    username = password = None
    for part in url.split(";"):
        part = part.strip()
        if not part.lower().startswith("sentinel://"):
            raise ValueError(
                f"{variable}={_safe(url)}: every sentinel must be written sentinel://host:port, separated by ';' "
                f"(got {_safe(part)!r})"
            )
        split = urlsplit(part)
        try:
            port = split.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            raise ValueError(f"{variable}={_safe(url)}: {_safe(part)!r} has a port that is not a number") from None
        if not split.hostname:
            raise ValueError(f"{variable}={_safe(url)}: {_safe(part)!r} names no host")
        path = split.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(
                    f"{variable}={_safe(url)}: the database after the sentinel's address must be a number (got /{path})"
                )
            dbs.add(int(path))
        sentinels.append((split.hostname, port))
        username = username or (unquote(split.username) if split.username else None)
        password = password or (unquote(split.password) if split.password else None)
    if len(dbs) > 1:
        raise ValueError(f"{variable}={_safe(url)}: the sentinels name different databases {sorted(dbs)}; name one")
    return RedisTarget(
        url=url, sentinels=tuple(sentinels), db=dbs.pop() if dbs else 0, username=username, password=password
    )


def check_master_name(name: str) -> str:
    if not name or any(c.isspace() for c in name):
        raise ValueError(
            f"CALSYNC_REDIS_SENTINEL_MASTER={name!r}: name the master group the sentinels monitor "
            "(the name in `sentinel monitor NAME host port quorum`), without spaces"
        )
    return name


def client(url: str, master: str, **options: Any) -> redis.Redis:
    """A redis-py client on `url`; through Sentinel, it follows the current master across failovers."""
    target = parse(url)
    if not target.is_sentinel:
        return redis.Redis.from_url(url, **options)
    auth = {"username": target.username, "password": target.password}
    sentinel = Sentinel(
        list(target.sentinels),
        socket_timeout=options.get("socket_timeout"),
        socket_connect_timeout=options.get("socket_connect_timeout"),
    )
    return sentinel.master_for(master, db=target.db, **auth, **options)


def async_client(url: str, master: str, **options: Any) -> aioredis.Redis:
    """The asyncio twin of `client` (the push listener): through Sentinel, it follows failovers."""
    target = parse(url)
    if not target.is_sentinel:
        return aioredis.Redis.from_url(url, **options)
    sentinel = AsyncSentinel(
        list(target.sentinels),
        socket_timeout=options.get("socket_timeout"),
        socket_connect_timeout=options.get("socket_connect_timeout"),
    )
    return sentinel.master_for(master, db=target.db, username=target.username, password=target.password, **options)


def redbeat_url(target: RedisTarget) -> str:
    """redbeat's spelling of a Sentinel URL: scheme redis-sentinel; every sentinel comes in the options.

    The URL itself only selects redbeat's Sentinel branch (and shows in beat's banner), so it
    names the first sentinel alone, in a form kombu's URL parser accepts.
    """
    host, port = target.sentinels[0]
    return f"redis-sentinel://{host}:{port}/{target.db}"


def redbeat_options(target: RedisTarget, master: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "sentinels": list(target.sentinels),
        "service_name": master,
        "db": target.db,
        "socket_timeout": 5,
        # redbeat retries a lost connection (a failover in progress) this long before it gives up.
        "retry_period": 60,
    }
    if target.password is not None:
        options["password"] = target.password
    if target.username is not None:
        options["username"] = target.username
    return options


def _safe(url: str) -> str:
    """The URL with any password replaced, so an error message never carries a secret."""
    out = []
    for part in url.split(";"):
        split = urlsplit(part) if "://" in part else None
        if split is not None and split.password:
            netloc = split.netloc.replace(f":{split.password}@", ":***@")
            part = part.replace(split.netloc, netloc)
        out.append(part)
    return ";".join(out)
