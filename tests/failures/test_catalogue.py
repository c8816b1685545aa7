"""One catalogue: the docs, the classifier and the emails cannot drift apart."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from calsync.notify.catalogue import CATALOGUE, lookup, markdown_table
from calsync.notify.email import compose_failures, parse_smtp_url
from calsync.source.ews import errors
from calsync.store.failures import Episode

DOC = Path(__file__).resolve().parents[2] / "docs" / "failures.md"
README = Path(__file__).resolve().parents[2] / "README.md"
# Codes that classify() and the task layer produce outside errors._TABLE.
OTHER_CODES = {
    "TlsFailure": "global",
    "ExchangeUnreachable": "global",
    "ConnectionReset": "transient",
    "ExchangeTimeout": "transient",
    "HttpThrottled": "transient",
    "HttpUnavailable": "transient",
    "HttpError": "transient",
    "TransportError": "transient",
    "UnexpectedError": "transient",
    "DatabaseUnavailable": "transient",
    "RedisUnavailable": "transient",
    # refused by the EWS adapter before parsing (errors._REFUSED)
    "ResponseTimeout": "transient",
    "ResponseTooLarge": "transient",
    "MalformedResponse": "transient",
    "UnsafeXmlResponse": "transient",
    "TruncatedResponse": "transient",
}


def test_docs_table_is_the_catalogue() -> None:
    for doc in (DOC, README):
        text = doc.read_text(encoding="utf-8")
        block = re.search(r"<!-- catalogue:begin -->\n(.*)<!-- catalogue:end -->", text, re.S)
        assert block is not None, f"{doc.name} lost its catalogue markers"
        assert block.group(1) == markdown_table(), (
            f"{doc.name} differs from calsync/notify/catalogue.py; regenerate the table with "
            "`python -m calsync.notify.catalogue`"
        )


def test_every_classified_code_has_an_entry_of_the_same_kind() -> None:
    produced = {code: d.value for _, code, d in errors._TABLE} | OTHER_CODES
    for code, disposition in produced.items():
        assert code in CATALOGUE, f"{code} has no catalogue entry"
        assert CATALOGUE[code].disposition.value == disposition, code
    for entry in CATALOGUE.values():
        assert entry.message and entry.cause and entry.fix, entry.code


def test_unknown_exchange_code_still_gets_a_clear_text() -> None:
    entry = lookup("ErrorSomethingNew")
    assert "ErrorSomethingNew" in entry.message and entry.fix


def test_email_carries_catalogue_texts_and_no_secret() -> None:
    since = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC)
    ep = Episode(1, 7, "user0007@example.com", "Ann", "ErrorNonExistentMailbox", "operator", "no mailbox", since, 3, 0,
                 None)  # fmt: skip
    msg = compose_failures([ep], "calsync@example.com", ["ops@example.com", "crm-admin@example.com"], 30)
    body = msg.get_content()
    entry = CATALOGUE["ErrorNonExistentMailbox"]
    for text in (entry.message, entry.fix, "user0007@example.com", "2026-03-01 08:30 UTC", "Attempts:  3"):
        assert text in body
    assert msg["To"] == "ops@example.com, crm-admin@example.com"
    assert "user0007@example.com" in msg["Subject"]


def test_smtp_url_forms_and_secrecy() -> None:
    plain = parse_smtp_url("smtp://mailer:p%40ss@mail.example.com:2525")
    assert (plain.host, plain.port, plain.mode, plain.username, plain.password) == (
        "mail.example.com", 2525, "plain", "mailer", "p@ss",
    )  # fmt: skip
    assert parse_smtp_url("smtps://u:p@mail.example.com").port == 465
    starttls = parse_smtp_url("smtp://u:p@mail.example.com?starttls=1")
    assert (starttls.mode, starttls.port) == ("starttls", 587)
    assert "p@ss" not in repr(plain) and "p@ss" not in plain.describe()
