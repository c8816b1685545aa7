"""`calsync.roll_horizon`: the daily task that adds the occurrences entering the horizon.

All the work is calsync.horizon.roll_horizon (testable without Celery); running it twice adds
nothing the second time, so a redelivered message is harmless.
"""

from __future__ import annotations

import logging

from calsync.celery import app
from calsync.horizon import roll_horizon
from calsync.tasks.base import CalsyncTask

log = logging.getLogger(__name__)


@app.task(bind=True, base=CalsyncTask, name="calsync.roll_horizon")
def roll_horizon_task(self: CalsyncTask) -> dict[str, int]:
    outcome = roll_horizon()
    log.info(
        "horizon rolled: %d occurrence(s) added for %d series of %d operator(s)",
        outcome.added,
        outcome.series,
        outcome.operators,
    )
    return {"operators": outcome.operators, "series": outcome.series, "added": outcome.added}
