"""Fast publication of many task messages: one dispatcher tick may start 100,000 chains.

Celery's apply_async costs about half a millisecond per task (routing, declaring, repr,
events), which makes a tick of 100,000 operators take close to a minute. Every message of a
tick differs only in its task id and arguments, so one message is built by Celery itself as
a template and the rest are produced from it and pushed through one Redis pipeline per
chunk, exactly as kombu's Redis transport stores them (tests/unit/test_publish.py compares
the two formats so a kombu upgrade that changes it fails loudly). The queue comes from Celery's
own router, the one apply_async asks, so a change of task_routes moves both paths
(tests/unit/test_routing.py).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Sequence
from typing import Any

import redis
from kombu.utils.uuid import uuid

from calsync.tasks import names

TASK_NAME = names.SYNC_BATCH
CHUNK_TASK_NAME = names.POLL_CHUNK


def queue_for(app: Any, task_name: str) -> str:
    """The queue Celery routes `task_name` to (task_routes, else task_default_queue)."""
    queue = app.amqp.router.route({}, task_name, (), {})["queue"]
    return str(getattr(queue, "name", queue))


def build_template(app: Any, task_name: str = TASK_NAME) -> dict[str, Any]:
    """A complete kombu message for `task_name` (on its routed queue), made by Celery's own code."""
    queue = queue_for(app, task_name)
    task_id = uuid()
    msg = app.amqp.as_task_v2(
        task_id, task_name, args=(0, 0), kwargs={}, ignore_result=True,
        time_limit=app.conf.task_time_limit, soft_time_limit=app.conf.task_soft_time_limit,
    )  # fmt: skip
    headers, properties, body = msg.headers, dict(msg.properties), msg.body
    properties.update(
        delivery_mode=2,
        delivery_info={"exchange": "", "routing_key": queue},
        priority=0,
        body_encoding="base64",
        delivery_tag=uuid(),
    )
    return {
        "body": _encode_body(body),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
        "_embed": body[2],
        "_queue": queue,
    }


def _encode_body(body: Any) -> str:
    return base64.b64encode(json.dumps(body).encode()).decode()


def render(template: dict[str, Any], args: Sequence[Any]) -> str:
    task_id = uuid()
    msg = copy.copy(template)
    embed = msg.pop("_embed")
    msg.pop("_queue", None)
    msg["body"] = _encode_body([list(args), {}, embed])
    headers = dict(template["headers"])
    headers.update(id=task_id, root_id=task_id, argsrepr=repr(tuple(args)))
    props = dict(template["properties"])
    props.update(correlation_id=task_id, delivery_tag=uuid())
    msg["headers"], msg["properties"] = headers, props
    return json.dumps(msg)


def publish_first_batches(app: Any, client: redis.Redis, claimed: Sequence[tuple[int, int]], chunk: int = 2000) -> None:
    """One calsync.sync_batch message (operator id, token) per claimed operator."""
    _publish(client, build_template(app), claimed, chunk)


def publish_poll_chunks(
    app: Any, client: redis.Redis, chunks: Sequence[Sequence[tuple[int, int]]], chunk: int = 2000
) -> None:
    """One calsync.poll_chunk message per chunk of (operator id, token) claims."""
    args = [([[op, token] for op, token in claims],) for claims in chunks]
    _publish(client, build_template(app, CHUNK_TASK_NAME), args, chunk)


def _publish(client: redis.Redis, template: dict[str, Any], args: Sequence[Sequence[Any]], chunk: int) -> None:
    queue = template["_queue"]
    for i in range(0, len(args), chunk):
        pipe = client.pipeline(transaction=False)
        for a in args[i : i + chunk]:
            pipe.lpush(queue, render(template, a))
        pipe.execute()
