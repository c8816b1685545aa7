"""calendarView delta over the mailbox change log: windowed, paged, with @removed.

A token (skip or delta) carries the mailbox incarnation and reset epoch, the window, the
watermark the round started from (`since`), the change-log position the round's pages are
taken up to (`upto`) and where the last page stopped (change seq and position inside that
item's entries). An item changed while the client pages moves past `upto` and comes in the
next round, so pages never shift under the client. A series stands for its instances in
the window (occurrences in the thin shape, exceptions in full); its deleted occurrences,
a deleted item and an item that left the window come as `@removed` to a client that may
have them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from calsync.simulator import series
from calsync.simulator.graph import render
from calsync.simulator.mailbox import Mailbox, occurrence_id


class TokenGone(Exception):
    """A token of another mailbox incarnation, from before a reset, or garbled: 410 syncStateNotFound."""


@dataclass(frozen=True, slots=True)
class Token:
    key: str
    epoch: int
    start: dt.datetime
    end: dt.datetime
    since: int
    upto: int | None = None  # None: a delta token (the round starts at the next call)
    seq: int = 0  # the page stopped inside the entries of the change with this seq...
    pos: int = 0  # ...before this entry

    def encode(self) -> str:
        data = [self.key, self.epoch, render.instant(self.start), render.instant(self.end), self.since, self.upto,
                self.seq, self.pos]  # fmt: skip
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, mailbox: Mailbox) -> Token:
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            key, epoch, start, end, since, upto, seq, pos = raw
            token = cls(
                str(key), int(epoch), _parse(start), _parse(end), int(since), None if upto is None else int(upto),
                int(seq), int(pos),
            )  # fmt: skip
        except (ValueError, TypeError, binascii.Error) as exc:
            raise TokenGone("not a delta token") from exc
        if token.key != mailbox.key or token.epoch != mailbox.epoch or token.since > mailbox.log.seq:
            raise TokenGone("delta token of another mailbox, or from before a reset")
        return token


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _entries(mailbox: Mailbox, item_id: str, token: Token) -> list[dict[str, Any]]:
    since = token.since
    item = mailbox.items.get(item_id)
    if item is None:
        tomb = mailbox.tombstones.get(item_id)
        return [render.removed(render.graph_id(item_id))] if tomb is not None and tomb.created_seq <= since else []
    may_have = item.created_seq <= since
    if item.recurrence is None:
        if series.instances(item, token.start, token.end):
            return [render.event(item, mailbox.email)]
        return [render.removed(render.graph_id(item.id))] if may_have else []
    out: list[dict[str, Any]] = []
    for inst in series.instances(item, token.start, token.end):
        if inst.kind == "Exception":
            out.append(render.instance_event(inst, mailbox.email))
        else:
            out.append(render.thin_occurrence(inst))
    if may_have:
        for original in sorted(item.deleted_occurrences):
            if token.start <= original < token.end:
                out.append(render.removed(render.graph_id(occurrence_id(item.id, original))))
    return out


def page(mailbox: Mailbox, token: Token, size: int) -> tuple[list[dict[str, Any]], Token, bool]:
    """One page: its entries, the next token, and whether it is the round's last page."""
    upto = mailbox.log.seq if token.upto is None else token.upto
    out: list[dict[str, Any]] = []
    for seq, item_id in mailbox.log.entries_after(max(token.since, token.seq - 1), mailbox._current_seq):
        if seq > upto:
            break
        if seq < token.seq:
            continue
        entries = _entries(mailbox, item_id, token)
        start = token.pos if seq == token.seq else 0
        for pos in range(start, len(entries)):
            if len(out) == size:
                return out, Token(token.key, token.epoch, token.start, token.end, token.since, upto, seq, pos), False
            out.append(entries[pos])
    done = Token(token.key, token.epoch, token.start, token.end, upto, None, 0, 0)
    return out, done, True
