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
from calsync.errors import Disposition, SourceError
from calsync.settings import SyncSettings
from calsync.source.ews.connection import EwsEndpoint
from calsync.source.ews.source import EwsSource
from calsync.source.graph.auth import TokenProvider
from calsync.source.graph.client import GraphClient
from calsync.source.graph.source import GraphSource
from calsync.source.graph.subscriptions import GraphSubscriptions
from calsync.source.graph.throttled import GraphThrottledSource
from calsync.source.routed import RoutedSource
from calsync.source.throttled import ThrottledSource
from calsync.store import operators as operators_store
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


def _ews_source(settings: SyncSettings) -> ThrottledSource:
    user, password = service_account()
    endpoint = EwsEndpoint(
        url=settings.exchange_url,
        version=settings.exchange_version.value,
        username=user,
        password=password,
        max_connections=settings.ews_max_concurrency,
    )
    return ThrottledSource(EwsSource(endpoint), AccountThrottle(redis_client(), user, settings.ews_max_concurrency))


def _graph_source(settings: SyncSettings) -> GraphThrottledSource:
    if not settings.graph_tenant_id or not settings.graph_client_id:
        raise SourceError(
            "GraphNotConfigured",
            Disposition.OPERATOR,
            "this operator's source is graph but graph_tenant_id or graph_client_id is not set; "
            "`calsync settings set graph_tenant_id ...` and `... graph_client_id ...`",
        )
    tokens = TokenProvider(
        settings.graph_authority_url,
        settings.graph_tenant_id,
        settings.graph_client_id,
        lambda: env().graph_credential(),
        settings.graph_base_url,
    )
    client = GraphClient(settings.graph_base_url, tokens, pool=settings.graph_max_concurrency)
    source = GraphSource(client, settings.past_window_days, settings.future_horizon_days)
    app_key = f"{settings.graph_tenant_id}:{settings.graph_client_id}"
    return GraphThrottledSource(
        source, redis_client(), app_key, settings.graph_max_concurrency, GraphSubscriptions(client)
    )


def operator_source(mailbox: str, default: str, fresh: bool) -> str:
    """The source of the operator with this mailbox: its own, else `default`.

    The operators with a source of their own are read once per SETTINGS_TTL per process;
    `fresh` reads this one operator now (the router asks so when it matters) and updates that.
    """
    key = mailbox.lower()
    now = time.monotonic()
    with _lock:
        cached = _state.get("operator_sources")
        valid = cached and now - cached[1] < SETTINGS_TTL and _state.get("operator_sources_pid") == os.getpid()
    if fresh:
        with transaction() as conn:
            own = operators_store.source_of(conn, key)
        with _lock:
            if valid:
                overrides = _state["operator_sources"][0]
                if own is None:
                    overrides.pop(key, None)
                else:
                    overrides[key] = own
        return own or default
    if not valid:
        with transaction() as conn:
            overrides = operators_store.source_overrides(conn)
        with _lock:
            _state["operator_sources"], _state["operator_sources_pid"] = (overrides, now), os.getpid()
        return overrides.get(key, default)
    assert cached is not None
    return str(cached[0].get(key, default))


def source_for(settings: SyncSettings) -> RoutedSource:
    """The port for every operator: EWS or Graph per operator (its own source, else the `source` setting).

    Each inner source is built on first use, so a deployment needs only the credentials of
    the sources its operators use.
    """
    credential = env().graph_credential() if settings.graph_client_id else None
    key = (settings.model_dump_json(), service_account() if env().ews_username else None, repr(credential))
    with _lock:
        cached = _state.get("source")
        if cached and cached[0] == key and _state.get("source_pid") == os.getpid():
            return cached[1]
    default = settings.source.value

    def kind_of(mailbox: str, fresh: bool) -> str:
        return operator_source(mailbox, default, fresh)

    source = RoutedSource(kind_of, {"ews": lambda: _ews_source(settings), "graph": lambda: _graph_source(settings)})
    with _lock:
        _state["source"], _state["source_pid"] = (key, source), os.getpid()
    return source
