"""Issue 4, named cases: daylight saving in three zones, all-day dates east and west of UTC, row
identity of exceptions, series turned single, resync, and the daily horizon roll."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from calsync.horizon import roll_horizon
from calsync.simulator import Simulator
from calsync.source.ews.source import EwsSource
from tests.integration.truth import expected_rows, mirror_rows
from tests.recurrence.conftest import NOW, assert_mirror_matches, sync_all

UTC = dt.UTC


def weekly(day: str, start: dt.date, **rng: Any) -> dict[str, Any]:
    kind = "Numbered" if "count" in rng else "EndDate" if "end_date" in rng else "NoEnd"
    return {
        "pattern": {"type": "Weekly", "interval": 1, "days_of_week": [day]},
        "range": {"type": kind, "start_date": start.isoformat(), **rng},
    }


def occurrence_rows(db: psycopg.Connection[Any], op: int, series_id: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT * FROM appointments WHERE operator_id = %s AND series_item_id = %s ORDER BY original_start",
        (op, series_id),
    ).fetchall()


@pytest.mark.parametrize(
    ("zone", "winter_utc", "summer_utc"),
    [
        ("Europe/Berlin", dt.time(8, 0), dt.time(7, 0)),
        ("America/New_York", dt.time(14, 0), dt.time(13, 0)),
        # Southern hemisphere: daylight saving in January, standard time in July.
        ("Australia/Sydney", dt.time(22, 0), dt.time(23, 0)),
    ],
)
def test_a_0900_weekly_meeting_stays_at_0900_local_in_summer_and_winter(
    zone: str,
    winter_utc: dt.time,
    summer_utc: dt.time,
    rec_db: psycopg.Connection[Any],
    rec_sim: Simulator,
    rec_source: EwsSource,
    new_mailbox: Callable[[], tuple[str, int]],
) -> None:
    email, op = new_mailbox()
    item = rec_sim.create_item(
        email,
        {
            "subject": "Weekly customer call",
            "start": "2027-01-04T09:00:00",
            "end": "2027-01-04T09:30:00",
            "timezone": zone,
            "recurrence": weekly("Monday", dt.date(2027, 1, 4), count=40),
        },
    )
    sync_all(rec_source, op)
    assert_mirror_matches(rec_db, rec_sim, email, op)
    rows = occurrence_rows(rec_db, op, item["id"])
    assert len(rows) == 40
    tz = ZoneInfo(zone)
    assert {r["start_at"].astimezone(tz).time() for r in rows} == {dt.time(9, 0)}
    assert {r["end_at"].astimezone(tz).time() for r in rows} == {dt.time(9, 30)}
    # Sydney's 09:00 is the previous day in UTC; what matters is the hour.
    january = [r for r in rows if r["start_at"].astimezone(tz).month == 1]
    july = [r for r in rows if r["start_at"].astimezone(tz).month == 7]
    assert january and july
    assert {r["start_at"].astimezone(UTC).time() for r in january} == {winter_utc}
    assert {r["start_at"].astimezone(UTC).time() for r in july} == {summer_utc}


@pytest.mark.parametrize("zone", ["Pacific/Auckland", "America/Los_Angeles"])
def test_all_day_events_stay_on_their_dates_east_and_west_of_utc(
    zone: str,
    rec_db: psycopg.Connection[Any],
    rec_sim: Simulator,
    rec_source: EwsSource,
    new_mailbox: Callable[[], tuple[str, int]],
) -> None:
    email, op = new_mailbox()
    single = rec_sim.create_item(
        email,
        {"subject": "Trade fair", "start": "2027-02-15", "end": "2027-02-18", "timezone": zone, "is_all_day": True},
    )
    # The series crosses both zones' daylight-saving changes (April, September/November, March).
    series = rec_sim.create_item(
        email,
        {
            "subject": "Quarter close",
            "start": "2027-01-29",
            "end": "2027-01-30",
            "timezone": zone,
            "is_all_day": True,
            "recurrence": {
                "pattern": {"type": "RelativeMonthly", "interval": 1, "days_of_week": "Weekday", "day_of_week_index": "Last"},
                "range": {"type": "Numbered", "start_date": "2027-01-01", "count": 14},
            },
        },
    )  # fmt: skip
    sync_all(rec_source, op)
    assert_mirror_matches(rec_db, rec_sim, email, op)
    row = rec_db.execute("SELECT * FROM appointments WHERE item_id = %s", (single["id"],)).fetchone()
    assert row is not None
    assert (row["is_all_day"], row["start_date"], row["end_date"]) == (True, dt.date(2027, 2, 15), dt.date(2027, 2, 18))
    tz = ZoneInfo(zone)
    assert row["start_at"].astimezone(tz) == dt.datetime(2027, 2, 15, tzinfo=tz)
    rows = occurrence_rows(rec_db, op, series["id"])
    want = [
        dt.date(2027, 1, 29), dt.date(2027, 2, 26), dt.date(2027, 3, 31), dt.date(2027, 4, 30), dt.date(2027, 5, 31),
        dt.date(2027, 6, 30), dt.date(2027, 7, 30), dt.date(2027, 8, 31), dt.date(2027, 9, 30), dt.date(2027, 10, 29),
        dt.date(2027, 11, 30), dt.date(2027, 12, 31),
    ]  # fmt: skip
    assert [r["start_date"] for r in rows] == want  # January and February 2028 lie beyond the horizon
    assert all(r["end_date"] == r["start_date"] + dt.timedelta(days=1) for r in rows)
    assert all(r["start_at"].astimezone(tz).time() == dt.time(0, 0) for r in rows)
    assert all(r["end_at"].astimezone(tz).time() == dt.time(0, 0) for r in rows)


def test_an_occurrence_that_becomes_an_exception_stays_the_same_row(
    rec_db: psycopg.Connection[Any],
    rec_sim: Simulator,
    rec_source: EwsSource,
    new_mailbox: Callable[[], tuple[str, int]],
) -> None:
    email, op = new_mailbox()
    start = dt.date(2027, 1, 12)
    item = rec_sim.create_item(
        email,
        {"subject": "Pipeline review", "start": "2027-01-12T15:00:00", "end": "2027-01-12T16:00:00",
         "timezone": "Europe/Berlin", "recurrence": weekly("Tuesday", start, count=10)},
    )  # fmt: skip
    sync_all(rec_source, op)
    before = {r["item_id"]: (r["id"], r["synced_at"]) for r in occurrence_rows(rec_db, op, item["id"])}
    rec_sim.update_occurrence(
        email, item["id"], "2027-01-19T15:00:00+01:00",
        {"subject": "Pipeline review at the customer", "start": "2027-01-20T10:00:00+01:00",
         "end": "2027-01-20T12:00:00+01:00", "location": "Customer HQ"},
    )  # fmt: skip
    rec_sim.delete_occurrence(email, item["id"], "2027-01-26T15:00:00+01:00")
    outcomes = sync_all(rec_source, op)
    assert_mirror_matches(rec_db, rec_sim, email, op)
    after = {r["item_id"]: r for r in occurrence_rows(rec_db, op, item["id"])}
    exc_id = f"{item['id']}@2027-01-19T14:00:00Z"
    gone_id = f"{item['id']}@2027-01-26T14:00:00Z"
    assert after[exc_id]["id"] == before[exc_id][0], "same row, now an exception"
    assert (after[exc_id]["kind"], after[exc_id]["subject"], after[exc_id]["location"]) == (
        "exception", "Pipeline review at the customer", "Customer HQ",
    )  # fmt: skip
    assert gone_id not in after
    untouched = set(before) - {exc_id, gone_id}
    assert {k: after[k]["synced_at"] for k in untouched} == {k: before[k][1] for k in untouched}
    assert sum(o.occurrences_written for o in outcomes) == 1
    assert sum(o.occurrences_deleted for o in outcomes) == 1


def test_a_series_made_single_loses_its_occurrences_and_a_resync_duplicates_nothing(
    rec_db: psycopg.Connection[Any],
    rec_sim: Simulator,
    rec_source: EwsSource,
    new_mailbox: Callable[[], tuple[str, int]],
) -> None:
    email, op = new_mailbox()
    kept = rec_sim.create_item(
        email,
        {"subject": "Standup", "start": "2027-01-11T09:00:00", "end": "2027-01-11T09:15:00",
         "timezone": "America/New_York", "recurrence": {"pattern": {"type": "Daily", "interval": 1},
                                                        "range": {"type": "NoEnd", "start_date": "2027-01-11"}}},
    )  # fmt: skip
    flat = rec_sim.create_item(
        email,
        {"subject": "Kick-off", "start": "2027-01-13T11:00:00", "end": "2027-01-13T12:00:00",
         "timezone": "America/New_York", "recurrence": weekly("Wednesday", dt.date(2027, 1, 13))},
    )  # fmt: skip
    sync_all(rec_source, op)
    assert len(occurrence_rows(rec_db, op, flat["id"])) > 50
    rec_sim.update_item(email, flat["id"], {"recurrence": None})
    rec_sim.reset_sync_states(email)  # and Exchange lost the sync state meanwhile
    sync_all(rec_source, op)
    assert occurrence_rows(rec_db, op, flat["id"]) == []
    rows = assert_mirror_matches(rec_db, rec_sim, email, op)
    assert rows[flat["id"]]["kind"] == "single"
    assert len(occurrence_rows(rec_db, op, kept["id"])) == 365  # from its start (today) to the horizon


def test_the_horizon_roll_adds_what_entered_it_and_nothing_else(
    rec_db: psycopg.Connection[Any],
    rec_sim: Simulator,
    rec_source: EwsSource,
    new_mailbox: Callable[[], tuple[str, int]],
) -> None:
    email, op = new_mailbox()
    later = NOW + dt.timedelta(days=40)
    horizon, new_horizon = NOW + dt.timedelta(days=365), later + dt.timedelta(days=365)
    item = rec_sim.create_item(
        email,
        {"subject": "Weekly customer call", "start": "2026-06-01T09:00:00", "end": "2026-06-01T10:00:00",
         "timezone": "Europe/Berlin", "sensitivity": "Private",
         "required_attendees": [{"email": "buyer@customer.example", "name": "Buyer"}],
         "recurrence": weekly("Monday", dt.date(2026, 6, 1))},
    )  # fmt: skip
    # Beyond today's horizon: one occurrence deleted, one moved (an exception).
    mondays = [horizon + dt.timedelta(days=i) for i in range(1, 40)]
    mondays = [m for m in mondays if m.astimezone(ZoneInfo("Europe/Berlin")).weekday() == 0]
    deleted = dt.datetime.combine(mondays[1].date(), dt.time(9), tzinfo=ZoneInfo("Europe/Berlin"))
    moved = dt.datetime.combine(mondays[2].date(), dt.time(9), tzinfo=ZoneInfo("Europe/Berlin"))
    rec_sim.delete_occurrence(email, item["id"], deleted.isoformat())
    rec_sim.update_occurrence(email, item["id"], moved.isoformat(), {"subject": "Moved call"})
    sync_all(rec_source, op)
    assert_mirror_matches(rec_db, rec_sim, email, op)
    before = {r["item_id"]: r["synced_at"] for r in occurrence_rows(rec_db, op, item["id"])}

    outcome = roll_horizon(now=later)
    assert outcome.series >= 1
    after = {r["item_id"]: r for r in occurrence_rows(rec_db, op, item["id"])}
    added = set(after) - set(before)
    assert outcome.added >= len(added) > 0
    assert {k: after[k]["synced_at"] for k in before} == before, "existing rows are not rewritten"
    starts = sorted(after[k]["start_at"] for k in added)
    assert starts[0] >= horizon and starts[-1] < new_horizon
    assert all(after[k]["kind"] == "occurrence" and after[k]["details_withheld"] for k in added)
    assert f"{item['id']}@{deleted.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" not in after
    assert after[f"{item['id']}@{moved.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"]["kind"] == "exception"
    # The rolled rows are exactly what a sync at that date makes: rows older than its past window
    # stay (they age out), everything else equals the truth, and a sync then writes nothing.
    want = expected_rows(rec_sim.list_items(email), later)
    mirror = mirror_rows(rec_db, op)
    assert set(want) <= set(mirror)
    assert all(mirror[k]["end_at"] < later - dt.timedelta(days=180) for k in set(mirror) - set(want))
    assert roll_horizon(now=later).added == 0
    rec_sim.update_item(email, item["id"], {"location": "Teams"})  # the master changes: a full re-expansion
    outcomes = sync_all(rec_source, op, now=later)
    assert sum(o.occurrences_written for o in outcomes) == 0, "private: the location is withheld, rows unchanged"
    assert_mirror_matches(rec_db, rec_sim, email, op, now=later)


def test_the_roll_task_is_registered_and_runs(rec_db: psycopg.Connection[Any]) -> None:
    from calsync.celery import app
    from calsync.tasks.horizon import roll_horizon_chunk, roll_horizon_task

    assert app.conf.task_routes["calsync.roll_horizon"] == {"queue": "dispatch"}
    assert app.conf.task_routes["calsync.roll_horizon_chunk"] == {"queue": "dispatch"}
    assert "calsync.roll_horizon" in {e["task"] for e in app.conf.beat_schedule.values()}
    result = roll_horizon_task.apply()
    assert result.successful() and set(result.get()) == {"operators"}
    chunk = roll_horizon_chunk.apply(args=([],))
    assert chunk.successful() and chunk.get() == {"operators": 0, "series": 0, "added": 0}
