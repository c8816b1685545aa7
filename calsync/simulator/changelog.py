"""Per-mailbox change log that answers SyncFolderItems for any still-valid earlier SyncState.

Every change to an item takes the next sequence number of the mailbox and appends
``(seq, item_id)`` to the log. An item's latest entry is the only valid one (earlier entries of
the same item go stale), which gives Exchange's per-item collapsing for free: a client at
watermark ``W`` sees each item once, at its latest change, as Create when it was created after
``W``, Update otherwise, Delete when it was deleted after ``W`` but existed at ``W`` (created and
deleted since ``W`` yields nothing). A page ending early moves a paging cursor to the last change
it returned, so changes made while the client is still paging simply come later (see
Mailbox.changes_since for how Create/Delete are decided within such a run). The log is sorted
by seq, so an empty incremental sync is one bisect, never a scan of the mailbox; stale entries
are compacted away once they outnumber the valid ones.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Tombstone:
    deleted_seq: int
    created_seq: int


class ChangeLog:
    def __init__(self) -> None:
        self.seq = 0
        self._seqs: list[int] = []
        self._ids: list[str] = []
        self._stale = 0

    def __len__(self) -> int:
        return len(self._seqs)

    def record(self, item_id: str, superseded: bool) -> int:
        """Append a change and return its seq; ``superseded`` says an earlier entry went stale."""
        self.seq += 1
        self._seqs.append(self.seq)
        self._ids.append(item_id)
        if superseded:
            self._stale += 1
        return self.seq

    def entries_after(self, watermark: int, current_seq: Callable[[str], int | None]) -> Iterator[tuple[int, str]]:
        """Valid entries with seq > watermark, oldest first."""
        seqs, ids = self._seqs, self._ids
        for pos in range(bisect_right(seqs, watermark), len(seqs)):
            seq, item_id = seqs[pos], ids[pos]
            if current_seq(item_id) == seq:
                yield seq, item_id

    def maybe_compact(self, current_seq: Callable[[str], int | None]) -> None:
        if self._stale < 1024 or self._stale * 2 < len(self._seqs):
            return
        keep = [(s, i) for s, i in zip(self._seqs, self._ids, strict=True) if current_seq(i) == s]
        self._seqs = [s for s, _ in keep]
        self._ids = [i for _, i in keep]
        self._stale = 0
