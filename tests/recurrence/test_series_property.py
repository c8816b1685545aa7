"""Issue 4, property-based: any series Exchange can hold is mirrored occurrence by occurrence.

Series are generated in the simulator (all six EWS patterns, intervals, counts and end dates,
time zones east and west of UTC, all-day and timed), given exceptions and deleted
occurrences, synced with the real exchangelib over HTTP, and the mirror is compared with
tests.recurrence.oracle (dateutil's rrule), for every occurrence in the window; then the
series is edited (pattern, end, "this and following", master fields) and compared again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from calsync.simulator import Simulator
from calsync.simulator.model import ValidationError
from calsync.source.ews.source import EwsSource
from tests.recurrence.conftest import NOW, assert_mirror_matches, sync_all
from tests.recurrence.oracle import MONTHS, instances

ZONES = (
    "Europe/Berlin", "America/New_York", "Australia/Sydney", "Pacific/Auckland", "America/Los_Angeles",
    "Asia/Kolkata", "UTC",
)  # fmt: skip
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
RELATIVE_DAYS = (*DAY_NAMES, "Day", "Weekday", "WeekendDay")
INDEXES = ("First", "Second", "Third", "Fourth", "Last")
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# Lean by default (the suite stays fast and deterministic); CALSYNC_HYPOTHESIS_EXAMPLES=200 searches
# wider with fresh random examples.
_WIDE = int(os.environ.get("CALSYNC_HYPOTHESIS_EXAMPLES", "0"))
PROFILE = settings(
    max_examples=_WIDE or 8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not _WIDE,
    database=None,
)

PATTERNS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "Daily": st.builds(lambda i: {"type": "Daily", "interval": i}, st.integers(1, 6)),
    "Weekly": st.builds(
        lambda i, days, first: {"type": "Weekly", "interval": i, "days_of_week": days, "first_day_of_week": first},
        st.integers(1, 3),
        st.lists(st.sampled_from(DAY_NAMES), min_size=1, max_size=4, unique=True),
        st.sampled_from(("Sunday", "Monday")),
    ),
    "AbsoluteMonthly": st.builds(
        lambda i, d: {"type": "AbsoluteMonthly", "interval": i, "day_of_month": d},
        st.integers(1, 3),
        st.integers(1, 31),
    ),
    "RelativeMonthly": st.builds(
        lambda i, day, idx: {"type": "RelativeMonthly", "interval": i, "days_of_week": day, "day_of_week_index": idx},
        st.integers(1, 3),
        st.sampled_from(RELATIVE_DAYS),
        st.sampled_from(INDEXES),
    ),
    "AbsoluteYearly": st.integers(0, 11).flatmap(
        lambda m: st.builds(
            lambda d: {"type": "AbsoluteYearly", "day_of_month": d, "month": MONTHS[m]}, st.integers(1, MONTH_DAYS[m])
        )
    ),
    "RelativeYearly": st.builds(
        lambda day, idx, m: {"type": "RelativeYearly", "days_of_week": day, "day_of_week_index": idx, "month": m},
        st.sampled_from(RELATIVE_DAYS),
        st.sampled_from(INDEXES),
        st.sampled_from(MONTHS),
    ),
}
patterns = st.sampled_from(sorted(PATTERNS)).flatmap(lambda kind: PATTERNS[kind])


@st.composite
def ranges(draw: st.DrawFn, start: dt.date) -> dict[str, Any]:
    kind = draw(st.sampled_from(("NoEnd", "EndDate", "Numbered")))
    if kind == "NoEnd":
        return {"type": "NoEnd", "start_date": start.isoformat()}
    if kind == "EndDate":
        end = start + dt.timedelta(days=draw(st.integers(0, 800)))
        return {"type": "EndDate", "start_date": start.isoformat(), "end_date": end.isoformat()}
    return {"type": "Numbered", "start_date": start.isoformat(), "count": draw(st.integers(1, 40))}


@st.composite
def series_specs(draw: st.DrawFn, kind: str | None = None) -> dict[str, Any]:
    zone = draw(st.sampled_from(ZONES))
    all_day = draw(st.integers(0, 3)) == 0  # about one in four
    start = NOW.date() + dt.timedelta(days=draw(st.integers(-420, 200)))
    pattern = draw(PATTERNS[kind] if kind else patterns)
    data: dict[str, Any] = {
        "subject": draw(st.sampled_from(("Customer call", "Pipeline review", "1:1", "Standup"))),
        "location": draw(st.sampled_from(("", "Room 4", "Teams"))),
        "timezone": zone,
        "is_all_day": all_day,
        "sensitivity": draw(st.sampled_from(("Normal", "Normal", "Private"))),
        "required_attendees": [{"email": "buyer@customer.example", "name": "Buyer", "response": "Accept"}],
        "recurrence": {"pattern": pattern, "range": draw(ranges(start))},
    }
    if all_day:
        days = draw(st.integers(1, 3))
        data["start"], data["end"] = start.isoformat(), (start + dt.timedelta(days=days)).isoformat()
    else:
        at = dt.datetime.combine(start, dt.time(draw(st.integers(0, 23)), draw(st.sampled_from((0, 15, 30)))))
        length = dt.timedelta(minutes=draw(st.sampled_from((15, 30, 60, 90, 240))))
        data["start"], data["end"] = at.isoformat(), (at + length).isoformat()
    return data


def _create(sim: Simulator, email: str, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return sim.create_item(email, data)
    except ValidationError:
        assume(False)  # a series Exchange refuses (e.g. no occurrence before its end date)
        raise


def _window_instances(item: dict[str, Any]) -> list[Any]:
    lo, hi = NOW - dt.timedelta(days=200), NOW + dt.timedelta(days=400)
    return [i for i in instances(item, until=hi) if lo <= i.original_start < hi]


def _decorate(sim: Simulator, email: str, item: dict[str, Any], data: st.DataObject) -> None:
    """Exceptions (moved, renamed, made private, cancelled) and deleted occurrences."""
    near = _window_instances(item)
    if not near:
        return
    picks = data.draw(st.lists(st.sampled_from(near), max_size=4, unique_by=lambda i: i.original_start))
    zone = ZoneInfo(item["timezone"])
    for inst in picks:
        original = inst.original_start.astimezone(zone).isoformat()
        if data.draw(st.booleans()):
            sim.delete_occurrence(email, item["id"], original)
            continue
        change: dict[str, Any] = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "subject": st.just("Moved customer call"),
                    "location": st.just("Customer site"),
                    "sensitivity": st.sampled_from(("Normal", "Private")),
                    "is_cancelled": st.just(True),
                },
            )
        )
        if not item["is_all_day"] and data.draw(st.booleans()):
            shift = dt.timedelta(hours=data.draw(st.integers(-30, 30)))
            change["start"] = (inst.start + shift).isoformat()
            change["end"] = (inst.end + shift).isoformat()
        if not change:
            change = {"subject": "Agenda changed"}
        sim.update_occurrence(email, item["id"], original, change)


@pytest.mark.parametrize("kind", sorted(PATTERNS))
@PROFILE
@given(data=st.data())
def test_generated_series_mirror_every_occurrence(
    kind: str,
    data: st.DataObject,
    rec_db: psycopg.Connection[Any],
    rec_sim: Simulator,
    rec_source: EwsSource,
    new_mailbox: Callable[[], tuple[str, int]],
) -> None:
    spec = data.draw(series_specs(kind), label="series")
    email, op = new_mailbox()
    item = _create(rec_sim, email, spec)
    note(f"series: {rec_sim.get_item(email, item['id'])}")
    _decorate(rec_sim, email, rec_sim.get_item(email, item["id"]), data)
    sync_all(rec_source, op)
    rows = assert_mirror_matches(rec_db, rec_sim, email, op)
    kinds = [r["kind"] for r in rows.values()]
    event(f"all-day {spec['is_all_day']}")
    event(
        f"occurrence rows: {'0' if not kinds.count('occurrence') else '1-9' if kinds.count('occurrence') < 10 else '10+'}"
    )
    event(f"exception rows: {kinds.count('exception')}")
    assert len({r["start_at"] for r in rows.values() if r["kind"] == "occurrence"}) == sum(
        1 for r in rows.values() if r["kind"] == "occurrence"
    ), "no occurrence twice"
    # Nothing changed in Exchange: the next sync writes nothing.
    before = rec_db.execute("SELECT item_id, synced_at FROM appointments WHERE operator_id = %s", (op,)).fetchall()
    again = sync_all(rec_source, op)
    assert sum(o.occurrences_written + o.occurrences_deleted + o.created + o.updated for o in again) == 0
    after = rec_db.execute("SELECT item_id, synced_at FROM appointments WHERE operator_id = %s", (op,)).fetchall()
    assert before == after


EDITS = ("pattern", "end", "this_and_following", "fields", "exception_after_sync", "delete")


@pytest.mark.parametrize("edit", EDITS)
@PROFILE
@given(spec=series_specs(), new_pattern=patterns, data=st.data())
def test_edited_series_leave_exactly_exchanges_occurrences(
    edit: str,
    spec: dict[str, Any],
    new_pattern: dict[str, Any],
    data: st.DataObject,
    rec_db: psycopg.Connection[Any],
    rec_sim: Simulator,
    rec_source: EwsSource,
    new_mailbox: Callable[[], tuple[str, int]],
) -> None:
    email, op = new_mailbox()
    item = _create(rec_sim, email, spec)
    _decorate(rec_sim, email, rec_sim.get_item(email, item["id"]), data)
    sync_all(rec_source, op)
    known = frozenset(assert_mirror_matches(rec_db, rec_sim, email, op))
    item = rec_sim.get_item(email, item["id"])
    rng = item["recurrence"]["range"]
    start = dt.date.fromisoformat(rng["start_date"])
    note(f"edit {edit}: {item}")
    try:
        if edit == "pattern":
            rec_sim.update_item(email, item["id"], {"recurrence": {"pattern": new_pattern, "range": rng}})
        elif edit == "end":
            new_range = data.draw(ranges(start))
            rec_sim.update_item(
                email, item["id"], {"recurrence": {"pattern": item["recurrence"]["pattern"], "range": new_range}}
            )
        elif edit == "this_and_following":
            # Outlook's "this and following": the series ends the day before, a new one begins.
            split = NOW.date() + dt.timedelta(days=data.draw(st.integers(-30, 120)))
            assume(split > start)
            rec_sim.update_item(
                email,
                item["id"],
                {"recurrence": {"pattern": item["recurrence"]["pattern"], "range": {
                    "type": "EndDate", "start_date": start.isoformat(),
                    "end_date": (split - dt.timedelta(days=1)).isoformat()}}},
            )  # fmt: skip
            follow = {**spec, "subject": "Customer call (new time)"}
            first = dt.datetime.fromisoformat(spec["start"])
            shift = split - first.date()
            follow["start"] = (dt.datetime.fromisoformat(spec["start"]) + shift).isoformat()
            follow["end"] = (dt.datetime.fromisoformat(spec["end"]) + shift).isoformat()
            follow["recurrence"] = {"pattern": new_pattern, "range": {"type": "NoEnd", "start_date": split.isoformat()}}
            rec_sim.create_item(email, follow)
        elif edit == "fields":
            rec_sim.update_item(email, item["id"], {"subject": "Renamed series", "location": "New room"})
        elif edit == "exception_after_sync":
            _decorate(rec_sim, email, item, data)
        else:
            rec_sim.delete_item(email, item["id"])
    except ValidationError:
        assume(False)
    sync_all(rec_source, op)
    rows = assert_mirror_matches(rec_db, rec_sim, email, op, known=known)
    if edit == "delete":
        assert rows == {}
    dupes = rec_db.execute(
        "SELECT series_item_id, start_at FROM appointments WHERE operator_id = %s AND series_item_id IS NOT NULL "
        "AND kind = 'occurrence' GROUP BY 1, 2 HAVING count(*) > 1",
        (op,),
    ).fetchall()
    assert dupes == []
