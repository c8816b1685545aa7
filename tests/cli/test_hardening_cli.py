"""Rough edges a new user meets, and clear-text credentials, through the installed command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.cli.conftest import Run

REPO = Path(__file__).resolve().parents[2]


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


def _write(tmp_path: Path, text: str, name: str = "operators.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def _emails(db: psycopg.Connection[Any]) -> dict[str, bool]:
    return {r["email"]: r["calendar_sync"] for r in db.execute("SELECT email, calendar_sync FROM operators")}


def test_dotted_capital_i_and_i_are_compared_the_same_way_by_python_and_postgres(
    run: Run, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # Python lowercases 'İ' to 'i̇', Postgres to 'i': the two rows were two operators to the importer and
    # one to the unique index (CardinalityViolation). Now the key is Python's, stored and compared as is.
    text = "email,name,calendar_sync\ninfo@example.com,A,true\nİnfo@example.com,B,true\n"
    result = run("operators", "import", _write(tmp_path, text))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "CardinalityViolation" not in result.stderr
    assert _emails(db) == {"info@example.com": True, "İnfo@example.com": True}
    keys = {r["email"]: r["email_key"] for r in db.execute("SELECT email, email_key FROM operators")}
    assert keys == {"info@example.com": "info@example.com", "İnfo@example.com": "i\u0307nfo@example.com"}
    again = run("operators", "import", _write(tmp_path, text))
    assert again.returncode == 0 and "0 new, 0 updated, 2 unchanged" in again.stdout, again.stdout

    # Across two files: the second file's İnfo@ neither disables nor renames the first file's info@.
    db.execute("TRUNCATE operators CASCADE")
    assert (
        run("operators", "import", _write(tmp_path, "email,name,calendar_sync\ninfo@example.com,A,true\n")).returncode
        == 0
    )
    second = run(
        "operators", "import", _write(tmp_path, "email,name,calendar_sync\nİnfo@example.com,B,false\n", "2.csv")
    )
    assert second.returncode == 0, second.stderr
    assert _emails(db) == {"info@example.com": True, "İnfo@example.com": False}
    shown = run("status", "--no-broker", "İNFO@example.com")
    assert "İnfo@example.com: disabled" in shown.stdout and "info@example.com:" not in shown.stdout, shown.stdout


def test_invisible_characters_are_refused_with_the_line(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    text = (
        "email,name,calendar_sync\ninfo@example.com,A,true\ninfo\u200b@example.com,B,true\n\ufeffbob@example.com,C,1\n"
    )
    result = run("operators", "import", _write(tmp_path, text))
    assert result.returncode == 2
    assert "line 3: email 'info\\u200b@example.com' holds the invisible character U+200B ZERO WIDTH SPACE" in (
        result.stderr
    ), result.stderr
    assert "line 4:" in result.stderr and "U+FEFF" in result.stderr
    assert _emails(db) == {}
    added = run("operators", "add", "ann\u00ad@example.com")
    assert added.returncode == 2 and "U+00AD SOFT HYPHEN" in added.stderr
    # Full-width letters are the same address (NFKC), so they are a duplicate, not a second operator.
    dup = run("operators", "import", _write(tmp_path, "email,name,calendar_sync\ninfo@example.com,A,true\n"
                                                      "\uff49\uff4e\uff46\uff4f@example.com,B,true\n"))  # fmt: skip
    assert dup.returncode == 2 and "line 3: duplicate email info@example.com (already on line 2)" in dup.stderr


def test_five_megabyte_header_line_is_a_clear_message_and_exit_2(
    run: Run, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    text = "email," + "x" * (5 * 1024 * 1024) + ",calendar_sync\nann@example.com,Ann,true\n"
    result = run("operators", "import", _write(tmp_path, text))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "_csv.Error" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr[:500]
    assert "line 1 is 5242900 characters long, not a header" in result.stderr
    assert _emails(db) == {}


def test_sync_wait_without_a_worker_says_so_at_once(run: Run, db: psycopg.Connection[Any]) -> None:
    assert run("operators", "add", "ann@example.com").returncode == 0
    # --timeout 600: were it to wait for a worker, run() would time out after 120 s and fail the test.
    result = run("sync", "ann@example.com", "--wait", "--timeout", "600")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no calsync worker is online" in result.stderr
    assert "celery -A calsync worker" in result.stderr
    assert "1 operator(s) due now" in result.stdout


def test_status_without_the_database_says_it_does_not_exist_and_how_to_create_it(run: Run, database_url: str) -> None:
    missing = urlsplit(database_url)._replace(path="/calsync_test_harden_no_such_db").geturl()
    result = run("status", env={"CALSYNC_DATABASE_URL": missing})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "the database 'calsync_test_harden_no_such_db' does not exist" in result.stderr
    assert "calsync db create && calsync db upgrade" in result.stderr and "make db" in result.stderr
    assert "start it" not in result.stderr


def test_make_test_says_what_it_installs_before_installing_it() -> None:
    plan = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    line = next(x for x in plan.splitlines() if "apt-get install" in x and "docker-compose" in x)
    assert line.index("installing it now with apt-get install docker-compose") < line.index("apt-get update")


def test_readme_does_not_claim_a_stale_duration_for_make_test() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    sentence = text[text.index("`make test` runs everything") :][:200]
    assert not re.search(r"about \d+ minutes", sentence), sentence


def _pytest_without_schema(ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALSYNC_EWS_SCHEMA_DIR": "/nonexistent/ews-schema", "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "tests/simulator/test_recurrence.py::test_weekly_interval_two_skips_days_before_start"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_missing_ews_schema_fails_under_ci_and_is_loud_locally() -> None:
    under_ci = _pytest_without_schema("true")
    assert under_ci.returncode != 0, under_ci.stdout
    assert "EWS schema not found at /nonexistent/ews-schema" in under_ci.stdout
    assert "1 error" in under_ci.stdout

    local = _pytest_without_schema("")
    assert local.returncode == 0, local.stdout
    assert "SIMULATOR TESTS SKIPPED: EWS SCHEMA MISSING" in local.stdout
    assert "1 skipped" in local.stdout


@pytest.mark.tooling
def test_make_lock_re_resolves_both_lock_files(tmp_path: Path) -> None:
    """In a copy of the files `make lock` reads and writes, so the worktree's pins stay as they are."""
    for name in ("Makefile", "requirements.in", "requirements-dev.in", "requirements.lock", "requirements-dev.lock"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    # Stale on purpose: one pin from each file removed; both must come back.
    run_lock = (tmp_path / "requirements.lock").read_text().splitlines()
    dev_lock = (tmp_path / "requirements-dev.lock").read_text().splitlines()
    (tmp_path / "requirements.lock").write_text("\n".join(x for x in run_lock if not x.startswith("celery==")) + "\n")
    (tmp_path / "requirements-dev.lock").write_text(
        "\n".join(x for x in dev_lock if not x.startswith("pytest==")) + "\n"
    )
    result = subprocess.run(
        ["make", "lock", f"PYTHON={sys.executable}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    new_run = (tmp_path / "requirements.lock").read_text().splitlines()
    new_dev = (tmp_path / "requirements-dev.lock").read_text().splitlines()
    assert any(x.startswith("celery==") for x in new_run) and any(x.startswith("exchangelib==") for x in new_run)
    assert any(x.startswith("pytest==") for x in new_dev) and any(x.startswith("ruff==") for x in new_dev)
    assert not set(new_run[1:]) & set(new_dev[1:]), "a pin in both lock files"
    assert new_run[0].startswith("# Pinned runtime") and new_dev[0].startswith("# Pinned development")
