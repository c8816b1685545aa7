"""A bench-only overlay of the product's celeryconfig, to measure proposed settings before the lead applies them.

Put this directory on PYTHONPATH of a `celery` process and set CELERY_CONFIG_MODULE=celeryconfig
(Celery's own variable, which calsync/celery.py honours): it loads the real calsync.celeryconfig
and overrides what CALSYNC_BENCH_PROTO names (comma-separated):
- no-events: worker_send_task_events and task_send_sent_event off (Flower then needs
  `celery control enable_events` while it watches).
"""

from __future__ import annotations

import os

import calsync.celeryconfig as _real

globals().update({k: v for k, v in vars(_real).items() if not k.startswith("__")})

_proto = {p.strip() for p in os.environ.get("CALSYNC_BENCH_PROTO", "").split(",") if p.strip()}
BENCH_PROTO = sorted(_proto)
if "no-events" in _proto:
    worker_send_task_events = False
    task_send_sent_event = False
print(f"bench/proto/celeryconfig.py overlay active: {BENCH_PROTO}", file=__import__("sys").stderr)
