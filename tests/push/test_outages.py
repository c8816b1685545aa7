"""The listener goes away: for a few retries (nothing lost), and past StatusFrequency (resubscribe, catch up)."""

from __future__ import annotations

from collections.abc import Callable

from tests.distributed.stack import wait_for
from tests.push.conftest import PushStack


def test_listener_down_for_a_few_retries_loses_nothing(push_stack: Callable[..., PushStack]) -> None:
    # StatusFrequency 60 (30 s on this clock): retries at 0, 0.25, 0.5, 1, 2, 4, 8, 16 s before
    # Exchange gives up, and calsync calls a subscription dead after 60 s of silence: room for a
    # slow restart of the listener on a loaded machine.
    ps = push_stack(mailboxes=2, frequency=60)
    subs = ps.wait_subscribed()
    email = next(iter(ps.operators))
    sub_id = subs[ps.operators[email]]
    item_id = ps.mirrored_item(email)
    ps.stack.kill("listener")
    ps.client.update_item(email, item_id, {"subject": "while the listener was down"})

    def failures() -> int:
        return int(next(s for s in ps.client.list_subscriptions()["subscriptions"] if s["id"] == sub_id)["failures"])

    wait_for(lambda: failures() >= 4, 20, "a few failed deliveries", 0.1)
    assert ps.mirror_subject(email, item_id) != "while the listener was down"
    ps.listener("listener")
    wait_for(lambda: ps.mirror_subject(email, item_id) == "while the listener was down", 20, "the retried change", 0.1)
    # The same subscription delivered it: nothing was dropped or made again.
    assert ps.active_subscriptions() == subs
    assert sub_id not in ps.client.list_subscriptions()["ended"]


def test_listener_down_past_status_frequency_resubscribes_and_catches_up(push_stack: Callable[..., PushStack]) -> None:
    ps = push_stack(mailboxes=2, appointments=12)  # StatusFrequency 10: 5 s; dead after 10 s of silence
    subs = ps.wait_subscribed()
    email = next(iter(ps.operators))
    op = ps.operators[email]
    first, second = sorted(
        r["item_id"]
        for r in ps.query(
            "SELECT item_id FROM appointments WHERE operator_id = %s AND kind = 'single' AND NOT details_withheld", op
        )
    )[:2]
    ps.stack.kill("listener")
    ps.client.update_item(email, first, {"subject": "before Exchange gave up"})
    wait_for(
        lambda: ps.client.list_subscriptions()["ended"].get(subs[op]) == "dropped", 30, "Exchange dropping it", 0.2
    )
    # No subscription exists now: nobody will be told about this one.
    ps.client.update_item(email, second, {"subject": "after Exchange gave up"})
    ps.listener("listener")
    # calsync finds the subscription silent for twice StatusFrequency, syncs at once and subscribes again.
    wait_for(lambda: ps.mirror_subject(email, second) == "after Exchange gave up", 40, "the gap caught up", 0.2)
    assert ps.mirror_subject(email, first) == "before Exchange gave up"
    wait_for(lambda: ps.active_subscriptions().get(op) not in (None, subs[op]), 30, "a new subscription")
    dead = ps.query("SELECT state, end_reason FROM push_subscriptions WHERE subscription_id = %s", subs[op])
    assert dead == [{"state": "dead", "end_reason": "silent"}]
    # Healthy again once the new subscription is heard from (its first StatusEvent at the latest).
    wait_for(lambda: ps.query("SELECT dead_since FROM push_status WHERE operator_id = %s", op)[0]["dead_since"] is None,
             20, "push healthy again")  # fmt: skip
    # And push works on the new subscription.
    ps.client.update_item(email, first, {"subject": "pushed again"})
    wait_for(lambda: ps.mirror_subject(email, first) == "pushed again", 15, "push after resubscribing", 0.1)
