"""Redis and Redis Sentinel URLs: what calsync accepts, what it refuses and how it says so.

The Celery configuration is read in a fresh interpreter per case (calsync.celeryconfig reads
the environment at import), exactly as a worker or beat would read it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from redis.sentinel import SentinelConnectionPool

from calsync import redis_url
from calsync.config import ConfigError, load_env

THREE = "sentinel://10.0.0.1:26379/2;sentinel://10.0.0.2:26380/2;sentinel://10.0.0.3/2"


def test_plain_urls_pass_through() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.example:6380/3", "unix:///run/redis.sock?db=1"):
        target = redis_url.parse(url)
        assert (target.url, target.is_sentinel) == (url, False)


def test_sentinel_url_lists_every_sentinel_and_the_database() -> None:
    target = redis_url.parse(THREE)
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert (target.db, target.password, target.is_sentinel) == (2, None, True)
    with_auth = redis_url.parse("sentinel://:s%40cret@h1:1/0;sentinel://h2:2/0")
    assert with_auth.password == "s@cret"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("amqp://guest@rabbit//", "the scheme must be redis://, rediss://, unix:// or sentinel://"),
        ("127.0.0.1:6379", "the scheme must be"),
        ("sentinel://h1:26379;redis://h2:6379", "every sentinel must be written sentinel://host:port"),
        ("sentinel://h1:port", "has a port that is not a number"),
        ("sentinel://:26379", "names no host"),
        ("sentinel://h1:1/0;sentinel://h2:2/1", "the sentinels name different databases [0, 1]"),
        ("sentinel://h1:1/zero", "must be a number"),
    ],
)
def test_bad_urls_are_refused_with_the_variable_and_the_fix(url: str, says: str) -> None:
    with pytest.raises(ValueError, match="CALSYNC_BROKER_URL=") as err:
        redis_url.parse(url, "CALSYNC_BROKER_URL")
    assert says in str(err.value)


def test_an_error_message_never_shows_the_password() -> None:
    with pytest.raises(ValueError) as err:
        redis_url.parse("sentinel://:hunter2@h1:26379/0;sentinel://:hunter2@h2:x/0")
    assert "hunter2" not in str(err.value) and ":***@" in str(err.value)


def test_the_environment_is_checked_with_the_variable_named() -> None:
    cfg = load_env(redis_url=THREE, redis_sentinel_master="calsync")
    assert cfg.redis_sentinel_master == "calsync" and cfg.broker == THREE
    assert load_env().redis_sentinel_master == "mymaster"
    with pytest.raises(ConfigError, match=r"^CALSYNC_LOCK_REDIS_URL=sentinel://h1:x: .*port that is not a number"):
        load_env(lock_redis_url="sentinel://h1:x")
    with pytest.raises(ConfigError, match="CALSYNC_REDIS_SENTINEL_MASTER='my master': name the master group"):
        load_env(redis_url=THREE, redis_sentinel_master="my master")


def test_calsyncs_own_client_follows_the_master_through_the_sentinels() -> None:
    client = redis_url.client(THREE, "calsync", socket_timeout=5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "calsync" and pool.connection_kwargs["db"] == 2
    sentinels = [(c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
                 for c in pool.sentinel_manager.sentinels]  # fmt: skip
    assert sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    plain = redis_url.client("redis://127.0.0.1:6379/5", "calsync")
    assert not isinstance(plain.connection_pool, SentinelConnectionPool)


def celery_config(**env: str) -> dict[str, object]:
    code = (
        "import json; from calsync import celeryconfig as c; print(json.dumps({k: getattr(c, k, None) for k in "
        "('broker_url', 'result_backend', 'broker_transport_options', 'result_backend_transport_options', "
        "'redbeat_redis_url', 'redbeat_redis_options', 'beat_scheduler')}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def test_celery_and_redbeat_are_configured_for_sentinel() -> None:
    conf = celery_config(CALSYNC_REDIS_URL=THREE, CALSYNC_REDIS_SENTINEL_MASTER="calsync")
    assert conf["broker_url"] == THREE and conf["result_backend"] == THREE
    assert conf["broker_transport_options"]["master_name"] == "calsync"  # type: ignore[index]
    assert conf["result_backend_transport_options"]["master_name"] == "calsync"  # type: ignore[index]
    assert conf["redbeat_redis_url"] == "redis-sentinel://10.0.0.1:26379/2"
    options = conf["redbeat_redis_options"]
    assert options["service_name"] == "calsync" and options["db"] == 2  # type: ignore[index]
    assert options["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26380], ["10.0.0.3", 26379]]  # type: ignore[index]
    assert conf["beat_scheduler"] == "calsync.beat:Scheduler"


def test_plain_redis_configuration_is_unchanged() -> None:
    conf = celery_config(CALSYNC_REDIS_URL="redis://127.0.0.1:6379/4")
    assert conf["broker_url"] == "redis://127.0.0.1:6379/4"
    assert "master_name" not in conf["broker_transport_options"]  # type: ignore[operator]
    assert conf["redbeat_redis_url"] == "redis://127.0.0.1:6379/4" and conf["redbeat_redis_options"] is None


def test_split_roles_only_the_sentinel_ones_get_a_master_name() -> None:
    conf = celery_config(CALSYNC_REDIS_URL="redis://127.0.0.1:6379/4", CALSYNC_BROKER_URL=THREE)
    assert conf["broker_transport_options"]["master_name"] == "mymaster"  # type: ignore[index]
    assert "master_name" not in conf["result_backend_transport_options"]  # type: ignore[operator]
    assert conf["redbeat_redis_url"] == "redis://127.0.0.1:6379/4"
