"""Rough edges a new user meets, and clear-text credentials, through the installed command."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.cli.conftest import Run


def stored(db: psycopg.Connection[Any]) -> dict[str, Any]:
    return {r["key"]: r["value"] for r in db.execute("SELECT key, value FROM settings")}


def test_unknown_key_blames_the_key_and_suggests_the_nearest(run: Run, db: psycopg.Connection[Any]) -> None:
    result = run("settings", "set", "batchsize", "10")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert result.stderr.count("\n") == 1, result.stderr
    assert "unknown setting 'batchsize'" in line and "did you mean batch_size?" in line
    assert "not allowed" not in line and "'10'" not in line, "the value is not what is wrong"
    assert run("settings", "set", "exchange-urll", "https://x.example.com/EWS/Exchange.asmx").stderr.count(
        "did you mean exchange_url?"
    )
    assert stored(db) == {}


def test_http_exchange_url_is_refused_unless_loopback_or_allowed(run: Run, db: psycopg.Connection[Any]) -> None:
    url = "http://mail.example.com/EWS/Exchange.asmx"
    refused = run("settings", "set", "exchange_url", url)
    assert refused.returncode == 2
    assert "clear text" in refused.stderr and "allow_insecure_http true" in refused.stderr
    assert "https://" in refused.stderr
    assert stored(db) == {}

    for loopback in ("http://127.0.0.1:8080/EWS/Exchange.asmx", "http://localhost:8080/EWS/Exchange.asmx",
                     "http://[::1]:8080/EWS/Exchange.asmx", "https://mail.example.com/EWS/Exchange.asmx"):  # fmt: skip
        ok = run("settings", "set", "exchange_url", loopback)
        assert ok.returncode == 0, ok.stderr

    assert run("settings", "set", "allow_insecure_http", "true").returncode == 0
    allowed = run("settings", "set", "exchange_url", url)
    assert allowed.returncode == 0, allowed.stderr
    assert stored(db)["exchange_url"] == url
    # Taking the permission back while an http:// URL is set is refused too: it would stop every worker.
    back = run("settings", "set", "allow_insecure_http", "false")
    assert back.returncode == 2 and "clear text" in back.stderr
    assert stored(db)["allow_insecure_http"] is True
