"""How the dispatcher cuts a tick's quiet polls into chunks (calsync.tasks.dispatch.chunked)."""

from __future__ import annotations

from calsync.tasks.dispatch import chunked


def test_a_small_tick_is_spread_over_many_chunks_so_every_worker_thread_gets_work() -> None:
    claims = [(i, i) for i in range(640)]
    assert [len(c) for c in chunked(claims[:10], 25)] == [1] * 10
    assert {len(c) for c in chunked(claims, 25)} == {10}


def test_a_large_tick_is_capped_at_the_chunk_size() -> None:
    claims = [(i, i) for i in range(5000)]
    chunks = chunked(claims, 25)
    assert {len(c) for c in chunks} == {25} and len(chunks) == 200


def test_every_claim_lands_in_exactly_one_chunk_in_order() -> None:
    claims = [(i, 10 * i) for i in range(1001)]
    assert [x for c in chunked(claims, 7) for x in c] == claims
    assert chunked([], 25) == []
