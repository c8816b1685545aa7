"""The console's accounts and proxy trust (pure logic, no server): what is refused and why."""

from __future__ import annotations

import ipaddress

import pytest

from calsync.config import ConfigError
from calsync.console.auth import check_password, hash_password
from calsync.console.config import ConsoleConfig, load, parse_admins
from calsync.console.web import safe_next


def test_admin_entries_need_argon2_hashes_and_a_bad_entry_is_not_echoed() -> None:
    good = hash_password("long enough pw")
    assert parse_admins(f"# comment\nalice:{good}\n", "file") == {"alice": good}
    with pytest.raises(ConfigError) as info:
        parse_admins("bob:PlainPassword1", "CALSYNC_CONSOLE_ADMINS")
    assert "entry 1" in str(info.value) and "PlainPassword1" not in str(info.value)


def test_password_check() -> None:
    config = ConsoleConfig(admins={"alice": hash_password("right one")}, secret_key="k" * 32,
                           secret_key_generated=False, trusted_header=None)  # fmt: skip
    assert check_password(config, "alice", "right one")
    assert not check_password(config, "alice", "wrong one")
    assert not check_password(config, "mallory", "right one")


def test_load_refuses_a_console_nobody_can_log_into(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ADMINS", "ADMINS_FILE", "TRUSTED_HEADER", "TRUSTED_PROXIES", "SECRET_KEY", "SECRET_KEY_FILE"):
        monkeypatch.delenv(f"CALSYNC_CONSOLE_{name}", raising=False)
    with pytest.raises(ConfigError, match="no console administrators"):
        load()
    monkeypatch.setenv("CALSYNC_CONSOLE_TRUSTED_HEADER", "X-Remote-User")
    with pytest.raises(ConfigError, match="CALSYNC_CONSOLE_TRUSTED_PROXIES"):
        load()
    monkeypatch.setenv("CALSYNC_CONSOLE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    config = load()
    assert config.trusts("10.1.2.3") and config.trusts("127.0.0.1")
    assert not config.trusts("192.168.1.1") and not config.trusts(None)
    assert config.secret_key_generated and not config.cookie_secure
    assert load(cookie_secure=True).cookie_secure, "TLS in this process sets Secure on the cookie"
    monkeypatch.setenv("CALSYNC_CONSOLE_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32"):
        load()


def test_trust_is_by_network() -> None:
    config = ConsoleConfig(admins={}, secret_key="k" * 32, secret_key_generated=False, trusted_header="X-User",
                           trusted_proxies=(ipaddress.ip_network("::1/128"),))  # fmt: skip
    assert config.trusts("::1") and not config.trusts("127.0.0.1") and not config.trusts("not-an-ip")


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/operators?q=a", "/operators?q=a"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
     ("/\\evil", "/"), (None, "/")],
)  # fmt: skip
def test_next_after_login_stays_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
