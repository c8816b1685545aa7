"""`calsync.roll_horizon`: the daily task that adds the occurrences entering the horizon.

The work is calsync.horizon (testable without Celery). The daily task only lists the
operators that have series and fans them out in chunks, so no single task runs into the
time limit however large the fleet; rolling an operator twice adds nothing the second
time, so a redelivered message is harmless.
"""

from __future__ import annotations

import logging

from calsync.celery import app
from calsync.horizon import roll_operator
from calsync.store import appointments
from calsync.store.db import transaction
from calsync.tasks import names
from calsync.tasks.base import CalsyncTask

log = logging.getLogger(__name__)

CHUNK = 200  # operators per task: a few seconds of work, far below the time limit


@app.task(bind=True, base=CalsyncTask, name=names.ROLL_HORIZON)
def roll_horizon_task(self: CalsyncTask) -> dict[str, int]:
    with transaction() as conn:
        operator_ids = appointments.operators_with_series(conn)
    for i in range(0, len(operator_ids), CHUNK):
        roll_horizon_chunk.apply_async((operator_ids[i : i + CHUNK],))
    log.info(
        "horizon roll: %d operator(s) with series, in %d task(s)", len(operator_ids), -(-len(operator_ids) // CHUNK)
    )
    return {"operators": len(operator_ids)}


@app.task(bind=True, base=CalsyncTask, name=names.ROLL_HORIZON_CHUNK)
def roll_horizon_chunk(self: CalsyncTask, operator_ids: list[int]) -> dict[str, int]:
    series = added = 0
    for operator_id in operator_ids:
        n, created = roll_operator(operator_id)
        series += n
        added += created
    log.info("horizon rolled: %d occurrence(s) added for %d series of %d operator(s)", added, series, len(operator_ids))
    return {"operators": len(operator_ids), "series": series, "added": added}
