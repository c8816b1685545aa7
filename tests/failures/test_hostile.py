"""Hostile and broken answers from Exchange, against a real worker, real Postgres and Redis.

A proxy (tests/failures/hostile.py) sits in front of the simulator and spoils the answers for
one mailbox; the others pass through. The worker runs one thread (`-P threads -c 1`), so if a
spoiled answer captured that thread nobody else would ever sync: every test checks that the
other operators sync, which code the spoiled one records, that nothing partial was written,
and that the worker's log holds no secret.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from calsync import celery_procs
from calsync.notify.catalogue import CATALOGUE
from calsync.simulator import Simulator, SimulatorServer, generate, mailbox_email

from .conftest import DIGEST_SECONDS, Smtp, add_operators, configure, purge_queues, wait_for
from .hostile import Act, HostileProxy
from .test_fleet import tick

pytestmark = [pytest.mark.usefixtures("clean_failures", "service_env"), pytest.mark.timeout(240)]

CALSYNC = str(Path(sys.executable).parent / "calsync")
DEADLINE = 3.0  # CALSYNC_EWS_REQUEST_DEADLINE_SECONDS of the worker under test
MAX_BYTES = 1024 * 1024  # CALSYNC_EWS_MAX_RESPONSE_BYTES of the worker under test
PASSWORD = "Simulat0r!"
SECRETS = (PASSWORD, base64.b64encode(f"svc-calsync:{PASSWORD}".encode()).decode())


@pytest.fixture
def sim() -> Simulator:
    return generate(4, 12, seed=5)


@pytest.fixture
def proxy(sim: Simulator, serve: Callable[[Simulator], SimulatorServer]) -> Iterator[HostileProxy]:
    server = serve(sim)
    with HostileProxy(server.ews_url) as px:
        yield px


def worker_env(database_url: str, redis_url: str, smtp: Smtp) -> dict[str, str]:
    return {
        "CALSYNC_DATABASE_URL": database_url,
        "CALSYNC_REDIS_URL": redis_url,
        "CALSYNC_EWS_USERNAME": "svc-calsync",
        "CALSYNC_EWS_PASSWORD": PASSWORD,
        "CALSYNC_SMTP_URL": smtp.url,
        "CALSYNC_SMTP_FROM": "calsync@example.com",
        "CALSYNC_NOTIFY_DIGEST_SECONDS": DIGEST_SECONDS,
        "CALSYNC_EWS_REQUEST_DEADLINE_SECONDS": str(DEADLINE),
        "CALSYNC_EWS_MAX_RESPONSE_BYTES": str(MAX_BYTES),
    }


@pytest.fixture
def one_thread(tmp_path: Path, database_url: str, redis_url: str, smtp: Smtp) -> Iterator[Callable[[], Path]]:
    """Start one real worker with a single thread; returns its log file."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> Path:
        log = tmp_path / "worker.log"
        env = worker_env(database_url, redis_url, smtp)
        procs.append(
            celery_procs.start_worker(f"hostile-{os.getpid()}", env, concurrency=1, log_file=log, loglevel="INFO")
        )
        return log

    yield start
    for proc in procs:
        celery_procs.stop(proc, timeout=10)


def row(db: psycopg.Connection[Any], email: str) -> dict[str, Any]:
    found = db.execute(
        "SELECT s.*, (SELECT count(*) FROM appointments a WHERE a.operator_id = o.id) AS appointments "
        "FROM operators o JOIN sync_state s ON s.operator_id = o.id WHERE o.email = %s",
        (email,),
    ).fetchone()
    assert found is not None
    return dict(found)


def others_in_sync(db: psycopg.Connection[Any], sim: Simulator) -> bool:
    rows = [row(db, mailbox_email(n)) for n in (2, 3, 4)]
    return all(r["status"] == "active" and not r["in_flight"] for r in rows)


