"""Request counters, so tests and benchmarks can see what calsync did to "Exchange"."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests: Counter[str] = Counter()
            self.per_mailbox: defaultdict[str, Counter[str]] = defaultdict(Counter)
            self.faults: Counter[str] = Counter()
            self.responses: Counter[str] = Counter()
            self.peak_mailbox: Counter[str] = Counter()
            self.peak_account: Counter[str] = Counter()
            self.schema_violations = 0
            self.schema_errors: list[str] = []
            # Current concurrency survives a reset: those requests are still running.
            if not hasattr(self, "current_mailbox"):
                self.current_mailbox: Counter[str] = Counter()
                self.current_account: Counter[str] = Counter()
                self.current_sync: Counter[str] = Counter()

    def request(self, operation: str, mailbox: str | None) -> None:
        with self._lock:
            self.requests[operation] += 1
            if mailbox:
                self.per_mailbox[mailbox][operation] += 1

    def response(self, code: str) -> None:
        with self._lock:
            self.responses[code] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def violation(self, text: str) -> None:
        with self._lock:
            self.schema_violations += 1
            if len(self.schema_errors) < 100:
                self.schema_errors.append(text)

    def enter(self, mailbox: str | None, account: str, sync: bool) -> tuple[int, int, int]:
        """Count a request in; returns the concurrency now (mailbox, account, mailbox syncs)."""
        with self._lock:
            self.current_account[account] += 1
            acc = self.current_account[account]
            self.peak_account[account] = max(self.peak_account[account], acc)
            mbx = syncs = 0
            if mailbox:
                self.current_mailbox[mailbox] += 1
                mbx = self.current_mailbox[mailbox]
                self.peak_mailbox[mailbox] = max(self.peak_mailbox[mailbox], mbx)
                if sync:
                    self.current_sync[mailbox] += 1
                    syncs = self.current_sync[mailbox]
            return mbx, acc, syncs

    def leave(self, mailbox: str | None, account: str, sync: bool) -> None:
        with self._lock:
            self.current_account[account] -= 1
            if mailbox:
                self.current_mailbox[mailbox] -= 1
                if sync:
                    self.current_sync[mailbox] -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "requests_total": sum(self.requests.values()),
                "per_mailbox": {m: dict(c) for m, c in self.per_mailbox.items()},
                "faults_injected": dict(self.faults),
                "responses": dict(self.responses),
                "concurrency": {
                    "mailbox_current": {k: v for k, v in self.current_mailbox.items() if v},
                    "mailbox_peak": dict(self.peak_mailbox),
                    "account_current": {k: v for k, v in self.current_account.items() if v},
                    "account_peak": dict(self.peak_account),
                },
                "schema_violations": self.schema_violations,
                "schema_errors": list(self.schema_errors),
            }
