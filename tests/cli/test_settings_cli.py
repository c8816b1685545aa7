"""`calsync settings`: refused values change nothing, good ones are stored, secrets stay hidden."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from calsync.settings import SETTING_KEYS, SyncSettings, allowed_text
from calsync.store import settings as settings_store
from tests.cli.conftest import Run

BAD_VALUES: list[tuple[str, str]] = [
    ("exchange_url", "ftp://mail.example.com/EWS/Exchange.asmx"),
    ("exchange_url", "mail.example.com"),
    ("exchange_url", ""),
    ("exchange_version", "Exchange2007"),
    ("exchange_version", "2013"),
    ("batch_size", "0"),
    ("batch_size", "513"),
    ("batch_size", "1.5"),
    ("batch_size", "many"),
    ("notification_url", "ftp://crm.example.com/listener"),
    ("notification_url", "crm.example.com"),
    ("notification_frequency_minutes", "0"),
    ("notification_frequency_minutes", "1441"),
    ("notification_frequency_minutes", "soon"),
    ("notify_sync_failure_to", "not-an-address"),
    ("notify_sync_failure_to", "ops@example.com; nope"),
    ("notify_sync_failure_to", "ops@example.com, it@example.com"),
    ("poll_interval_minutes", "0"),
    ("poll_interval_minutes", "-5"),
    ("poll_interval_minutes", "1441"),
    ("past_window_days", "-1"),
    ("past_window_days", "3651"),
    ("future_horizon_days", "0"),
    ("future_horizon_days", "731"),
    ("sync_private_details", "maybe"),
    ("sync_private_details", "2"),
    ("ews_max_concurrency", "0"),
    ("ews_max_concurrency", "257"),
    ("push_safety_poll_minutes", "0"),
    ("push_safety_poll_minutes", "1441"),
    ("notification_url", "https://crm.example.com/ews/push?token=1"),
    ("source", "owa"),
    ("graph_tenant_id", "contoso tenant"),
    ("graph_client_id", "{5e1f}"),
    ("graph_authority_url", "login.microsoftonline.com"),
    ("graph_base_url", "ftp://graph.microsoft.com/v1.0"),
    ("graph_max_concurrency", "0"),
    ("allow_insecure_http", "maybe"),
]

GOOD_VALUES: dict[str, tuple[str, Any]] = {
    "exchange_url": ("https://mail.example.com/EWS/Exchange.asmx", "https://mail.example.com/EWS/Exchange.asmx"),
    "exchange_version": ("Exchange2019", "Exchange2019"),
    "batch_size": ("1", 1),
    "notification_url": ("https://crm.example.com/ews/notify", "https://crm.example.com/ews/notify"),
    "notification_frequency_minutes": ("1440", 1440),
    "notify_sync_failure_to": ("ops@example.com;it@example.com", "ops@example.com; it@example.com"),
    "poll_interval_minutes": ("0.5", 0.5),
    "past_window_days": ("0", 0),
    "future_horizon_days": ("730", 730),
    "sync_private_details": ("yes", True),
    "ews_max_concurrency": ("27", 27),
    "push_safety_poll_minutes": ("120", 120.0),
    "source": ("graph", "graph"),
    "graph_tenant_id": ("c0ffee00-0000-4000-8000-000000000016", "c0ffee00-0000-4000-8000-000000000016"),
    "graph_client_id": ("5e1f0000-0000-4000-8000-0000ca15c0de", "5e1f0000-0000-4000-8000-0000ca15c0de"),
    "graph_authority_url": ("https://login.microsoftonline.us/", "https://login.microsoftonline.us"),
    "graph_base_url": ("https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/v1.0"),
    "graph_max_concurrency": ("64", 64),
    "allow_insecure_http": ("true", True),
}


def stored(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return {r["key"]: r["value"] for r in db.execute("SELECT key, value FROM settings")}


def test_every_setting_has_bad_and_good_cases() -> None:
    assert {k for k, _ in BAD_VALUES} == set(SETTING_KEYS) == set(GOOD_VALUES)


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_value_is_refused_in_one_line_and_changes_nothing(
    run: Run, db: psycopg.Connection[Any], key: str, value: str
) -> None:
    good_raw, good = GOOD_VALUES[key]
    settings_store.set_value(db, key, good_raw)  # in-process: only the refusal needs the CLI
    result = run("settings", "set", key, value)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert key in line
    assert repr(value) in line
    assert allowed_text(key) in line
    assert stored(db) == {key: good}


def test_unknown_key_is_refused(run: Run, db: psycopg.Connection[Any]) -> None:
    result = run("settings", "set", "batchsize", "10")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "batchsize" in result.stderr and "batch_size" in result.stderr
    assert stored(db) == {}


@pytest.mark.slow
def test_good_values_are_stored_and_shown(run: Run, db: psycopg.Connection[Any]) -> None:
    before = json.loads(run("settings", "show", "--json").stdout)["settings"]
    assert all(item["default"] for item in before.values())
    for key, (raw, _) in GOOD_VALUES.items():
        result = run("settings", "set", key, raw)
        assert result.returncode == 0, result.stderr
    shown = json.loads(run("settings", "show", "--json").stdout)["settings"]
    defaults = SyncSettings().model_dump(mode="json")
    for key, (_, expected) in GOOD_VALUES.items():
        assert shown[key]["value"] == expected
        assert shown[key]["default"] is (expected == defaults[key])
        assert shown[key]["allowed"] == allowed_text(key)
    assert stored(db) == {key: expected for key, (_, expected) in GOOD_VALUES.items()}


def test_empty_notification_url_means_polling_only(run: Run, db: psycopg.Connection[Any]) -> None:
    run("settings", "set", "notification_url", "https://crm.example.com/ews/notify")
    assert run("settings", "set", "notification_url", "").returncode == 0
    shown = json.loads(run("settings", "show", "--json").stdout)["settings"]
    assert shown["notification_url"] == {
        "value": None,
        "default": True,
        "allowed": allowed_text("notification_url"),
    }


def test_show_says_where_secrets_come_from_without_printing_them(run: Run, db: psycopg.Connection[Any]) -> None:
    env = {
        "CALSYNC_EWS_USERNAME": "svc-calsync-user",
        "CALSYNC_EWS_PASSWORD": "Pw-In-Env-42",
        "CALSYNC_SMTP_URL": "smtp://mailer:Smtp-Pw-99@smtp.example.com:587",
    }
    text = run("settings", "show", env=env)
    as_json = run("settings", "show", "--json", env=env)
    for result in (text, as_json):
        assert result.returncode == 0, result.stderr
        for secret in env.values():
            assert secret not in result.stdout + result.stderr
        assert "Smtp-Pw-99" not in result.stdout
    secrets = json.loads(as_json.stdout)["secrets"]
    assert secrets["ews_username"] == "environment (CALSYNC_EWS_USERNAME)"
    assert secrets["ews_password"] == "environment (CALSYNC_EWS_PASSWORD)"
    assert secrets["smtp_url"] == "environment (CALSYNC_SMTP_URL: smtp://mailer:***@smtp.example.com:587)"
    for key in SETTING_KEYS:
        assert key in text.stdout


def test_show_names_the_password_file_and_unset_secrets(run: Run, db: psycopg.Connection[Any], tmp_path: Any) -> None:
    password_file = tmp_path / "ews-password"
    password_file.write_text("Pw-In-File-7\n")
    result = run("settings", "show", "--json", env={"CALSYNC_EWS_PASSWORD_FILE": str(password_file)})
    assert "Pw-In-File-7" not in result.stdout
    secrets = json.loads(result.stdout)["secrets"]
    assert secrets["ews_password"] == f"file {password_file} (CALSYNC_EWS_PASSWORD_FILE)"
    assert secrets["ews_username"].startswith("not set")
    assert secrets["smtp_url"].startswith("not set")
    missing = run("settings", "show", "--json", env={"CALSYNC_EWS_PASSWORD_FILE": str(tmp_path / "nope")})
    assert "NOT READABLE" in json.loads(missing.stdout)["secrets"]["ews_password"]


def test_show_names_the_graph_credential_without_printing_it(
    run: Run, db: psycopg.Connection[Any], tmp_path: Any
) -> None:
    secret = run("settings", "show", "--json", env={"CALSYNC_GRAPH_CLIENT_SECRET": "Graph-Secret-31"})
    assert "Graph-Secret-31" not in secret.stdout + secret.stderr
    assert json.loads(secret.stdout)["secrets"]["graph_credential"] == "environment (CALSYNC_GRAPH_CLIENT_SECRET)"
    secret_file = tmp_path / "graph-secret"
    secret_file.write_text("Graph-Secret-In-File\n")
    from_file = run("settings", "show", "--json", env={"CALSYNC_GRAPH_CLIENT_SECRET_FILE": str(secret_file)})
    assert "Graph-Secret-In-File" not in from_file.stdout
    assert json.loads(from_file.stdout)["secrets"]["graph_credential"].startswith(f"file {secret_file}")
    missing = run("settings", "show", "--json", env={"CALSYNC_GRAPH_CERTIFICATE": str(tmp_path / "nope.pem")})
    assert "NOT READABLE" in json.loads(missing.stdout)["secrets"]["graph_credential"]
    both = run(
        "settings",
        "show",
        env={"CALSYNC_GRAPH_CLIENT_SECRET": "x", "CALSYNC_GRAPH_CLIENT_SECRET_FILE": str(secret_file)},
    )
    assert both.returncode != 0 and "set only one of CALSYNC_GRAPH_CLIENT_SECRET" in both.stderr
