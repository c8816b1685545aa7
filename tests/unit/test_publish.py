"""The dispatcher's fast publication writes exactly the message Celery itself would.

Compared on a real Redis: a kombu upgrade that changes the stored format fails here, not in
production.
"""

from __future__ import annotations

import base64
import json
from typing import Any

VOLATILE_HEADERS = {"id", "root_id", "origin"}
VOLATILE_PROPERTIES = {"correlation_id", "delivery_tag", "reply_to"}


def _stable(msg: dict[str, Any]) -> dict[str, Any]:
    out = dict(msg)
    out["headers"] = {k: v for k, v in msg["headers"].items() if k not in VOLATILE_HEADERS}
    out["properties"] = {k: v for k, v in msg["properties"].items() if k not in VOLATILE_PROPERTIES}
    out["body"] = json.loads(base64.b64decode(msg["body"]))
    return out


def test_fast_path_message_equals_celerys_own(clean_redis: Any) -> None:
    from calsync.celery import app
    from calsync.runtime import broker_client
    from calsync.tasks.publish import TASK_NAME, publish_first_batches, queue_for
    from calsync.tasks.sync import sync_batch

    SYNC_QUEUE = queue_for(app, TASK_NAME)
    assert SYNC_QUEUE == "sync", "celeryconfig routes sync batches to the sync queue"

    sync_batch.apply_async((41, 42))
    celerys = json.loads(clean_redis.lpop(SYNC_QUEUE))
    publish_first_batches(app, broker_client(), [(41, 42), (43, 44)])
    fast = [json.loads(clean_redis.rpop(SYNC_QUEUE)) for _ in range(2)]
    assert _stable(fast[0]) == _stable(celerys)
    assert fast[1]["headers"]["argsrepr"] == "(43, 44)"
    ids = {m["headers"]["id"] for m in fast} | {celerys["headers"]["id"]}
    tags = {m["properties"]["delivery_tag"] for m in fast}
    assert len(ids) == 3 and len(tags) == 2, "every message has its own task id and delivery tag"
    assert fast[0]["headers"]["root_id"] == fast[0]["headers"]["id"] == fast[0]["properties"]["correlation_id"]


def test_fast_path_chunk_message_equals_celerys_own(clean_redis: Any) -> None:
    from calsync.celery import app
    from calsync.runtime import broker_client
    from calsync.tasks.poll import poll_chunk
    from calsync.tasks.publish import CHUNK_TASK_NAME, publish_poll_chunks, queue_for

    SYNC_QUEUE = queue_for(app, CHUNK_TASK_NAME)
    assert SYNC_QUEUE == "sync", "celeryconfig routes poll chunks to the sync queue"

    poll_chunk.apply_async(([[41, 42], [43, 44]],))
    celerys = json.loads(clean_redis.lpop(SYNC_QUEUE))
    publish_poll_chunks(app, broker_client(), [[(41, 42), (43, 44)], [(45, 46)]])
    fast = [json.loads(clean_redis.rpop(SYNC_QUEUE)) for _ in range(2)]
    assert _stable(fast[0]) == _stable(celerys)
    assert fast[1]["headers"]["argsrepr"] == "([[45, 46]],)"
    assert json.loads(base64.b64decode(fast[1]["body"]))[0] == [[[45, 46]]]
