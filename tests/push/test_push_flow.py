"""Push end to end: simulator -> listener -> kick -> worker -> mirror, with polling set to a day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import redis

from calsync import celery_procs
from tests.distributed.stack import wait_for
from tests.push.conftest import PushStack


def _edit(ps: PushStack, email: str, subject: str) -> str:
    item_id = ps.mirrored_item(email)
    ps.client.update_item(email, item_id, {"subject": subject})
    return item_id


def test_a_change_reaches_the_mirror_through_push_only(push_stack: Callable[..., PushStack]) -> None:
    ps = push_stack(mailboxes=3)
    subs = ps.wait_subscribed()
    # Every operator is in sync and its next poll is a day (or more) away: polling cannot explain what follows.
    wait_for(
        lambda: (
            all(
                r["next_poll_at"] > dt.datetime.now(dt.UTC) + dt.timedelta(hours=20)
                for r in ps.query("SELECT next_poll_at FROM sync_state WHERE NOT in_flight")
            )
            and len(ps.query("SELECT 1 FROM sync_state WHERE NOT in_flight")) == 3
        ),
        30,
        "polls scheduled a day ahead",
    )
    email = next(iter(ps.operators))
    item_id = _edit(ps, email, "moved by push")
    wait_for(lambda: ps.mirror_subject(email, item_id) == "moved by push", 15, "the change in the mirror", 0.1)
    # The simulator delivered it to the subscription calsync holds, and nothing resubscribed.
    assert ps.active_subscriptions() == subs
    delivered = {s["id"]: s for s in ps.client.list_subscriptions()["subscriptions"]}
    assert delivered[subs[ps.operators[email]]]["events"] >= 1
    heard = ps.query(
        "SELECT events, last_heard_at FROM push_subscriptions WHERE operator_id = %s AND state = 'active'",
        ps.operators[email],
    )
    assert heard[0]["events"] >= 1
    # StatusEvents keep the subscriptions alive (StatusFrequency is 5 s on this clock).
    wait_for(
        lambda: all(s["status_events"] >= 1 for s in ps.client.list_subscriptions()["subscriptions"]),
        20,
        "a StatusEvent delivered on every subscription",
    )

    # The kick syncs the notified operator itself: with the only worker left consuming the
    # dispatch queue (kicks), a change still reaches the mirror, and no sync task was queued.
    celery_procs.stop(ps.stack.procs.pop("w1"), timeout=10)
    ps.stack.worker("kicks-only", concurrency=2, queues="dispatch")
    broker = redis.Redis.from_url(ps.stack.env["CALSYNC_REDIS_URL"])
    item_id = _edit(ps, email, "synced in the kick")
    wait_for(lambda: ps.mirror_subject(email, item_id) == "synced in the kick", 15, "the change in the mirror", 0.1)
    assert broker.llen("sync") == 0


def test_a_disabled_operators_next_notification_is_answered_unsubscribe(push_stack: Callable[..., PushStack]) -> None:
    ps = push_stack(mailboxes=2)
    subs = ps.wait_subscribed()
    email, other = list(ps.operators)
    sub_id = subs[ps.operators[email]]
    assert ps.run_cli("operators", "disable", email).returncode == 0
    ps.client.update_item(email, ps.mirrored_item(email), {"subject": "after disable"})
    wait_for(lambda: ps.client.list_subscriptions()["ended"].get(sub_id) == "unsubscribed", 20, "Unsubscribe honoured")
    row = ps.query("SELECT state FROM push_subscriptions WHERE subscription_id = %s", sub_id)
    assert row[0]["state"] == "ended"
    # The other operator keeps its subscription, and the disabled one's mirror stays as it was.
    assert ps.active_subscriptions() == {ps.operators[other]: subs[ps.operators[other]]}
    assert ps.query("SELECT 1 FROM appointments WHERE subject = 'after disable'") == []
