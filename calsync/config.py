"""Process configuration from the environment (CALSYNC_*).

Only what a process needs before it can reach Postgres lives here: connection URLs and
secrets. Everything an administrator tunes at run time (Exchange URL, batch size, windows)
is a setting stored in Postgres (calsync.store.settings), so that a change reaches every
worker on the next tick without a restart.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from calsync import redis_url

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/calsync"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(Exception):
    """A setting from the environment is wrong; the message names it and says how to fix it."""


class EnvConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALSYNC_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    # More specific URLs split the roles of the one Redis when a deployment wants to.
    broker_url: str | None = None
    result_backend_url: str | None = None
    redbeat_redis_url: str | None = None
    lock_redis_url: str | None = None
    # The master group the sentinels monitor, when a URL above is sentinel://.
    redis_sentinel_master: str = "mymaster"

    ews_username: str | None = None
    ews_password: SecretStr | None = None
    ews_password_file: Path | None = None
    ews_ca_bundle: Path | None = Field(
        default=None, description="PEM bundle of an internal CA that signed Exchange's certificate"
    )

    # Hostile or broken answers from Exchange (calsync.source.ews.connection). The deadline covers a
    # whole HTTP exchange (connect, headers, body): a server trickling one byte a minute cannot hold
    # a worker thread longer. 90 s is far above a healthy EWS answer (well under 10 s for 512
    # changes) and below Celery's soft limit (120 s), so a stuck request ends before Celery's would.
    ews_request_deadline_seconds: float = Field(default=90.0, gt=0, le=3600)
    # 32 MiB: a GetItem chunk is 100 items with only the fields calsync reads; even at 250 KB of body
    # text each that is 25 MB. Beyond that the answer is refused unread (memory stays bounded: at most
    # this much per worker thread, never the whole of a 60 MB or endless body).
    ews_max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)

    # Postgres sessions of the workers and beat (calsync.store.db). A worker frozen inside a transaction
    # (SIGSTOP, a stuck thread, a GC pause) holds its operator's row lock; Postgres ends such a session
    # after this long, so another worker can take the operator over once its lease expires. Below the
    # default lease (300 s); 0 switches it off.
    db_idle_in_transaction_timeout_seconds: float = Field(default=60.0, ge=0, le=86400)
    # No statement of calsync runs for long (a batch is at most a few thousand rows); a runaway one is
    # cancelled instead of holding locks for the rest of the lease. 0 switches it off.
    db_statement_timeout_seconds: float = Field(default=120.0, ge=0, le=86400)

    # Microsoft Graph app-only credential: a client secret (value or file) or a certificate
    # (one PEM file holding the private key and the certificate uploaded to the app).
    graph_client_secret: SecretStr | None = None
    graph_client_secret_file: Path | None = None
    graph_certificate: Path | None = None

    smtp_url: SecretStr | None = None
    smtp_from: str = "calsync@localhost"

    # Timing of the machinery. Production keeps the defaults; tests shorten them so that a
    # killed worker's lease or message comes back within seconds instead of minutes.
    dispatch_tick_seconds: float = Field(default=10.0, gt=0, le=3600)
    lease_seconds: float = Field(default=300.0, gt=0, le=86400)
    # In-sync operators polled one after another by one task (calsync.tasks.poll).
    poll_chunk_size: int = Field(default=25, ge=1, le=500)
    visibility_timeout: int = Field(default=3600, ge=10, le=7 * 86400)
    redbeat_lock_timeout: int = Field(default=30, ge=3, le=3600)
    # Push (issue 15): how often the beat sweeps subscriptions (dead ones, missing ones,
    # emails), and how long one StatusFrequency minute lasts. Production keeps 60; tests set
    # it (and the simulator's --push-minute-seconds) to a second or less.
    push_sweep_seconds: float = Field(default=30.0, gt=0, le=3600)
    push_minute_seconds: float = Field(default=60.0, gt=0, le=60)
    # How long the listener holds a lone keep-alive for others to share one Postgres statement
    # with (calsync.listener.group); 0 records each at once. Exchange waits for the answer,
    # nobody else does.
    listener_keepalive_linger_ms: float = Field(default=200.0, ge=0, le=5000)
    # The dispatcher claims less while the sync queue is deeper than the fleet drains
    # (calsync.backpressure); off only to measure what it prevents (bench/scenarios/backpressure.py).
    backpressure: bool = True

    @model_validator(mode="after")
    def _password_sources(self) -> EnvConfig:
        if self.ews_password is not None and self.ews_password_file is not None:
            raise ValueError("set only one of CALSYNC_EWS_PASSWORD and CALSYNC_EWS_PASSWORD_FILE, not both")
        graph = [self.graph_client_secret, self.graph_client_secret_file, self.graph_certificate]
        if sum(v is not None for v in graph) > 1:
            raise ValueError(
                "set only one of CALSYNC_GRAPH_CLIENT_SECRET, CALSYNC_GRAPH_CLIENT_SECRET_FILE and "
                "CALSYNC_GRAPH_CERTIFICATE"
            )
        return self

    @model_validator(mode="after")
    def _redis_urls(self) -> EnvConfig:
        redis_url.check_master_name(self.redis_sentinel_master)
        for variable, value in (
            ("CALSYNC_REDIS_URL", self.redis_url),
            ("CALSYNC_BROKER_URL", self.broker_url),
            ("CALSYNC_RESULT_BACKEND_URL", self.result_backend_url),
            ("CALSYNC_REDBEAT_REDIS_URL", self.redbeat_redis_url),
            ("CALSYNC_LOCK_REDIS_URL", self.lock_redis_url),
        ):
            if value is not None:
                redis_url.parse(value, variable)
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.result_backend_url or self.redis_url

    @property
    def redbeat_url(self) -> str:
        return self.redbeat_redis_url or self.redis_url

    @property
    def lock_url(self) -> str:
        return self.lock_redis_url or self.redis_url

    def ews_password_value(self) -> str | None:
        """The service account's password, read from the file at call time so rotation needs no restart."""
        if self.ews_password is not None:
            return self.ews_password.get_secret_value()
        if self.ews_password_file is not None:
            try:
                return self.ews_password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"CALSYNC_EWS_PASSWORD_FILE={self.ews_password_file}: cannot read it ({exc.strerror}); "
                    "point it at a readable file that holds the service account's password"
                ) from exc
        return None

    def ews_password_source(self) -> str:
        if self.ews_password is not None:
            return "environment (CALSYNC_EWS_PASSWORD)"
        if self.ews_password_file is not None:
            return f"file {self.ews_password_file} (CALSYNC_EWS_PASSWORD_FILE)"
        return "not set"

    def graph_credential(self) -> str | dict[str, str] | None:
        """MSAL's client_credential: the secret, or the certificate's key and thumbprint; read at call time."""
        if self.graph_client_secret is not None:
            return self.graph_client_secret.get_secret_value()
        if self.graph_client_secret_file is not None:
            try:
                return self.graph_client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"CALSYNC_GRAPH_CLIENT_SECRET_FILE={self.graph_client_secret_file}: cannot read it "
                    f"({exc.strerror}); point it at a readable file that holds the app's client secret"
                ) from exc
        if self.graph_certificate is not None:
            return _certificate_credential(self.graph_certificate)
        return None

    def graph_secret_source(self) -> str:
        if self.graph_client_secret is not None:
            return "environment (CALSYNC_GRAPH_CLIENT_SECRET)"
        if self.graph_client_secret_file is not None:
            return f"file {self.graph_client_secret_file} (CALSYNC_GRAPH_CLIENT_SECRET_FILE)"
        if self.graph_certificate is not None:
            return f"certificate {self.graph_certificate} (CALSYNC_GRAPH_CERTIFICATE)"
        return "not set"


