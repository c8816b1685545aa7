"""exchangelib Accounts for impersonated mailboxes, built without any discovery call.

An explicit Version and auth type mean exchangelib sends no autodiscover or version-probing
requests; the calendar folder is addressed by its distinguished id, so no GetFolder either.
exchangelib caches one Protocol (connection pool) per endpoint and credentials per process;
Accounts are cheap but not free, so a bounded LRU keeps the recent ones.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from exchangelib import BASIC, IMPERSONATION, UTC, Account, Configuration, Credentials
from exchangelib.folders import Calendar, Root
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import FailFast
from exchangelib.version import Build, Version

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


class AccountPool:
    """Accounts per mailbox for one endpoint, shared by the threads of a process."""

    def __init__(self, endpoint: EwsEndpoint, max_accounts: int = 4096) -> None:
        self.endpoint = endpoint
        self.config = Configuration(
            service_endpoint=endpoint.url,
            credentials=Credentials(endpoint.username, endpoint.password),
            auth_type=BASIC,
            version=Version(build=BUILDS[endpoint.version]),
            # Back-offs are the task layer's job (a Celery retry frees the worker slot);
            # exchangelib must not sleep a thread through them.
            retry_policy=FailFast(),
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
