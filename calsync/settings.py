"""Run-time settings of a calsync deployment (the seed's "Application Settings").

They live in Postgres (table `settings`, one JSON value per key) rather than in the
environment, so that `calsync settings set` reaches every worker and the beat on their next
tick without a restart. pydantic validates each value; an error names the key, the value and
what is allowed. Secrets are never settings: see calsync.config.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EMAIL_RE = re.compile(r"^[^@\s;,<>\"]+@[^@\s;,<>\"]+\.[^@\s;,<>\"]+$")


class ExchangeVersion(StrEnum):
    EXCHANGE2010 = "Exchange2010"
    EXCHANGE2010_SP1 = "Exchange2010_SP1"
    EXCHANGE2010_SP2 = "Exchange2010_SP2"
    EXCHANGE2013 = "Exchange2013"
    EXCHANGE2013_SP1 = "Exchange2013_SP1"
    EXCHANGE2016 = "Exchange2016"
    EXCHANGE2019 = "Exchange2019"


class SourceKind(StrEnum):
    """Which API a mailbox is read through: EWS (on-premises) or Microsoft Graph (Exchange Online)."""

    EWS = "ews"
    GRAPH = "graph"


class SettingError(ValueError):
    """A setting's value is not allowed; str() is the one line shown to the administrator."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: {value!r} is not allowed; {allowed}")


class UnknownSetting(SettingError):
    """A key that is no setting: the message blames the key (not the value) and names the nearest one."""

    def __init__(self, key: str, value: object) -> None:
        self.key, self.value = key, value
        self.suggestion = nearest_key(key)
        hint = f"did you mean {self.suggestion}? " if self.suggestion else ""
        self.allowed = "known settings: " + ", ".join(SETTING_KEYS)
        ValueError.__init__(self, f"unknown setting {key!r}; {hint}({self.allowed})")


def nearest_key(key: str) -> str | None:
    """The setting a mistyped key most likely means (batchsize -> batch_size)."""
    squashed = {k.replace("_", ""): k for k in SETTING_KEYS}
    typed = key.strip().lower().replace("-", "_")
    if typed.replace("_", "") in squashed:
        return squashed[typed.replace("_", "")]
    close = difflib.get_close_matches(typed, SETTING_KEYS, n=1, cutoff=0.6)
    return close[0] if close else None


