"""Issue 18 over issue 15: the console shows push state and push change latency.

The push rows are made by the real push store and lifecycle functions a worker calls
(begin/activate a subscription, hear a notification, find a silent one dead, a failed
Subscribe, a pushed claim and the commit that covers it), not by hand-written rows, so the
page shows what a running system would have written.
"""

from __future__ import annotations

from typing import Any

from calsync.push.callback import new_secret, secret_hash
from calsync.store import lifecycle
from calsync.store import push as push_store
from calsync.store import settings as settings_store
from calsync.store.db import transaction

from .conftest import Page
from .test_console import add, no_secret

LISTENER = "https://calsync.example.com/ews-push"


def subscribe(operator_id: int, email: str, secret: str, subscription_id: str) -> None:
    with transaction() as conn:
        row = push_store.begin(conn, operator_id, email, LISTENER, 5, secret_hash(secret))
        assert row is not None
        assert push_store.activate(conn, row, subscription_id, "wm-1")


def test_operator_and_overview_show_push_state_and_history_shows_latency(page: Page) -> None:
    live = add("live@example.com")
    dead = add("dead@example.com")
    graph = add("graph@example.com")
    page.login()

    # Push not configured: every operator says so.
    page.go(f"/operators/{live}")
    assert page.find("#push-mode").text == "Push: off (no notification_url)"
    page.go("/")
    assert "Push: off (no notification_url)" in page.find("#push-fleet").text

    with transaction() as conn:
        settings_store.set_value(conn, "notification_url", LISTENER)
        conn.execute("UPDATE operators SET source = 'graph' WHERE id = %s", (graph,))
    secrets = [new_secret(), new_secret(), new_secret()]
    subscribe(live, "live@example.com", secrets[0], "sub-live")
    subscribe(dead, "dead@example.com", secrets[1], "sub-dead")
    with transaction() as conn:
        # The live subscription hears one change; the other falls silent and is found dead,
        # then its resubscription fails.
        assert push_store.hear_sync(conn, secret_hash(secrets[0]), "sub-live", "wm-2", 1).operator_id == live
        conn.execute(
            "UPDATE push_subscriptions SET last_heard_at = now() - interval '1 hour' WHERE operator_id = %s", (dead,)
        )
        assert push_store.find_dead(conn, 60.0) == [dead]
        retry = push_store.begin(conn, dead, "dead@example.com", LISTENER, 5, secret_hash(secrets[2]))
        assert retry is not None
        push_store.give_up(conn, retry, "ErrorAccessDenied: the service account may not subscribe", 300)
    # The notified change is synced: a pushed claim, then the commit that covers it.
    with transaction() as conn:
        claim, why = lifecycle.claim_pushed(conn, live, 60)
        assert claim is not None, why
    with transaction() as conn:
        latencies = lifecycle.push_after_finish(conn, [live], 60, 60.0)
        assert len(latencies) == 1
        stored = conn.execute("SELECT operator_id, seconds FROM push_latencies").fetchall()
    assert [(r["operator_id"], r["seconds"]) for r in stored] == [(live, latencies[0])]

    def shows_no_push_secret() -> None:
        source = page.driver.page_source
        for s in secrets:
            assert s not in source and secret_hash(s).hex() not in source, page.driver.current_url
        no_secret(page)

    page.go(f"/operators/{live}")
    facts = page.find("#push-facts").text
    assert page.find("#push-subscribed").text == "yes" and page.find("#push-state").text == "active"
    assert page.find("#push-dead").text == "not dead"
    assert "5 minute(s)" in facts and "1 / 1" in facts  # StatusFrequency; one notification with one event
    assert page.axe() == [], "operator with live push"
    shows_no_push_secret()
    page.shot("page-operator-push-live")

    page.go(f"/operators/{dead}")
    assert page.find("#push-subscribed").text == "no"
    assert page.find("#push-state").text == "dead (silent)"
    assert page.find("#push-dead").text.endswith("UTC")
    error = page.find("#push-error").text
    assert "ErrorAccessDenied: the service account may not subscribe" in error and "1 failed attempt(s)" in error
    assert page.axe() == [], "operator with dead push"
    shows_no_push_secret()
    page.shot("page-operator-push-dead")

    page.go(f"/operators/{graph}")
    # A Graph operator shows Graph change notifications with the same facts (not subscribed yet).
    assert page.find("#push-kind").text == "Graph change notifications"
    assert page.find("#push-subscribed").text == "no"

    page.go("/")
    assert page.all("#push-off") == []
    assert page.find("#push-subscribed-n").text == "1"
    assert page.find("#push-healthy-n").text == "1"
    assert page.find("#push-dead-n").text == "1"
    assert page.axe() == [], "overview with push"
    shows_no_push_secret()

    page.go("/history")
    assert "1 notified change(s) covered" in page.find("#latency-summary").text
    drawn: Any = page.driver.execute_script(
        "const c = Chart.getChart('chart-latency');"
        "return c ? c.data.datasets.map(d => d.data.filter(v => v !== null).length) : null"
    )
    assert drawn == [1, 1], "p50 and p95 each have the one hour with a covered notification"
    rows = [
        [c.get_attribute("textContent") for c in r.find_elements("css selector", "td")] for r in page.all("tbody tr")
    ]
    with_latency = [r for r in rows if r[-1]]
    assert len(with_latency) == 1 and with_latency[0][-2] == with_latency[0][-1] == str(round(latencies[0], 2)), rows
    assert page.axe() == [], "history with push latency"
    page.shot("page-history-push-latency")
