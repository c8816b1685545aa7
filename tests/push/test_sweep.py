"""The push sweep on real Postgres and Redis (no processes): death, catch-up, one email per episode, switch-off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from calsync import runtime as base
from calsync.config import env
from calsync.push.callback import new_secret, secret_hash
from calsync.store import push
from calsync.store import settings as settings_store
from calsync.tasks.push import sweep
from tests.distributed.stack import connect, insert_operators
from tests.failures.conftest import Smtp, smtp  # noqa: F401  (the real SMTP server fixture)


@pytest.fixture
def scaled(monkeypatch: pytest.MonkeyPatch, smtp: Smtp) -> Iterator[None]:  # noqa: F811
    monkeypatch.setenv("CALSYNC_PUSH_MINUTE_SECONDS", "1")
    env.cache_clear()
    base.reset_process_state()
    yield
    env.cache_clear()
    base.reset_process_state()


def _setup(database_url: str) -> int:
    with connect(database_url) as conn:
        for key, value in (
            ("notification_url", "http://127.0.0.1:9/ews/push"),
            ("notification_frequency_minutes", 1),
            ("notify_sync_failure_to", "ops@example.com"),
        ):
            settings_store.set_value(conn, key, value)
        op = insert_operators(conn, ["jane@example.com"])["jane@example.com"]
        conn.execute(
            "UPDATE sync_state SET last_success_at = now(), stage = 'incremental', status = 'active', "
            "next_poll_at = now() + interval '1 day' WHERE operator_id = %s",
            (op,),
        )
        row = push.begin(conn, op, "jane@example.com", "http://127.0.0.1:9/ews/push", 1, secret_hash(new_secret()))
        assert row is not None and push.activate(conn, row, "SUB-1", "wm0")
        conn.execute("UPDATE push_subscriptions SET last_heard_at = now() - interval '10 seconds'")
    return op


def test_a_dead_subscription_is_caught_up_resubscribed_and_emailed_once(
    db: Any,
    clean_redis: Any,
    database_url: str,
    redis_url: str,
    scaled: None,
    smtp: Smtp,  # noqa: F811
) -> None:
    op = _setup(database_url)
    broker = redis.Redis.from_url(redis_url)
    out = sweep()
    assert out["dead"] == 1 and out["subscribing"] == 1
    row = db.execute("SELECT state, end_reason FROM push_subscriptions").fetchone()
    assert (row["state"], row["end_reason"]) == ("dead", "silent")
    state = db.execute("SELECT next_poll_at <= now() AS due FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert state["due"], "a catch-up sync at once"
    status = db.execute("SELECT dead_since, last_event_at FROM push_status").fetchone()
    assert status["dead_since"] is not None and status["last_event_at"] is not None  # owed: the kick claims it
    assert broker.llen("dispatch") == 1 and broker.llen("sync") == 1  # push_kick, push_subscribe
    assert smtp.mails == []
    time.sleep(1.3)  # dead longer than the notification frequency (1 "minute" = 1 s here)
    assert sweep()["emailed"] == 1
    [mail] = smtp.wait(1)
    assert "jane@example.com" in mail.body and "push notifications stopped" in mail.subject
    assert sweep()["emailed"] == 0
    time.sleep(0.5)
    assert len(smtp.mails) == 1, "one email per episode"


def test_switching_push_off_ends_every_subscription_and_polls_again(
    db: Any, clean_redis: Any, database_url: str, scaled: None
) -> None:
    op = _setup(database_url)
    db.execute("UPDATE push_subscriptions SET last_heard_at = now()")
    assert sweep()["dead"] == 0
    with connect(database_url) as conn:
        settings_store.set_value(conn, "notification_url", "")
    base.reset_process_state()
    assert sweep() == {"ended": 1}
    row = db.execute("SELECT state FROM push_subscriptions").fetchone()
    assert row["state"] == "ended"
    state = db.execute("SELECT next_poll_at <= now() AS due FROM sync_state WHERE operator_id = %s", (op,)).fetchone()
    assert state["due"]