def status_of(email: str, database_url: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALSYNC_DATABASE_URL": database_url, "CALSYNC_REDIS_URL": redis_url}
    return subprocess.run(
        [CALSYNC, "status", "--no-broker", email], env=env, capture_output=True, text=True, timeout=60
    )


def no_secret_in(log: Path) -> None:
    text = log.read_text(errors="replace")
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} appears in the worker log"


def start_all(db: psycopg.Connection[Any], proxy: HostileProxy) -> list[int]:
    configure(proxy.ews_url, notification_frequency_minutes=30, poll_interval_minutes=60, batch_size=50)
    ops = add_operators(db, [mailbox_email(n) for n in (1, 2, 3, 4)])
    purge_queues()
    return ops


def test_trickling_answer_is_cut_at_the_deadline_and_frees_the_thread_and_the_slot(
    db: psycopg.Connection[Any], sim: Simulator, proxy: HostileProxy, one_thread: Callable[[], Path],
    clean_redis: redis.Redis, database_url: str, redis_url: str,
) -> None:  # fmt: skip
    victim = mailbox_email(1)
    proxy.acts.append(Act("trickle", mailbox=victim, interval=0.5))  # one byte every 0.5 s, forever
    victim_id = start_all(db, proxy)[0]
    db.execute("UPDATE sync_state SET next_poll_at = now() + interval '1 day' WHERE operator_id <> %s", (victim_id,))
    log = one_thread()
    assert tick() == 1

    # While the answer trickles, the fleet-wide slot is held for at least the request's deadline.
    wait_for(lambda: proxy.trickling == 1, 60, "the trickling answer to start")
    opened = time.time()
    holders = clean_redis.zrange("calsync:ews:sem:svc-calsync", 0, -1, withscores=True)
    assert len(holders) == 1, holders
    assert holders[0][1] >= opened + DEADLINE - 1.0, "the slot would expire before the request's deadline"

    # The worker gives up (the server never ends), records the code, and returns the slot.
    wait_for(lambda: proxy.gave_up, 60, "the worker to close the trickling connection")
    wait_for(lambda: row(db, victim)["last_error_code"] == "ResponseTimeout", 30, "ResponseTimeout recorded")
    wait_for(lambda: proxy.trickling or clean_redis.zcard("calsync:ews:sem:svc-calsync") == 0, 30, "slot released")

    # The one thread is free: every other operator syncs while the victim keeps retrying.
    db.execute("UPDATE sync_state SET next_poll_at = now() WHERE operator_id <> %s", (victim_id,))
    assert tick() == 3
    wait_for(lambda: others_in_sync(db, sim), 90, "the other three operators in sync")
    wait_for(lambda: len(proxy.gave_up) >= 2, 60, "the victim's retry cut off as well")
    victim_row = row(db, victim)
    assert victim_row["status"] in ("retrying", "initial_sync") and victim_row["appointments"] == 0
    for opened_at, closed_at in proxy.gave_up:
        assert closed_at > opened_at  # closed by the client: the proxy itself never stops trickling

    shown = status_of(victim, database_url, redis_url)
    assert "ResponseTimeout" in shown.stdout, shown.stdout + shown.stderr
    assert CATALOGUE["ResponseTimeout"].message in shown.stdout
    no_secret_in(log)


def test_huge_answer_is_refused_unread_with_its_own_code(
    db: psycopg.Connection[Any], sim: Simulator, proxy: HostileProxy, one_thread: Callable[[], Path],
    clean_redis: redis.Redis, database_url: str, redis_url: str,
) -> None:  # fmt: skip
    victim = mailbox_email(1)
    size = 60 * 1024 * 1024
    proxy.acts.append(Act("huge", mailbox=victim, operation="GetItem", size=size))
    start_all(db, proxy)
    log = one_thread()
    assert tick() == 4
    wait_for(lambda: others_in_sync(db, sim), 90, "the other three operators in sync")
    wait_for(lambda: row(db, victim)["last_error_code"] == "ResponseTooLarge", 60, "ResponseTooLarge recorded")
    assert row(db, victim)["appointments"] == 0, "nothing from the refused answer was written"
    wait_for(lambda: proxy.huge_sent, 10, "the proxy to notice the client left")
    # The client stopped reading soon after the limit: the 60 MB were never all sent, let alone held.
    assert max(proxy.huge_sent) < size // 4, proxy.huge_sent
    shown = status_of(victim, database_url, redis_url)
    assert "ResponseTooLarge" in shown.stdout, shown.stdout + shown.stderr
    no_secret_in(log)


