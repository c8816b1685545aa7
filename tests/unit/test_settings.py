"""Settings validation: one line naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from calsync.settings import SettingError, validate_one


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("batch_size", "0", "1 to 512"),
        ("batch_size", "513", "1 to 512"),
        ("exchange_version", "Exchange2007", "Exchange2019"),
        ("notify_sync_failure_to", "ops@example.com; not-an-address", "not-an-address"),
        ("sync_private_details", "maybe", "true or false"),
        ("exchange_url", "ftp://mail", "http"),
    ],
)
def test_bad_values_are_refused_with_the_rule(key: str, value: str, needle: str) -> None:
    with pytest.raises(SettingError) as info:
        validate_one(key, value)
    message = str(info.value)
    assert message.startswith(f"{key}: {value!r}")
    assert needle in message
    assert "\n" not in message


def test_unknown_key_is_blamed_not_its_value() -> None:
    with pytest.raises(SettingError) as info:
        validate_one("no_such_setting", "1")
    assert str(info.value).startswith("unknown setting 'no_such_setting'")
    assert "did you mean" not in str(info.value)  # nothing is near enough to suggest
    with pytest.raises(SettingError, match=r"did you mean batch_size\?"):
        validate_one("batchsize", "10")
    with pytest.raises(SettingError, match=r"did you mean poll_interval_minutes\?"):
        validate_one("poll_interval_minute", "5")


def test_good_values_are_normalised() -> None:
    s = validate_one("notify_sync_failure_to", "ops@example.com;crm-admin@example.com")
    assert s.failure_recipients() == ["ops@example.com", "crm-admin@example.com"]
    assert validate_one("batch_size", "7").batch_size == 7
    assert validate_one("sync_private_details", "yes").sync_private_details is True
