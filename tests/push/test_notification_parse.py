"""The listener's SendNotification reader agrees with exchangelib's parser; callback and retry rules.

Pure logic (no Postgres, no processes), with exchangelib and Microsoft's schema as the references.
"""

from __future__ import annotations

import pytest
from exchangelib.services import SendNotification
from lxml import etree

from calsync.push.callback import callback_url, new_secret, secret_hash, secret_of
from calsync.simulator.ews import validation
from calsync.simulator.ews.push import retry_wait
from calsync.source.ews.notification import OK_ANSWER, UNSUBSCRIBE_ANSWER, BadNotification, parse
from tests.push.test_listener import NS_SOAP, notification


def _exchangelib(body: bytes) -> tuple[str, str | None, bool, int, str | None]:
    [note] = list(SendNotification(protocol=None).parse(body))
    changes = [e for e in note.events if type(e).__name__ != "StatusEvent"]
    return (
        note.subscription_id,
        note.previous_watermark,
        bool(note.more_events),
        len(changes),
        note.events[-1].watermark,
    )


@pytest.mark.parametrize("changes", [0, 1, 3, 50])
def test_agrees_with_exchangelib(changes: int) -> None:
    body = notification("SUB-1", changes=changes, n=7)
    assert validation.errors(etree.fromstring(body).find(f"{{{NS_SOAP}}}Body")[0]) is None
    ours = parse(body)
    assert (ours.subscription_id, ours.previous_watermark, ours.more_events, ours.changes, ours.watermark) == (
        _exchangelib(body)
    )


def test_more_events_and_answers_are_exchangelibs() -> None:
    body = notification("SUB-1", changes=2).replace(b"<t:MoreEvents>false", b"<t:MoreEvents>true")
    assert parse(body).more_events is _exchangelib(body)[2] is True
    assert SendNotification(protocol=None).ok_payload() == OK_ANSWER
    assert SendNotification(protocol=None).unsubscribe_payload() == UNSUBSCRIBE_ANSWER


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"<a/>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        f'<s:Envelope xmlns:s="{NS_SOAP}"><s:Body/></s:Envelope>'.encode(),
        notification("").replace(b"<t:SubscriptionId></t:SubscriptionId>", b""),
    ],
)
def test_refuses_what_is_not_a_notification(body: bytes) -> None:
    with pytest.raises(BadNotification):
        parse(body)


def test_an_error_message_counts_as_a_change() -> None:
    # exchangelib's parser raises AttributeError on it; a listener must still sync to be safe.
    body = notification("SUB-1", changes=0).replace(b'ResponseClass="Success"', b'ResponseClass="Error"', 1)
    note = parse(body)
    assert note.subscription_id == "SUB-1" and note.changes == 1
    with pytest.raises(AttributeError):
        list(SendNotification(protocol=None).parse(body))


def test_callback_secret() -> None:
    secret = new_secret()
    url = callback_url("https://crm.example.com/ews/push/", secret)
    assert url == f"https://crm.example.com/ews/push/{secret}"
    assert secret_of("/ews/push/" + secret) == secret
    assert secret_of("/ews/push/short") is None
    assert secret_of("/ews/push/" + "x" * 200) is None
    assert secret_of("/ews/push/" + secret[:-1] + "!") is None
    assert secret_hash(secret) != secret_hash(new_secret()) and len(secret_hash(secret)) == 32


def test_exchange_retry_schedule() -> None:
    assert [retry_wait(n, 60.0) for n in range(1, 8)] == [0, 30, 60, 120, 240, 480, 960]
    assert retry_wait(3, 0.5) == 0.5
