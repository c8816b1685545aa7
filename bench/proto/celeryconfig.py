"""A bench-only overlay of the product's celeryconfig, to measure proposed settings before the lead applies them.

Put this directory first on PYTHONPATH of a `celery` process: it loads the real
celeryconfig.py and overrides what CALSYNC_BENCH_PROTO names (comma-separated):
- no-events: worker_send_task_events and task_send_sent_event off (Flower then needs
  `celery control enable_events` while it watches).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

_path = Path(__file__).resolve().parent.parent.parent / "celeryconfig.py"
_spec = importlib.util.spec_from_file_location("_calsync_celeryconfig", _path)
assert _spec is not None and _spec.loader is not None
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)
globals().update({k: v for k, v in vars(_real).items() if not k.startswith("__")})

_proto = {p.strip() for p in os.environ.get("CALSYNC_BENCH_PROTO", "").split(",") if p.strip()}
BENCH_PROTO = sorted(_proto)
if "no-events" in _proto:
    worker_send_task_events = False
    task_send_sent_event = False
print(f"bench/proto/celeryconfig.py overlay active: {BENCH_PROTO}", file=__import__("sys").stderr)
