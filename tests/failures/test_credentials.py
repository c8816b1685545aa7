"""No credential in any log line, at debug level too: a real worker at `-l debug` meets a 401."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from calsync import celery_procs, logredact
from calsync.simulator import Simulator, SimulatorServer, generate, mailbox_email

from .conftest import Smtp, add_operators, configure, purge_queues, wait_for
from .test_fleet import tick

pytestmark = [pytest.mark.usefixtures("clean_failures", "service_env"), pytest.mark.timeout(180)]

WRONG = "Wr0ng-Passw0rd!"


def test_debug_worker_log_of_a_401_has_no_password_and_no_basic_header(
    db: psycopg.Connection[Any], clean_redis: redis.Redis, smtp: Smtp, tmp_path: Path, database_url: str,
    redis_url: str, serve: Callable[[Simulator], SimulatorServer],
) -> None:  # fmt: skip
    server = serve(generate(2, 5, seed=4))
    configure(server.ews_url, notification_frequency_minutes=30, poll_interval_minutes=60)
    add_operators(db, [mailbox_email(1), mailbox_email(2)])
    purge_queues()
    log = tmp_path / "worker-debug.log"
    env = {
        "CALSYNC_DATABASE_URL": database_url,
        "CALSYNC_REDIS_URL": redis_url,
        "CALSYNC_EWS_USERNAME": "svc-calsync",
        "CALSYNC_EWS_PASSWORD": WRONG,
        "CALSYNC_SMTP_URL": smtp.url,
    }
    proc: subprocess.Popen[bytes] = celery_procs.start_worker(
        f"creds-{os.getpid()}", env, concurrency=2, log_file=log, loglevel="DEBUG"
    )
    try:
        assert tick() == 2
        pause = wait_for(lambda: db.execute("SELECT * FROM global_pause").fetchone(), 90, "the Unauthorized pause")
        assert pause["code"] == "Unauthorized"
    finally:
        celery_procs.stop(proc, timeout=10)
    text = log.read_text(errors="replace")
    # The 401 exchange was logged at debug level (so the test can fail) ...
    assert "401" in text and "Authorization" in text, "exchangelib's debug log of the request headers is missing"
    # ... with the credentials masked.
    assert "Basic ***" in text
    basic = base64.b64encode(f"svc-calsync:{WRONG}".encode()).decode()
    for secret in (WRONG, basic, "s3cret!", "s3cret%21"):
        assert secret not in text, f"{secret!r} is in the worker's debug log"


def test_redaction_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shapes credentials take in library log lines, including ones no secret list knows."""
    assert logredact.redact("{'Authorization': 'Basic c3ZjOnB3'}") == "{'Authorization': 'Basic ***'}"
    assert logredact.redact("authorization: Bearer eyJ.abc.def") == "authorization: Bearer ***"
    assert logredact.redact("Proxy-Authorization=NTLM TlRMTVNTUAAB") == "Proxy-Authorization=NTLM ***"
    assert logredact.redact("smtp://calsync:s3cret%21@mail:587 down") == "smtp://calsync:***@mail:587 down"
    assert logredact.redact("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert (
        logredact.redact("https://mail.example.com/EWS/Exchange.asmx") == "https://mail.example.com/EWS/Exchange.asmx"
    )


def test_redaction_of_records_and_exceptions(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from calsync.config import env

    monkeypatch.setenv("CALSYNC_EWS_USERNAME", "svc-x")
    monkeypatch.setenv("CALSYNC_EWS_PASSWORD", "Pl41n-Secret")
    env.cache_clear()
    try:
        logredact.install()
        logger = logging.getLogger("calsync.test.redact")
        with caplog.at_level(logging.DEBUG, logger="calsync.test.redact"):
            logger.debug("headers %s", {"X": "Pl41n-Secret"})
            try:
                raise RuntimeError("login with Pl41n-Secret failed")
            except RuntimeError:
                logger.exception("failed")
        text = caplog.text
        assert "Pl41n-Secret" not in text and text.count("***") >= 2, text
    finally:
        env.cache_clear()
        logredact.install()  # back to this process's own secrets