class SyncSettings(BaseModel):
    """Every setting with its default; the defaults make the simulator demo work out of the box."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    exchange_url: str = Field(
        default="http://127.0.0.1:8080/EWS/Exchange.asmx",
        description="EWS endpoint, https://host/EWS/Exchange.asmx",
    )
    exchange_version: ExchangeVersion = Field(default=ExchangeVersion.EXCHANGE2013)
    batch_size: int = Field(default=512, ge=1, le=512, description="changes per SyncFolderItems batch, 1..512")
    notification_url: str | None = Field(default=None, description="push listener URL, or none for polling only")
    notification_frequency_minutes: int = Field(
        default=30, ge=1, le=1440, description="retry a failing sync this long, then cancel it and email"
    )
    notify_sync_failure_to: str = Field(default="", description="semicolon-separated email addresses")
    poll_interval_minutes: float = Field(default=5, gt=0, le=1440, description="minutes between polls of a mailbox")
    past_window_days: int = Field(default=180, ge=0, le=3650, description="past appointments kept at first sync")
    future_horizon_days: int = Field(default=365, ge=1, le=730, description="recurring occurrences kept ahead")
    sync_private_details: bool = Field(
        default=False, description="copy subject, body, location and attendees of private appointments"
    )
    ews_max_concurrency: int = Field(
        default=10, ge=1, le=256, description="fleet-wide concurrent EWS requests per service account"
    )
    push_safety_poll_minutes: float = Field(
        default=60,
        gt=0,
        le=1440,
        description="minutes between polls of a mailbox while its push subscription is healthy",
    )
    allow_insecure_http: bool = Field(
        default=False,
        description="accept an http:// exchange_url on a non-loopback host (sends the password in clear text)",
    )

    # Microsoft Graph (Exchange Online). The client secret or certificate is never a setting:
    # CALSYNC_GRAPH_CLIENT_SECRET, CALSYNC_GRAPH_CLIENT_SECRET_FILE or CALSYNC_GRAPH_CERTIFICATE.
    source: SourceKind = Field(
        default=SourceKind.EWS, description="default source of an operator's mailbox (an operator may override it)"
    )
    graph_tenant_id: str | None = Field(default=None, description="Entra ID tenant (GUID or domain)")
    graph_client_id: str | None = Field(default=None, description="application (client) id of calsync's app")
    graph_authority_url: str = Field(
        default="https://login.microsoftonline.com",
        description="Entra ID authority host; national clouds differ (login.microsoftonline.us, ...)",
    )
    graph_base_url: str = Field(
        default="https://graph.microsoft.com/v1.0",
        description="Graph API root; national clouds differ (graph.microsoft.us/v1.0, ...)",
    )
    graph_max_concurrency: int = Field(
        default=16, ge=1, le=256, description="fleet-wide concurrent Graph requests of the app (4 per mailbox at most)"
    )

    @field_validator("graph_tenant_id", "graph_client_id")
    @classmethod
    def _graph_id(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        assert v is not None
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$", v):
            raise ValueError("must be a GUID such as 6f1c5c3e-0000-4000-8000-000000000000 (or the tenant's domain)")
        return v

    @field_validator("graph_authority_url", "graph_base_url")
    @classmethod
    def _graph_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError("must be an http:// or https:// URL, e.g. https://graph.microsoft.com/v1.0")
        return v.rstrip("/")

    @field_validator("exchange_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError("must be an http:// or https:// URL, e.g. https://mail.example.com/EWS/Exchange.asmx")
        return v

    @model_validator(mode="after")
    def _clear_text_credentials(self) -> SyncSettings:
        if insecure_http(self.exchange_url) and not self.allow_insecure_http:
            raise ValueError(
                "http:// sends the service account's password in clear text (Basic auth); use https://, or, only on "
                "a network you trust, run `calsync settings set allow_insecure_http true` first "
                "(http:// to 127.0.0.1/localhost, such as the simulator, is always allowed)"
            )
        for name in ("graph_authority_url", "graph_base_url"):
            if insecure_http(getattr(self, name)):
                raise ValueError(
                    f"{name}: http:// would send the app's secret or tokens in clear text; use https:// "
                    "(http:// to 127.0.0.1/localhost, such as the simulator, is allowed)"
                )
        return self

    @field_validator("notification_url")
    @classmethod
    def _notification_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        assert v is not None
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError("must be an http:// or https:// URL, or empty for polling only")
        if "?" in v or "#" in v:
            raise ValueError("must have no ?query or #fragment: the listener's per-subscription secret is appended")
        return v

    @field_validator("notify_sync_failure_to")
    @classmethod
    def _addresses(cls, v: str) -> str:
        addresses = split_addresses(v)
        bad = [a for a in addresses if not EMAIL_RE.match(a)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}; separate addresses with ';'")
        return "; ".join(addresses)

    def failure_recipients(self) -> list[str]:
        return split_addresses(self.notify_sync_failure_to)


def insecure_http(url: str) -> bool:
    """True for http:// to anything but this machine (loopback: the simulator, an SSH tunnel)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def split_addresses(value: str) -> list[str]:
    return [a.strip() for a in value.split(";") if a.strip()]


SETTING_KEYS: tuple[str, ...] = tuple(SyncSettings.model_fields)


def allowed_text(key: str) -> str:
    """What a key accepts, for error messages and `settings show`."""
    field = SyncSettings.model_fields[key]
    if key == "exchange_version":
        return "one of " + ", ".join(v.value for v in ExchangeVersion)
    if key == "batch_size":
        return "an integer from 1 to 512 (Exchange's MaxChangesReturned range)"
    if key in ("sync_private_details", "allow_insecure_http"):
        return "true or false"
    if key == "source":
        return "one of " + ", ".join(v.value for v in SourceKind)
    bounds = []
    for meta in field.metadata:
        for name, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if hasattr(meta, name):
                bounds.append(f"{word} {getattr(meta, name)}")
    desc = field.description or ""
    return (desc + ("; " if desc and bounds else "") + " and ".join(bounds)).strip() or "see the README"


def validate_one(key: str, raw: Any, current: SyncSettings | None = None) -> SyncSettings:
    """Return settings with `key` set to `raw`, or raise SettingError naming what is allowed."""
    if key not in SyncSettings.model_fields:
        raise UnknownSetting(key, raw)
    base = (current or SyncSettings()).model_dump()
    if SyncSettings.model_fields[key].annotation is bool and isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise SettingError(key, raw, allowed_text(key))
        raw = lowered in ("true", "1", "yes", "on")
    base[key] = raw
    try:
        return SyncSettings.model_validate(base)
    except ValidationError as exc:
        msgs = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise SettingError(key, raw, f"{allowed_text(key)} ({msgs})") from exc
