"""The console's own configuration, from the environment (CALSYNC_CONSOLE_*).

Admin accounts and the session key are secrets, so they come from the environment or from
files, never from the settings table (which every worker reads and `settings show` prints).
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from calsync.config import ConfigError


class ConsoleEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALSYNC_CONSOLE_", extra="ignore")

    # "name:argon2-hash" entries separated by whitespace or newlines (hashes have no spaces).
    admins: SecretStr | None = None
    admins_file: Path | None = None
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    # Reverse-proxy authentication: the header naming the user, trusted only from these peers.
    trusted_header: str | None = None
    trusted_proxies: str = ""
    # Secure cookies without TLS in this process (TLS ends at a reverse proxy).
    cookie_secure: bool = False
    session_max_age: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)


@dataclass(frozen=True)
class ConsoleConfig:
    admins: dict[str, str]  # name -> argon2 hash
    secret_key: str
    secret_key_generated: bool
    trusted_header: str | None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default=())
    cookie_secure: bool = False
    session_max_age: int = 8 * 3600
    max_upload_bytes: int = 20 * 1024 * 1024

    def trusts(self, peer: str | None) -> bool:
        if not self.trusted_header or not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self.trusted_proxies)


def parse_admins(text: str, source: str) -> dict[str, str]:
    """`name:hash` entries; a bad entry is named by its position, never echoed (it may hold a password)."""
    admins: dict[str, str] = {}
    entries = [e for line in text.splitlines() if not line.strip().startswith("#") for e in line.split()]
    for number, entry in enumerate(entries, start=1):
        name, sep, hashed = entry.partition(":")
        if not sep or not name or not hashed.startswith("$argon2"):
            raise ConfigError(
                f"{source}: entry {number} is not NAME:ARGON2-HASH; create one with "
                "`calsync console hash-password` (plain passwords are refused)"
            )
        admins[name] = hashed
    return admins


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror}); fix the path or its permissions") from exc


def load(cookie_secure: bool = False) -> ConsoleConfig:
    try:
        raw = ConsoleEnv()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"CALSYNC_CONSOLE_{str(first['loc'][0]).upper()}: {first['msg']}") from exc
    admins: dict[str, str] = {}
    if raw.admins is not None:
        admins.update(parse_admins(raw.admins.get_secret_value(), "CALSYNC_CONSOLE_ADMINS"))
    if raw.admins_file is not None:
        admins.update(parse_admins(_read(raw.admins_file, "CALSYNC_CONSOLE_ADMINS_FILE"), str(raw.admins_file)))
    if not admins and not raw.trusted_header:
        raise ConfigError(
            "no console administrators: set CALSYNC_CONSOLE_ADMINS or CALSYNC_CONSOLE_ADMINS_FILE to "
            "NAME:HASH lines made with `calsync console hash-password`, or CALSYNC_CONSOLE_TRUSTED_HEADER "
            "behind an authenticating reverse proxy"
        )
    key = None
    if raw.secret_key is not None and raw.secret_key.get_secret_value():  # empty: unset (compose's default)
        key = raw.secret_key.get_secret_value()
    elif raw.secret_key_file is not None:
        key = _read(raw.secret_key_file, "CALSYNC_CONSOLE_SECRET_KEY_FILE").strip()
    if key is not None and len(key) < 32:
        raise ConfigError("CALSYNC_CONSOLE_SECRET_KEY: at least 32 characters; make one with `openssl rand -hex 32`")
    proxies = []
    for item in raw.trusted_proxies.replace(",", " ").split():
        try:
            proxies.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(f"CALSYNC_CONSOLE_TRUSTED_PROXIES: {item!r} is not an IP address or network") from exc
    if raw.trusted_header and not proxies:
        raise ConfigError(
            "CALSYNC_CONSOLE_TRUSTED_HEADER needs CALSYNC_CONSOLE_TRUSTED_PROXIES (the proxy's address), "
            "else anyone could send the header"
        )
    return ConsoleConfig(
        admins=admins,
        secret_key=key or secrets.token_hex(32),
        secret_key_generated=key is None,
        trusted_header=raw.trusted_header,
        trusted_proxies=tuple(proxies),
        cookie_secure=cookie_secure or raw.cookie_secure,
        session_max_age=raw.session_max_age,
        max_upload_bytes=raw.max_upload_bytes,
    )
