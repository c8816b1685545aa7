"""exchangelib Accounts for impersonated mailboxes, built without any discovery call.

An explicit Version and auth type mean exchangelib sends no autodiscover or version-probing
requests; the calendar folder is addressed by its distinguished id, so no GetFolder either.
exchangelib caches one Protocol (connection pool) per endpoint and credentials per process;
Accounts are cheap but not free, so a bounded LRU keeps the recent ones.

TLS is always verified: against the system's trust store, or against the PEM bundle named by
CALSYNC_EWS_CA_BUNDLE (an internal CA). exchangelib builds its HTTP adapters from one class
attribute; ours pins `verify` per endpoint, so nothing (not even verify=False from a session
or REQUESTS_CA_BUNDLE) can switch verification off. The adapter also times each request
for the metrics, and bounds each answer in time and size (see VerifyingAdapter).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests.adapters
from exchangelib import BASIC, IMPERSONATION, UTC, Account, Configuration, Credentials
from exchangelib.folders import Calendar, Root
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import BaseProtocol
from exchangelib.version import Build, Version

from calsync import metrics
from calsync.config import ConfigError, env
from calsync.source import request_hook
from calsync.source.ews import deadline, shapes
from calsync.source.ews.attendees import install_attendee_limit
from calsync.source.ews.errors import (
    MalformedBody,
    ResponseTimeout,
    ResponseTooLarge,
    ServerHintPolicy,
    TruncatedResponse,
    UnsafeXml,
    install_back_off_parser,
)
from calsync.source.ews.timezones import install_time_zone_guard
from calsync.source.ews.whole_body import install_whole_body_parser

# The build each configured version stands for; the API version follows from it.
BUILDS: dict[str, Build] = {
    "Exchange2010": Build(14, 0),
    "Exchange2010_SP1": Build(14, 1),
    "Exchange2010_SP2": Build(14, 2),
    "Exchange2013": Build(15, 0),
    "Exchange2013_SP1": Build(15, 0, 847),
    "Exchange2016": Build(15, 1),
    "Exchange2019": Build(15, 2),
}


@dataclass(frozen=True)
class EwsEndpoint:
    url: str
    version: str
    username: str
    password: str = field(repr=False)
    max_connections: int = 10
    # PEM bundle to verify Exchange's certificate with; None: CALSYNC_EWS_CA_BUNDLE, else the system store.
    ca_bundle: str | None = None


_verify_lock = threading.Lock()
_verify: dict[tuple[str, str, int | None], str] = {}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def check_ca_bundle(path: str | os.PathLike[str]) -> str:
    """The bundle's path if it is a readable PEM file; a ConfigError naming the variable otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(
            f"CALSYNC_EWS_CA_BUNDLE={p}: cannot read it ({exc.strerror}); point it at the PEM file of the CA "
            "that signed Exchange's certificate"
        ) from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"CALSYNC_EWS_CA_BUNDLE={p}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")
    return str(p.resolve())


def trust(url: str, ca_bundle: str) -> None:
    """Verify the TLS certificate of `url`'s origin against `ca_bundle` (in this process)."""
    with _verify_lock:
        _verify[_origin(url)] = check_ca_bundle(ca_bundle)


