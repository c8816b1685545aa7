"""One routing table: apply_async and the dispatcher's fast publication both follow task_routes.

On a real Redis: the route of calsync.sync_batch and calsync.poll_chunk is changed the way an
operator would change celeryconfig (app.conf), and the messages of both paths must land on the
new queues, none on the old one.
"""

from __future__ import annotations

import json
from typing import Any


def _messages(client: Any, queue: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in client.lrange(queue, 0, -1)]


def test_a_changed_route_moves_both_publish_paths(clean_redis: Any) -> None:
    from calsync.celery import app
    from calsync.runtime import broker_client
    from calsync.tasks import names
    from calsync.tasks.poll import poll_chunk
    from calsync.tasks.publish import publish_first_batches, publish_poll_chunks, queue_for
    from calsync.tasks.sync import sync_batch

    original = app.conf.task_routes
    assert queue_for(app, names.SYNC_BATCH) == queue_for(app, names.POLL_CHUNK) == "sync"
    app.conf.update(
        task_routes={
            **original,
            names.SYNC_BATCH: {"queue": "moved-batches"},
            names.POLL_CHUNK: {"queue": "moved-chunks"},
        }
    )
    try:
        sync_batch.apply_async((1, 2))
        publish_first_batches(app, broker_client(), [(3, 4), (5, 6)])
        poll_chunk.apply_async(([[7, 8]],))
        publish_poll_chunks(app, broker_client(), [[(9, 10)], [(11, 12)]])

        assert clean_redis.llen("sync") == 0, "nothing may stay on the old queue"
        batches = _messages(clean_redis, "moved-batches")
        chunks = _messages(clean_redis, "moved-chunks")
        assert sorted(m["headers"]["argsrepr"] for m in batches) == ["(1, 2)", "(3, 4)", "(5, 6)"]
        assert sorted(m["headers"]["argsrepr"] for m in chunks) == ["([[11, 12]],)", "([[7, 8]],)", "([[9, 10]],)"]
        assert {m["headers"]["task"] for m in batches} == {names.SYNC_BATCH}
        assert {m["headers"]["task"] for m in chunks} == {names.POLL_CHUNK}
        assert {m["properties"]["delivery_info"]["routing_key"] for m in batches} == {"moved-batches"}
        assert {m["properties"]["delivery_info"]["routing_key"] for m in chunks} == {"moved-chunks"}
    finally:
        app.conf.update(task_routes=original)
    assert queue_for(app, names.SYNC_BATCH) == "sync", "restoring the table restores the fast path's queue"


def test_every_calsync_task_is_named_once_in_names() -> None:
    """A task added or renamed without calsync.tasks.names would escape the one table of names."""
    from calsync.celery import app
    from calsync.tasks import names
    from calsync.tasks.publish import queue_for

    app.loader.import_default_modules()
    registered = {name for name in app.tasks if name.startswith("calsync.")}
    assert registered == set(names.ALL)
    assert any(n.startswith(names.NOTIFY_PREFIX) for n in registered), "the notify route must match a task"
    assert queue_for(app, names.DISPATCH) == "dispatch"
    assert queue_for(app, names.NOTIFY_SEND_PENDING) == "notify"
