"""Faults injected on demand, so calsync's error handling is tested against what Exchange really does.

A fault applies to all mailboxes or one (``mailbox``), to every operation or one (``operation``),
either at a ``rate`` (0..1, drawn from a seeded RNG so runs repeat) or for the next ``count``
matching requests, or always when neither is given. Limit kinds are not drawn: they refuse
requests over ``limit`` concurrent ones, as Exchange's throttling budgets do. This table knows
the protocol-neutral kinds; each front-end registers its own (ews/faults.py).
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import asdict, dataclass
from typing import Any

from calsync.simulator.model import ValidationError

#: Faults every front-end honours: they act on HTTP, not on a protocol's messages.
NEUTRAL_KINDS = ("latency", "http_503", "http_429", "truncated_body", "malformed_body", "connection_reset")
#: Every fault kind and operation name a request can be matched against; front-ends add theirs with
#: :func:`register` when imported (calsync/simulator/ews/faults.py), so the admin API accepts them.
KINDS: tuple[str, ...] = NEUTRAL_KINDS
LIMIT_KINDS: tuple[str, ...] = ()
OPERATIONS: tuple[str, ...] = ()
#: Kinds that, without an explicit ``operation``, apply to one operation only.
DEFAULT_OPERATION: dict[str, str] = {}


def register(
    kinds: tuple[str, ...] = (),
    operations: tuple[str, ...] = (),
    limit_kinds: tuple[str, ...] = (),
    default_operation: dict[str, str] | None = None,
) -> None:
    """Add a front-end's own fault kinds and operation names (idempotent)."""
    global KINDS, LIMIT_KINDS, OPERATIONS
    KINDS = (*KINDS, *(k for k in (*kinds, *limit_kinds) if k not in KINDS))
    LIMIT_KINDS = (*LIMIT_KINDS, *(k for k in limit_kinds if k not in LIMIT_KINDS))
    OPERATIONS = (*OPERATIONS, *(o for o in operations if o not in OPERATIONS))
    DEFAULT_OPERATION.update(default_operation or {})


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    mailbox: str | None = None
    operation: str | None = None
    account: str | None = None
    rate: float | None = None
    count: int | None = None
    latency_ms: int = 0
    jitter_ms: int = 0
    back_off_ms: int = 30000
    retry_after: int = 5
    limit: int = 5
    injected: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, mailbox: str | None, operation: str, account: str | None) -> bool:
        if self.mailbox is not None and (mailbox is None or mailbox.lower() != self.mailbox.lower()):
            return False
        if self.account is not None and account != self.account:
            return False
        if self.operation is not None:
            return operation == self.operation
        only = DEFAULT_OPERATION.get(self.kind)
        if only is not None:
            return operation == only
        return True


def _number(data: dict[str, Any], key: str, kind: type, low: float, high: float | None = None) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ValidationError(f"{key} must be a number")
    if value < low or (high is not None and value > high):
        raise ValidationError(f"{key} out of range")
    return kind(value)


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)

    def add(self, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValidationError("expected a JSON object")
        known = {f for f in Fault.__dataclass_fields__ if f not in ("id", "injected")}
        unknown = set(data) - known
        if unknown:
            raise ValidationError(f"unknown fault fields: {sorted(unknown)}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValidationError(f"kind must be one of {KINDS}")
        operation = data.get("operation")
        if operation is not None and operation not in OPERATIONS:
            raise ValidationError(f"operation must be one of {OPERATIONS}")
        for key in ("mailbox", "account"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValidationError(f"{key} must be a string")
        options = {
            "rate": _number(data, "rate", float, 0, 1),
            "count": _number(data, "count", int, 0),
        }
        defaults = Fault(id=0, kind=kind)
        for key in ("latency_ms", "jitter_ms", "back_off_ms", "retry_after", "limit"):
            value = _number(data, key, int, 0)
            options[key] = getattr(defaults, key) if value is None else value
        with self._lock:
            fault = Fault(
                id=next(self._ids),
                kind=kind,
                mailbox=data.get("mailbox"),
                operation=operation,
                account=data.get("account"),
                **options,
            )
            self._faults[fault.id] = fault
        return fault

    def all(self) -> list[Fault]:
        with self._lock:
            return list(self._faults.values())

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __bool__(self) -> bool:
        return bool(self._faults)

    def draw(
        self, mailbox: str | None, operation: str, account: str | None, kinds: tuple[str, ...] | None = None
    ) -> list[Fault]:
        """The faults that fire for this request (each counted as injected by the caller's use).

        ``kinds`` limits the draw to those kinds, so a caller that honours only a few (Graph's
        notification faults) does not use up the ``count`` of faults meant for requests."""
        if not self._faults:
            return []
        fired: list[Fault] = []
        with self._lock:
            for fault in list(self._faults.values()):
                if fault.kind in LIMIT_KINDS or not fault.matches(mailbox, operation, account):
                    continue
                if kinds is not None and fault.kind not in kinds:
                    continue
                if fault.count is not None:
                    if fault.count <= 0:
                        continue
                    fault.count -= 1
                elif fault.rate is not None and self._rng.random() >= fault.rate:
                    continue
                fired.append(fault)
        return fired

    def limits(self, kind: str, mailbox: str | None, operation: str, account: str | None) -> list[Fault]:
        if not self._faults:
            return []
        with self._lock:
            return [f for f in self._faults.values() if f.kind == kind and f.matches(mailbox, operation, account)]

    def mark(self, fault: Fault) -> None:
        with self._lock:
            fault.injected += 1