def _certificate_credential(path: Path) -> dict[str, str]:
    """MSAL wants the private key and the certificate's SHA-1 thumbprint (as Entra ID shows it)."""
    import base64
    import hashlib
    import re

    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(
            f"CALSYNC_GRAPH_CERTIFICATE={path}: cannot read it ({exc.strerror}); point it at a PEM file with "
            "the app's private key and its certificate"
        ) from exc
    key = re.search(r"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.+?-----END (?:RSA |EC )?PRIVATE KEY-----", text, re.S)
    cert = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", text, re.S)
    if key is None or cert is None:
        raise ConfigError(
            f"CALSYNC_GRAPH_CERTIFICATE={path}: expected a PEM private key and a PEM certificate in one file "
            "(cat key.pem cert.pem > calsync-graph.pem)"
        )
    der = base64.b64decode("".join(cert.group(1).split()))
    return {
        "private_key": key.group(0),
        "thumbprint": hashlib.sha1(der).hexdigest().upper(),
        "public_certificate": cert.group(0),
    }


def load_env(**overrides: object) -> EnvConfig:
    """Read the environment once per call; errors name the variable and the fix."""
    try:
        return EnvConfig(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "_".join(str(p) for p in err["loc"]).upper()
            if not loc:  # a check across variables: its message names them itself
                lines.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            lines.append(f"CALSYNC_{loc}: {err['msg']}")
        raise ConfigError("; ".join(lines)) from exc


@lru_cache(maxsize=1)
def env() -> EnvConfig:
    return load_env()
