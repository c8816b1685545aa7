"""Scenario 4: one dispatcher tick with 1,000 / 10,000 / 100,000 operators due.

The dispatcher's two halves are timed apart, in this process, against the bench Postgres
and Redis: the claim (calsync.store.lifecycle.claim_due in one transaction, commit included)
and the enqueue (calsync.tasks.dispatch.enqueue_chains: one sync_batch message per
operator). Operators and their sync_state rows are COPYed in, all due. The same tick is
then timed in the steady state: the operators in sync, so their polls go out as chunks of
CALSYNC_POLL_CHUNK_SIZE (one calsync.poll_chunk message per chunk).

Enqueue prototypes, measured on the same claims (bench code only; the product is untouched):
- "kombu batch": the same apply_async calls inside kombu 5.7's Producer.batch(), which
  pipelines the LPUSHes; measured because it is the obvious idea (it turned out slower);
- "no sent events": apply_async with task_send_sent_event off (celeryconfig has it on, so
  every message also costs a PUBLISH of a task-sent event);
- "template + pipeline": the message Celery would build, built once per tick as a template
  (one apply_async, read back from Redis), copied per operator with a fresh task id,
  arguments and delivery tag, and LPUSHed through one redis-py pipeline per 1,000. The
  messages are byte-for-byte what apply_async writes apart from those fields.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from bench import common


def _load(n: int) -> None:
    common.reset_database()
    common.flush_redis()
    common.add_operators([f"op{i:06d}@example.com" for i in range(n)])
    with common.connect() as conn:
        conn.execute("VACUUM ANALYZE sync_state")
        conn.execute("VACUUM ANALYZE operators")


def _claim() -> tuple[list[Any], float]:
    from calsync.config import env
    from calsync.store import lifecycle
    from calsync.store.db import transaction
    from calsync.tasks.dispatch import CLAIM_LIMIT

    t0 = time.perf_counter()
    with transaction() as conn:
        claimed = lifecycle.claim_due(conn, slack_seconds=30.0, lease_seconds=env().lease_seconds, limit=CLAIM_LIMIT)
    return claimed, time.perf_counter() - t0


def _release() -> None:
    with common.connect() as conn:
        conn.execute("UPDATE sync_state SET in_flight = false, lease_expires_at = NULL, next_poll_at = now()")


def _enqueue_batched(claimed: list[tuple[int, int]]) -> None:
    from calsync.celery import app
    from calsync.tasks.sync import sync_batch

    with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
        for operator_id, token in claimed:
            sync_batch.apply_async((operator_id, token), producer=producer)


def _enqueue_template(claimed: list[tuple[int, int]]) -> None:
    from calsync.tasks.sync import sync_batch

    if not claimed:
        return
    client = redis.Redis.from_url(common.REDIS_URL)
    op0, token0 = claimed[0]
    sync_batch.apply_async((op0, token0))  # the template, and the first operator's real message
    raw = client.lindex("sync", 0)
    assert raw is not None
    template = json.loads(raw)
    tail = base64.b64decode(template["body"]).decode()
    tail = tail[tail.index("]") + 1 : -1]  # ', {}, {"callbacks": ...}' after the args list
    marks = {"body": "\x00B", "id": "\x00I", "args": "\x00A", "tag": "\x00T"}
    template["body"] = marks["body"]
    template["headers"].update(id=marks["id"], root_id=marks["id"], argsrepr=marks["args"])
    template["properties"].update(correlation_id=marks["id"], delivery_tag=marks["tag"])
    text = json.dumps(template).replace("\\u0000", "\x00")
    parts: list[str] = []
    keys: list[str] = []
    rest = text
    while "\x00" in rest:
        before, _, after = rest.partition("\x00")
        parts.append(before)
        keys.append(after[0])
        rest = after[1:]
    parts.append(rest)
    pipe = client.pipeline(transaction=False)
    b64 = base64.b64encode
    for i, (operator_id, token) in enumerate(claimed[1:], 1):
        task_id = str(uuid.uuid4())
        values = {
            "B": b64(f"[[{operator_id}, {token}]{tail}]".encode()).decode(),
            "I": task_id,
            "A": f"({operator_id}, {token})",
            "T": str(uuid.uuid4()),
        }
        out = [parts[0]]
        for key, part in zip(keys, parts[1:], strict=True):
            out.append(values[key])
            out.append(part)
        pipe.lpush("sync", "".join(out))
        if i % 1000 == 0:
            pipe.execute()
    pipe.execute()


def _time_enqueue(fn: Callable[[Any], None], claimed: list[Any], messages: int | None = None) -> float:
    client = redis.Redis.from_url(common.REDIS_URL)
    client.delete("sync")
    t0 = time.perf_counter()
    fn(claimed)
    elapsed = time.perf_counter() - t0
    queued = int(client.llen("sync"))
    expected = len(claimed) if messages is None else messages
    if queued != expected:
        raise RuntimeError(f"enqueue published {queued} of {expected} messages")
    client.delete("sync")
    return elapsed


def run(quick: bool) -> dict[str, Any]:
    from calsync.celery import app
    from calsync.config import env
    from calsync.tasks.dispatch import chunked, enqueue_chains

    sizes = [1_000, 3_000] if quick else [1_000, 10_000, 100_000]
    rows = []
    for n in sizes:
        common.say(f"dispatcher: {n} operators due")
        _load(n)
        _claim()  # warm: pool, plans, caches
        _release()
        claims, claim_s = _claim()
        if len(claims) != n or any(c.quiet for c in claims):
            raise RuntimeError(f"claimed {len(claims)} of {n}, expected first syncs only")
        claimed = [(c.operator_id, c.token) for c in claims]
        row: dict[str, Any] = {"operators": n, "claim_s": round(claim_s, 3)}
        row["enqueue_s"] = round(_time_enqueue(enqueue_chains, claims), 3)
        if not quick and n <= 1_000:  # 7 s at 10,000 and 35 s at 100,000 here: not worth the run time
            row["enqueue_kombu_batch_s"] = round(_time_enqueue(_enqueue_batched, claimed), 3)
        sent = app.conf.task_send_sent_event
        app.conf.task_send_sent_event = False
        try:
            row["enqueue_no_events_s"] = round(_time_enqueue(enqueue_chains, claims), 3)
        finally:
            app.conf.task_send_sent_event = sent
        row["enqueue_template_s"] = round(_time_enqueue(_enqueue_template, claimed), 3)
        row["tick_s"] = round(row["claim_s"] + row["enqueue_s"], 3)
        row["tick_prototype_s"] = round(row["claim_s"] + row["enqueue_template_s"], 3)
        row["us_per_operator"] = round(1e6 * row["tick_s"] / n, 1)
        # Steady state: the same operators in sync, so their polls go out in chunks.
        with common.connect() as conn:
            conn.execute("UPDATE sync_state SET stage = 'incremental', status = 'active'")
        _release()
        quiet, row["steady_claim_s"] = _claim()
        chunks = len(chunked([(c.operator_id, c.token) for c in quiet], env().poll_chunk_size))
        row["steady_enqueue_s"] = round(_time_enqueue(enqueue_chains, quiet, messages=chunks), 3)
        row["steady_claim_s"] = round(row["steady_claim_s"], 3)
        row["steady_tick_s"] = round(row["steady_claim_s"] + row["steady_enqueue_s"], 3)
        row["steady_messages"] = chunks
        common.say(
            f"  claim {row['claim_s']}s, enqueue {row['enqueue_s']}s (kombu batch "
            f"{row.get('enqueue_kombu_batch_s', '-')}s, no sent events {row['enqueue_no_events_s']}s, "
            f"template + pipeline {row['enqueue_template_s']}s); in sync: claim {row['steady_claim_s']}s, "
            f"{chunks} chunk messages {row['steady_enqueue_s']}s"
        )
        rows.append(row)
    common.reset_database()
    common.flush_redis()
    big = rows[-1]
    return {
        "ticks": rows,
        "largest": big["operators"],
        "largest_tick_s": big["tick_s"],
        "largest_tick_prototype_s": big["tick_prototype_s"],
        "largest_steady_tick_s": big["steady_tick_s"],
        "linear_ratio": round(big["us_per_operator"] / rows[0]["us_per_operator"], 2),
    }
