"""Issue 8: `calsync sync EMAIL --wait` syncs one operator now through the real workers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

from calsync.simulator import SimulatorProcess, mailbox_email
from tests.conftest import CALSYNC
from tests.distributed.stack import Stack, insert_operators, wait_for


def test_sync_now_with_wait(
    db: Any, stack_factory: Callable[..., tuple[Stack, SimulatorProcess]], set_settings: Callable[..., None]
) -> None:
    stack, _ = stack_factory(mailboxes=2, appointments=30)
    set_settings(poll_interval_minutes=600)
    operators = insert_operators(db, [mailbox_email(1), mailbox_email(2)])
    # Both were synced long ago and are not due for hours.
    db.execute("UPDATE sync_state SET next_poll_at = now() + interval '5 hours'")
    stack.worker("w1", concurrency=2)
    # `calsync sync --wait` refuses at once when no worker answers a ping (issue 14), so the
    # worker must be up first: a slow start is not what this test is about.
    wait_for(lambda: " ready." in stack.log("w1"), 60, "the worker to be ready")
    proc = subprocess.run(
        [CALSYNC, "sync", mailbox_email(1), "--wait", "--timeout", "60"],
        env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{mailbox_email(1)}: synced" in proc.stdout
    rows = {r["operator_id"]: r for r in db.execute("SELECT operator_id, last_success_at FROM sync_state")}
    assert rows[operators[mailbox_email(1)]]["last_success_at"] is not None
    assert rows[operators[mailbox_email(2)]]["last_success_at"] is None, "only the named operator was synced"
    bad = subprocess.run([CALSYNC, "sync"], env={**os.environ, **stack.env}, capture_output=True, text=True)
    assert bad.returncode == 2 and "--all" in bad.stderr
