"""Issue 5: Flower runs against the same broker, behind basic auth, and shows tasks by name."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import requests

from calsync.celery_procs import CELERY
from tests.distributed.stack import free_port, wait_for


def test_flower_requires_basic_auth_and_sees_calsync_tasks(redis_url: str, clean_redis: Any) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [CELERY, "-A", "calsync", "flower", "--address=127.0.0.1", f"--port={port}", "--basic-auth=ops:s3cret"],
        env={**os.environ, "CALSYNC_REDIS_URL": redis_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/healthcheck", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, 30, "flower")
        assert requests.get(f"{base}/", timeout=5).status_code == 401
        assert requests.get(f"{base}/", auth=("ops", "wrong"), timeout=5).status_code == 401
        assert requests.get(f"{base}/", auth=("ops", "s3cret"), timeout=5).status_code == 200
        tasks = requests.get(f"{base}/api/task/types", auth=("ops", "s3cret"), timeout=5)
        assert tasks.status_code in (200, 503)  # 503 until a worker reports; the route exists either way
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