def _billion_laughs(payload: bytes) -> bytes:
    dtd = (
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        + b"".join(b'<!ENTITY lol%d "' % i + b"&lol%d;" % (i - 1) * 10 + b'">' for i in range(2, 10))
        + b"]>"
    )
    head, sep, rest = payload.partition(b"<s:Envelope")
    rest = rest.replace(b"<t:Subject>", b"<t:Subject>&lol9;", 1)
    return head + dtd + sep + rest


def _external_entity(secret_file: Path) -> Callable[[bytes], bytes]:
    def rewrite(payload: bytes) -> bytes:
        dtd = b'<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file://' + str(secret_file).encode() + b'">]>'
        head, sep, rest = payload.partition(b"<s:Envelope")
        rest = rest.replace(b"<t:Subject>", b"<t:Subject>&xxe;", 1)
        return head + dtd + sep + rest

    return rewrite


@pytest.mark.parametrize("attack", ["billion_laughs", "external_entity"])
def test_entities_in_an_answer_are_refused_never_expanded(
    attack: str, db: psycopg.Connection[Any], sim: Simulator, proxy: HostileProxy, one_thread: Callable[[], Path],
    clean_redis: redis.Redis, tmp_path: Path, database_url: str, redis_url: str,
) -> None:  # fmt: skip
    victim = mailbox_email(1)
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text("TOP-SECRET-HOST-FILE\n")
    rewrite = _billion_laughs if attack == "billion_laughs" else _external_entity(secret_file)
    proxy.acts.append(Act("rewrite", mailbox=victim, operation="GetItem", rewrite=rewrite))
    start_all(db, proxy)
    log = one_thread()
    assert tick() == 4
    wait_for(lambda: others_in_sync(db, sim), 90, "the other three operators in sync")
    wait_for(lambda: row(db, victim)["last_error_code"] == "UnsafeXmlResponse", 60, "UnsafeXmlResponse recorded")
    assert proxy.matched >= 1
    assert row(db, victim)["appointments"] == 0, "nothing from the refused answer was written"
    found = db.execute(
        "SELECT count(*) AS n FROM appointments WHERE subject LIKE '%%lollol%%' OR subject LIKE '%%TOP-SECRET%%'"
    ).fetchone()
    assert found == {"n": 0}
    shown = status_of(victim, database_url, redis_url)
    assert "UnsafeXmlResponse" in shown.stdout, shown.stdout + shown.stderr
    assert "TOP-SECRET" not in log.read_text(errors="replace")
    no_secret_in(log)


def test_what_exchangelibs_own_parser_does_with_entities(tmp_path: Path) -> None:
    """Why calsync refuses a DTD instead of trusting the parser: it does not expand, but it drops.

    exchangelib parses with lxml (resolve_entities=False, recover=True): neither attack is expanded
    or resolved, but the element that used the entity silently loses its text (here all of it), so an
    item would be stored without its subject (or, as in issue 14, without its End).
    """
    from exchangelib.util import to_xml

    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text("TOP-SECRET-HOST-FILE\n")
    envelope = (
        b'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        b'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>'
        b"<t:Subject>Budget</t:Subject></s:Body></s:Envelope>"
    )
    for attack in (_billion_laughs(envelope), _external_entity(secret_file)(envelope)):
        root = to_xml(attack)
        subject = next(root.iter("{http://schemas.microsoft.com/exchange/services/2006/types}Subject"))
        text = "".join(subject.itertext())
        assert "lol" not in text and "TOP-SECRET" not in text, "exchangelib expanded an entity"
        assert text != "Budget", text  # not expanded, but the element lost its text without an error


