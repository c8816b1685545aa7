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

    ews_username: str | None = None
    ews_password: SecretStr | None = None
    ews_password_file: Path | None = None
    ews_ca_bundle: Path | None = Field(
        default=None, description="PEM bundle of an internal CA that signed Exchange's certificate"
    )

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
    # The dispatcher claims less while the sync queue is deeper than the fleet drains
    # (calsync.backpressure); off only to measure what it prevents (bench/scenarios/backpressure.py).
    backpressure: bool = True

    @model_validator(mode="after")
    def _password_sources(self) -> EnvConfig:
        if self.ews_password is not None and self.ews_password_file is not None:
            raise ValueError("set only one of CALSYNC_EWS_PASSWORD and CALSYNC_EWS_PASSWORD_FILE, not both")
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


def load_env(**overrides: object) -> EnvConfig:
    """Read the environment once per call; errors name the variable and the fix."""
    try:
        return EnvConfig(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "_".join(str(p) for p in err["loc"]).upper()
            name = f"CALSYNC_{loc}" if loc else "environment"
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("; ".join(lines)) from exc


@lru_cache(maxsize=1)
def env() -> EnvConfig:
    return load_env()
