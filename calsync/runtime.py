"""Per-process adapters built from settings and the environment: the composition root.

Workers, the CLI and tests get the Calendar source (rebuilt when the Exchange settings
change), the Redis clients and the settings from here, lazily and once per process (after a
fork, anew). Tasks receive ids and lease tokens only; credentials are read here, never
passed around.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis

from calsync import redis_url
from calsync.config import ConfigError, env
from calsync.settings import SyncSettings
from calsync.source.ews.connection import EwsEndpoint
from calsync.source.ews.source import EwsSource
from calsync.source.throttled import ThrottledSource
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from calsync.throttle import AccountThrottle

SETTINGS_TTL = 5.0

_lock = threading.Lock()
_state: dict[str, Any] = {}


def reset_process_state() -> None:
    with _lock:
        _state.clear()


def redis_client() -> redis.Redis:
    with _lock:
        client = _state.get("redis")
        if client is None or _state.get("redis_pid") != os.getpid():
            cfg = env()
            client = redis_url.client(
                cfg.lock_url, cfg.redis_sentinel_master,
                socket_timeout=5, socket_connect_timeout=5, health_check_interval=30,
            )  # fmt: skip
            _state["redis"], _state["redis_pid"] = client, os.getpid()
        return client


def broker_client() -> redis.Redis:
    """A plain Redis client on the broker, for pipelined publishing (calsync.tasks.publish)."""
    with _lock:
        client = _state.get("broker")
        if client is None or _state.get("broker_pid") != os.getpid():
            cfg = env()
            client = redis_url.client(
                cfg.broker, cfg.redis_sentinel_master, socket_timeout=10, socket_connect_timeout=5
            )
            _state["broker"], _state["broker_pid"] = client, os.getpid()
        return client


def current_settings() -> SyncSettings:
    """Settings from Postgres, cached a few seconds per process (they change rarely)."""
    now = time.monotonic()
    with _lock:
        cached = _state.get("settings")
        if cached and now - cached[1] < SETTINGS_TTL:
            return cached[0]
    with transaction() as conn:
        settings = settings_store.load(conn)
    with _lock:
        _state["settings"] = (settings, now)
    return settings


def service_account() -> tuple[str, str]:
    cfg = env()
    password = cfg.ews_password_value()
    if not cfg.ews_username or password is None:
        raise ConfigError(
            "CALSYNC_EWS_USERNAME and CALSYNC_EWS_PASSWORD (or CALSYNC_EWS_PASSWORD_FILE) must name the "
            "Exchange service account with the ApplicationImpersonation role"
        )
    return cfg.ews_username, password


def source_for(settings: SyncSettings) -> ThrottledSource:
    user, password = service_account()
    key = (settings.exchange_url, settings.exchange_version.value, settings.ews_max_concurrency, user, password)
    with _lock:
        cached = _state.get("source")
        if cached and cached[0] == key and _state.get("source_pid") == os.getpid():
            return cached[1]
    endpoint = EwsEndpoint(
        url=settings.exchange_url,
        version=settings.exchange_version.value,
        username=user,
        password=password,
        max_connections=settings.ews_max_concurrency,
    )
    source = ThrottledSource(EwsSource(endpoint), AccountThrottle(redis_client(), user, settings.ews_max_concurrency))
    with _lock:
        _state["source"], _state["source_pid"] = (key, source), os.getpid()
    return source