def test_html_page_with_status_200_is_a_malformed_response(
    db: psycopg.Connection[Any], sim: Simulator, proxy: HostileProxy, one_thread: Callable[[], Path],
    clean_redis: redis.Redis, database_url: str, redis_url: str,
) -> None:  # fmt: skip
    victim = mailbox_email(1)
    proxy.acts.append(Act("html", mailbox=victim))
    start_all(db, proxy)
    log = one_thread()
    assert tick() == 4
    wait_for(lambda: others_in_sync(db, sim), 90, "the other three operators in sync")
    wait_for(lambda: row(db, victim)["last_error_code"] is not None, 60, "the victim's error recorded")
    assert row(db, victim)["last_error_code"] == "MalformedResponse"
    assert "HTML page titled 'Sign in'" in (row(db, victim)["last_error_message"] or "")
    shown = status_of(victim, database_url, redis_url)
    assert "MalformedResponse" in shown.stdout and "TruncatedResponse" not in shown.stdout
    no_secret_in(log)


def test_server_older_than_configured_pauses_everyone_with_invalid_server_version(
    db: psycopg.Connection[Any], sim: Simulator, proxy: HostileProxy, one_thread: Callable[[], Path],
    clean_redis: redis.Redis, database_url: str, redis_url: str,
) -> None:  # fmt: skip
    proxy.acts.append(Act("old_server"))  # Exchange 2007 SP1 for every mailbox
    start_all(db, proxy)
    log = one_thread()
    assert tick() == 4
    pause = wait_for(lambda: db.execute("SELECT * FROM global_pause").fetchone(), 90, "the global pause")
    assert pause["code"] == "ErrorInvalidServerVersion"
    assert "UnexpectedError" not in log.read_text(errors="replace")
    shown = status_of(mailbox_email(1), database_url, redis_url)
    assert "SYNCING PAUSED FOR EVERYONE: ErrorInvalidServerVersion" in shown.stdout, shown.stdout + shown.stderr
    assert CATALOGUE["ErrorInvalidServerVersion"].fix in shown.stdout
    assert shown.returncode == 1
    no_secret_in(log)


def test_deadline_cuts_a_trickling_answer_over_tls_too(
    sim: Simulator, proxy: HostileProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchdog shuts the socket down below the TLS layer; the blocked TLS read returns as well."""
    from calsync.config import env
    from calsync.errors import SourceError
    from calsync.source.ews.connection import EwsEndpoint
    from calsync.source.ews.source import EwsSource

    from .tls import TlsProxy, make_ca_and_server

    monkeypatch.setenv("CALSYNC_EWS_REQUEST_DEADLINE_SECONDS", "2")
    env.cache_clear()
    proxy.acts.append(Act("trickle", mailbox=mailbox_email(1), interval=0.3))
    ca, cert, key = make_ca_and_server(tmp_path)
    try:
        with TlsProxy(proxy.port, cert, key) as tls:
            url = f"https://127.0.0.1:{tls.port}/EWS/Exchange.asmx"
            source = EwsSource(EwsEndpoint(url, "Exchange2013", "svc-calsync", PASSWORD, ca_bundle=str(ca)))
            with pytest.raises(SourceError) as info:
                source.sync_page(mailbox_email(1), None, 5)
            assert info.value.code == "ResponseTimeout", info.value
            # The same source (and its connection pool) still serves the other mailboxes.
            assert source.sync_page(mailbox_email(2), None, 5).changes
    finally:
        env.cache_clear()
    wait_for(lambda: proxy.gave_up, 30, "the trickling connection to be closed by the client")