class VerifyingAdapter(requests.adapters.HTTPAdapter):
    """exchangelib's HTTP adapter: verification always on, and every answer bounded and checked.

    Each request has a deadline for the whole exchange (calsync.source.ews.deadline) and a size
    limit for its body, read here in chunks so a huge or endless answer is never buffered whole
    (CALSYNC_EWS_REQUEST_DEADLINE_SECONDS, CALSYNC_EWS_MAX_RESPONSE_BYTES). A 200 must be a
    complete SOAP envelope without a DTD: anything else is refused before exchangelib parses it.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # The pools hand each connection to its request's deadline ticket (the watchdog needs the socket).
        self.poolmanager.pool_classes_by_scheme = deadline.POOL_CLASSES

    def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> Any:  # fmt: skip
        bundle = _verify.get(_origin(request.url or "")) if request.url else None
        op = metrics.operation_of(request.body)
        request_hook.before_request()  # the fleet-wide slot now covers this request's deadline
        cfg = env()
        seconds = cfg.ews_request_deadline_seconds
        ticket = deadline.start(seconds)
        started = time.monotonic()
        try:
            response = super().send(request, stream=True, timeout=timeout, verify=bundle or True, cert=cert,
                                    proxies=proxies)  # fmt: skip
            body = _read_body(response, cfg.ews_max_response_bytes)
        except Exception as exc:
            metrics.observe_ews(op, "error", time.monotonic() - started)
            if ticket.fired and not isinstance(exc, ResponseTooLarge):
                raise ResponseTimeout(
                    f"EWS {op or 'request'} had no complete answer within {seconds:g}s "
                    "(CALSYNC_EWS_REQUEST_DEADLINE_SECONDS); the connection was closed"
                ) from exc
            raise
        finally:
            deadline.finish(ticket)
        metrics.observe_ews(op, str(response.status_code), time.monotonic() - started)
        if response.status_code == 200:
            _check_soap(body, response.headers.get("Content-Type", ""))
        return response


def _read_body(response: Any, limit: int) -> bytes:
    """The whole body, in chunks, refused as soon as it is known to exceed `limit` bytes."""
    length = str(response.headers.get("Content-Length", "")).strip()
    if length.isdigit() and int(length) > limit:
        response.close()
        raise ResponseTooLarge(f"EWS announced a {int(length)}-byte answer; the limit is {limit} bytes")
    buf = bytearray()
    for chunk in response.iter_content(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            response.close()
            raise ResponseTooLarge(f"EWS sent more than {limit} bytes in one answer; the rest was not read")
    body = bytes(buf)
    response._content = body
    response._content_consumed = True
    return body


_HTML = re.compile(rb"^\s*(<!doctype\s+html|<html)", re.IGNORECASE)
_TITLE = re.compile(rb"<title>([^<]{0,120})", re.IGNORECASE)
# SOAP forbids a document type declaration; one in an answer can only be an entity attack
# (billion laughs) or an external entity (XXE). exchangelib's parser does not expand them, but it
# silently drops what they stood for, so the answer is refused instead of half-read.
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def _check_soap(body: bytes, content_type: str) -> None:
    if "html" in content_type.lower() or _HTML.match(body[:1024]):
        title = _TITLE.search(body[:4096])
        shown = f" titled {title.group(1).decode('utf-8', 'replace').strip()!r}" if title else ""
        raise MalformedBody(f"EWS answered HTTP 200 with an HTML page{shown} instead of SOAP XML")
    if b"<!" in body and _DTD.search(body):  # memchr first: a DTD-free answer costs one scan
        raise UnsafeXml("EWS answered with a document type declaration (entity definitions); refused unparsed")
    # exchangelib parses leniently: a body cut short (a proxy, a dropped connection with a
    # correct Content-Length) yields a partial page whose SyncState would be stored, silently
    # losing the changes that were cut off. A complete SOAP answer ends with its Envelope.
    if not body.rstrip().endswith(b"Envelope>"):
        raise TruncatedResponse(f"EWS answered {len(body)} bytes that end before </Envelope>")


BaseProtocol.HTTP_ADAPTER_CLS = VerifyingAdapter
install_back_off_parser()
install_time_zone_guard()
install_whole_body_parser()
install_attendee_limit()
shapes.install()


class AccountPool:
    """Accounts per mailbox for one endpoint, shared by the threads of a process."""

    def __init__(self, endpoint: EwsEndpoint, max_accounts: int = 4096) -> None:
        self.endpoint = endpoint
        bundle = endpoint.ca_bundle or env().ews_ca_bundle
        if bundle:
            trust(endpoint.url, str(bundle))
        self.config = Configuration(
            service_endpoint=endpoint.url,
            credentials=Credentials(endpoint.username, endpoint.password),
            auth_type=BASIC,
            version=Version(build=BUILDS[endpoint.version]),
            # Back-offs are the task layer's job (a Celery retry frees the worker slot);
            # exchangelib must not sleep a thread through them.
            retry_policy=ServerHintPolicy(),
            max_connections=endpoint.max_connections,
        )
        self._accounts: OrderedDict[str, tuple[Account, Calendar]] = OrderedDict()
        self._max = max_accounts
        self._lock = threading.Lock()

    def calendar(self, mailbox: str) -> tuple[Account, Calendar]:
        key = mailbox.lower()
        with self._lock:
            hit = self._accounts.get(key)
            if hit is not None:
                self._accounts.move_to_end(key)
                return hit
        account = Account(
            primary_smtp_address=mailbox,
            config=self.config,
            autodiscover=False,
            access_type=IMPERSONATION,
            default_timezone=UTC,
            locale="en_US",
        )
        root = Root(account=account)
        calendar = Calendar(
            root=root,
            _distinguished_id=DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=mailbox)),
        )
        with self._lock:
            self._accounts[key] = (account, calendar)
            if len(self._accounts) > self._max:
                self._accounts.popitem(last=False)
        return account, calendar
