"""The horizon roll: each day, the occurrences that moved inside the horizon become rows.

A sync expands a series only when Exchange reports a change to it, so without this a weekly
meeting created today would end 365 days from now in the CRM. The roll needs no Exchange
call: it re-expands each stored series from its recurrence JSON, skipping its deleted
occurrences and every original start that already has a row (occurrence or exception), and
only adds rows. Past rows age out of the window but stay; the next sync of their series makes
the series' rows exact again.

Plain function (Celery's `calsync.roll_horizon` task in calsync.tasks.horizon only calls it),
one transaction per operator, taken under the operator's sync_state row lock so that it never
interleaves with a batch writing the same series.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from calsync.runner.batch import window_for
from calsync.store import appointments, lifecycle
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from calsync.sync.occurrences import plain_occurrences


@dataclass(frozen=True, slots=True)
class RollOutcome:
    operators: int
    series: int
    added: int


def roll_operator(operator_id: int, now: dt.datetime | None = None) -> tuple[int, int]:
    """Add the missing occurrences of one operator's series; returns (series, rows added)."""
    with transaction() as conn:
        settings = settings_store.load(conn)
        window = window_for(settings, now or dt.datetime.now(dt.UTC))
        lifecycle.lock(conn, [operator_id])
        masters = appointments.series_masters(conn, operator_id)
        rows = [row for master, covered in masters for row in plain_occurrences(master, window, covered)]
        created, _ = appointments.upsert(conn, operator_id, rows)
    return len(masters), created


def roll_horizon(now: dt.datetime | None = None) -> RollOutcome:
    with transaction() as conn:
        operator_ids = appointments.operators_with_series(conn)
    series = added = 0
    for operator_id in operator_ids:
        n, created = roll_operator(operator_id, now)
        series += n
        added += created
    return RollOutcome(operators=len(operator_ids), series=series, added=added)
