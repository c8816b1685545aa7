"""Hostile or unusual items in Exchange's answers (issue 14), through the real exchangelib.

Each test runs whole batches in-process (`drive`, exactly what the sync task runs) against the
simulator over HTTP, validating every answer against Microsoft's schema, with real Postgres.
Each states what calsync records (a catalogue code or none), that nothing partial is written,
that the other operator and the rest of the mailbox go on, and what the log says.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.fields import TimeZoneField

from calsync.cli.status import status
from calsync.notify.catalogue import CATALOGUE
from calsync.simulator import Simulator, SimulatorServer, generate, mailbox_email, series
from calsync.simulator.ews import validation
from calsync.source.ews import timezones
from calsync.sync.model import STORED_ATTENDEES, RefusedItem

from .conftest import add_operators, configure
from .test_timeout_and_resync import drive, state

pytestmark = [
    pytest.mark.usefixtures("clean_failures", "service_env", "clean_redis"),
    pytest.mark.skipif(not validation.available(), reason="needs ../shared/ews-schema to validate answers"),
]
UTC = dt.UTC
ONE, TWO = mailbox_email(1), mailbox_email(2)


def _setup(
    db: psycopg.Connection[Any],
    serve: Callable[..., SimulatorServer],
    items: int = 10,
    validate: bool = True,
    **settings: Any,
) -> tuple[Simulator, int, int]:
    sim = generate(2, items, seed=14, validate=validate)
    server = serve(sim)
    configure(server.ews_url, poll_interval_minutes=60, **settings)
    op, other = add_operators(db, [ONE, TWO])
    return sim, op, other


def _rows(db: psycopg.Connection[Any], op: int) -> dict[str, dict[str, Any]]:
    return {
        r["item_id"]: dict(r)
        for r in db.execute(
            "SELECT item_id, change_key, subject, start_at, end_at, timezone, attendees_total FROM appointments "
            "WHERE operator_id = %s AND kind IN ('single', 'series')",
            (op,),
        )
    }


def _refused(db: psycopg.Connection[Any], op: int) -> dict[str, dict[str, Any]]:
    rows = db.execute("SELECT item_id, code, reason FROM refused_items WHERE operator_id = %s", (op,)).fetchall()
    return {r["item_id"]: dict(r) for r in rows}


def _in_sync(sim: Simulator, db: psycopg.Connection[Any], op: int, email: str, but: set[str] = frozenset()) -> None:
    """Every item of the mailbox is mirrored once, as it is now (change key, subject, times)."""
    cutoff = dt.datetime.now(UTC) - dt.timedelta(days=180)  # the default past window
    truth = {i["id"]: i for i in sim.list_items(email) if i["id"] not in but and _in_window(sim, email, i, cutoff)}
    rows = _rows(db, op)
    assert set(rows) - set(but) == set(truth)
    for item_id, item in truth.items():
        row = rows[item_id]
        assert (row["change_key"], row["subject"]) == (item["change_key"], item["subject"]), item_id
        if not item["is_all_day"]:
            assert row["start_at"] == dt.datetime.fromisoformat(item["start"])
            assert row["end_at"] == dt.datetime.fromisoformat(item["end"])


def _in_window(sim: Simulator, email: str, item: dict[str, Any], cutoff: dt.datetime) -> bool:
    if item["recurrence"] is None:
        return dt.datetime.fromisoformat(item["end"]) >= cutoff
    last = series.last_instance(sim.mailbox_object(email).items[item["id"]])
    return last is None or last.end >= cutoff


def _resync(db: psycopg.Connection[Any], op: int) -> None:
    db.execute("UPDATE sync_state SET next_poll_at = now() WHERE operator_id = %s", (op,))
    assert drive(db, op).outcome == "done"


def _healthy(db: psycopg.Connection[Any], op: int) -> None:
    st = state(db, op)
    assert (st["status"], st["last_error_code"], st["in_flight"]) == ("active", None, False)


def _no_violations(sim: Simulator) -> None:
    assert sim.stats.schema_violations == 0, sim.stats.schema_errors


# --- 1. the same item twice in one page, and twice in one GetItem answer ---------------------
def test_the_same_item_twice_in_a_page_and_in_a_get_item_answer(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer], caplog: pytest.LogCaptureFixture
) -> None:
    """SyncFolderItems lists every change twice (first with a stale ChangeKey) and GetItem
    answers every item twice (first a stale copy): one row per item, the last copy's values."""
    sim, op, other = _setup(db, serve, items=12, batch_size=5)
    sim.add_fault({"kind": "duplicate_changes", "mailbox": ONE})
    sim.add_fault({"kind": "duplicate_items", "mailbox": ONE})
    caplog.set_level(logging.WARNING, logger="calsync")

    assert drive(db, op).outcome == "done"
    assert drive(db, other).outcome == "done"
    _in_sync(sim, db, op, ONE)
    _in_sync(sim, db, other, TWO)
    fired = {f["kind"]: f["injected"] for f in sim.list_faults()}
    assert fired["duplicate_changes"] >= 3 and fired["duplicate_items"] >= 3, fired
    stale = db.execute("SELECT count(*) AS n FROM appointments WHERE subject = 'stale copy'").fetchone()
    assert stale == {"n": 0}
    # Attendees are written once per row, not once per copy.
    for item in sim.list_items(ONE):
        if item["recurrence"] is None and item["id"] in _rows(db, op):
            n = db.execute(
                "SELECT count(*) AS n FROM appointment_attendees t JOIN appointments a ON a.id = t.appointment_id "
                "WHERE a.operator_id = %s AND a.item_id = %s",
                (op, item["id"]),
            ).fetchone()
            assert n == {"n": len(item["required_attendees"]) + len(item["optional_attendees"])}

    # An edit travels the same doubled way: the last change wins.
    edited = sim.list_items(ONE)[0]["id"]
    sim.update_item(ONE, edited, {"subject": "Edited once"})
    _resync(db, op)
    assert _rows(db, op)[edited]["subject"] == "Edited once"
    _in_sync(sim, db, op, ONE)
    _healthy(db, op)
    _healthy(db, other)
    assert not _refused(db, op)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "nothing to warn about"
    _no_violations(sim)


# --- 2. years 1 and 9999 -------------------------------------------------------------------
def test_years_1_and_9999_are_mirrored_and_the_series_is_bounded_by_the_window(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    sim, op, other = _setup(db, serve, items=6)
    now = dt.datetime.now(UTC).replace(microsecond=0, second=0)
    ancient = sim.create_item(
        ONE,
        {
            "subject": "Since year 1",
            "start": "0001-01-01T00:00:00+00:00",
            "end": (now + dt.timedelta(hours=1)).isoformat(),
        },
    )
    forever = sim.create_item(
        ONE, {"subject": "Until 9999", "start": now.isoformat(), "end": "9999-12-31T23:59:59+00:00"}
    )
    last_day = sim.create_item(
        ONE,
        {"subject": "Last day", "start": "9999-12-31T00:00:00+00:00", "end": "9999-12-31T12:00:00+00:00"},
    )
    weekly = sim.create_item(
        ONE,
        {
            "subject": "Weekly until 9999",
            "start": now.isoformat(),
            "end": (now + dt.timedelta(minutes=30)).isoformat(),
            "timezone": "Europe/Berlin",
            "recurrence": {
                "pattern": {"type": "Weekly", "interval": 1, "days_of_week": [now.strftime("%A")]},
                "range": {"type": "EndDate", "start_date": now.date().isoformat(), "end_date": "9999-12-31"},
            },
        },
    )
    assert drive(db, op).outcome == "done"
    assert drive(db, other).outcome == "done"
    _healthy(db, op)
    assert not _refused(db, op), "nothing set aside: every one of them fits"
    _in_sync(sim, db, op, ONE)
    rows = _rows(db, op)
    assert rows[ancient["id"]]["start_at"] == dt.datetime(1, 1, 1, tzinfo=UTC)
    assert rows[forever["id"]]["end_at"] == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert rows[last_day["id"]]["start_at"] == dt.datetime(9999, 12, 31, tzinfo=UTC)
    # The series ends in 9999, its rows end at the horizon (365 days: 52 or 53 weeks).
    occ = db.execute(
        "SELECT count(*) AS n, max(start_at) AS last FROM appointments WHERE operator_id = %s AND series_item_id = %s",
        (op, weekly["id"]),
    ).fetchone()
    assert occ is not None and 52 <= occ["n"] <= 54
    assert occ["last"] <= now + dt.timedelta(days=366)
    _in_sync(sim, db, other, TWO)
    _no_violations(sim)


@pytest.mark.parametrize(
    ("day", "zone"),
    [(dt.date(9999, 12, 31), "Asia/Tokyo"), (dt.date(1, 1, 1), "Europe/Berlin")],
)
def test_an_all_day_item_on_the_edge_of_the_calendar_is_refused_alone(day: dt.date, zone: str) -> None:
    """Its local midnights in its zone lie in year 10000 or year 0 (the simulator cannot even
    hold such an item, so it is built as exchangelib would parse it)."""
    from exchangelib.ewsdatetime import EWSDate
    from exchangelib.items import CalendarItem

    from calsync.source.ews.get_items import _convert

    tz = EWSTimeZone(zone)
    date = EWSDate(day.year, day.month, day.day)
    item = CalendarItem(
        id="edge", changekey="ck", start=date, end=date, is_all_day=True, _start_timezone=tz, _end_timezone=tz
    )
    item.duration = "P1D"
    refused = _convert(item, ONE)
    assert refused == RefusedItem(
        "edge",
        "ck",
        "ItemUnconvertible",
        "a start or end falls outside the years 1 to 9999 once placed in its time zone (date value out of range)",
    )


# --- 3. thousands of attendees -------------------------------------------------------------
def test_thirty_three_thousand_attendees_are_capped_with_their_count_kept(
    db: psycopg.Connection[Any], serve: Callable[..., SimulatorServer]
) -> None:
    """Before: NumericValueOutOfRange on the smallint position, the batch failed for good.
    Now the first STORED_ATTENDEES are stored in Exchange's order and the count is kept."""
    sim, op, other = _setup(db, serve, items=5)
    people = [{"email": f"guest{n:05d}@partner.example.org", "name": f"Guest {n}"} for n in range(33_000)]
    big = sim.create_item(
        ONE,
        {
            "subject": "All hands",
            "start": "2030-01-01T09:00:00+00:00",
            "end": "2030-01-01T10:00:00+00:00",
            "required_attendees": people[:32_000],
            "optional_attendees": people[32_000:],
        },
    )
    assert drive(db, op).outcome == "done"
    assert drive(db, other).outcome == "done"
    _healthy(db, op)
    _in_sync(sim, db, op, ONE)
    assert _rows(db, op)[big["id"]]["attendees_total"] == 33_000
    stored = db.execute(
        "SELECT t.position, t.email, t.role FROM appointment_attendees t JOIN appointments a ON a.id = t.appointment_id "
        "WHERE a.operator_id = %s AND a.item_id = %s ORDER BY t.position",
        (op, big["id"]),
    ).fetchall()
    assert [r["position"] for r in stored] == list(range(STORED_ATTENDEES))
    assert [r["email"] for r in stored] == [p["email"] for p in people[:STORED_ATTENDEES]]
    assert {r["role"] for r in stored} == {"required"}
    # Every other item keeps all its attendees and their count.
    rows = _rows(db, op)
    for item in sim.list_items(ONE):
        if item["id"] != big["id"] and item["id"] in rows:
            n = len(item["required_attendees"]) + len(item["optional_attendees"])
            assert rows[item["id"]]["attendees_total"] == n
    _no_violations(sim)
    assert sim.get_stats()["requests"].get("GetItem"), "the 8 MB answer went through validation"


def test_attendee_positions_are_integers_beyond_the_old_smallint(db: psycopg.Connection[Any]) -> None:
    """The store itself takes any number (the cap is the adapter's policy, not a column limit)."""
    from calsync.store import appointments
    from calsync.sync.model import Appointment, Attendee, Kind

    [op] = add_operators(db, [ONE])
    many = tuple(Attendee(f"a{n}@example.org", None, "required", None) for n in range(40_000))
    start = dt.datetime(2030, 1, 1, 9, tzinfo=UTC)
    appt = Appointment("big", "ck1", Kind.SINGLE, start, start + dt.timedelta(hours=1), attendees=many)
    with psycopg.connect(db.info.dsn, row_factory=psycopg.rows.dict_row) as conn:
        assert appointments.upsert(conn, op, [appt]) == (1, 0)
    row = db.execute("SELECT count(*) AS n, max(position) AS top FROM appointment_attendees").fetchone()
    assert row == {"n": 40_000, "top": 39_999}


# --- 4 and 5. time zone ids: a path, an unknown Windows zone --------------------------------
@pytest.fixture
def zone_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every key the tz database is asked for in this process (cache misses, hence the clears).

    ZoneInfo validates each key it looks up on disk with zoneinfo._tzpath._validate_tzfile_path
    (looked up at call time), before any file is opened."""
    from zoneinfo import _tzpath

    asked: list[str] = []
    original = _tzpath._validate_tzfile_path

    def validate(path: str, *args: Any) -> Any:
        asked.append(path)
        return original(path, *args)

    monkeypatch.setattr(_tzpath, "_validate_tzfile_path", validate)
    zoneinfo.ZoneInfo.clear_cache()
    EWSTimeZone.clear_cache()
    yield asked
    zoneinfo.ZoneInfo.clear_cache()
    EWSTimeZone.clear_cache()


def _timed_item(sim: Simulator) -> str:
    """A timed single item the sync fetches (it ends in the future)."""
    now = dt.datetime.now(UTC)
    return next(
        i["id"]
        for i in sim.list_items(ONE)
        if i["recurrence"] is None and not i["is_all_day"] and dt.datetime.fromisoformat(i["end"]) > now
    )


def test_a_path_as_time_zone_id_is_refused_alone_and_never_looked_up(
    db: psycopg.Connection[Any],
    serve: Callable[..., SimulatorServer],
    zone_lookups: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, op, other = _setup(db, serve, items=12, batch_size=50)
    hostile = _timed_item(sim)
    sim.update_item(ONE, hostile, {"timezone_id": "../../etc/passwd"})
    caplog.set_level(logging.WARNING, logger="calsync")

    assert drive(db, op).outcome == "done"
    assert drive(db, other).outcome == "done"
    assert zone_lookups, "the recorder sees the zones the other items use"
    assert not [k for k in zone_lookups if ".." in k or k.startswith("/")], zone_lookups
    _healthy(db, op)
    _in_sync(sim, db, op, ONE, but={hostile})
    assert hostile not in _rows(db, op), "nothing of it is written"
    refused = _refused(db, op)
    assert set(refused) == {hostile}
    assert refused[hostile]["code"] == "ItemUnconvertible"
    assert refused[hostile]["reason"] == "StartTimeZone Id '../../etc/passwd' is not a time zone id"
    _in_sync(sim, db, other, TWO)

    result = CliRunner().invoke(status, ["--no-broker", ONE])
    assert result.exit_code == 0
    assert f"SET ASIDE {ONE} item {hostile}: ItemUnconvertible" in result.output
    assert "not a time zone id" in result.output
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"{ONE}: item {hostile} set aside: ItemUnconvertible: StartTimeZone Id '../../etc/passwd' is not a time zone id"
    )

    # The user saves the item with a real zone: it is tried again and mirrored.
    sim.update_item(ONE, hostile, {"timezone_id": None, "subject": "Fixed zone"})
    _resync(db, op)
    _in_sync(sim, db, op, ONE)
    assert not _refused(db, op)
    _no_violations(sim)


def test_without_the_guard_a_parse_error_refuses_only_its_item(
    db: psycopg.Connection[Any],
    serve: Callable[..., SimulatorServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """exchangelib's own parser raises ValueError for the path while parsing the whole answer.
    The adapter then fetches the batch's items one by one and refuses only the one that fails:
    any future parse error in exchangelib blocks one item, not the mailbox."""
    monkeypatch.setattr(TimeZoneField, "from_xml", timezones.EXCHANGELIB_FROM_XML)
    sim, op, other = _setup(db, serve, items=12, batch_size=50)
    hostile = _timed_item(sim)
    sim.update_item(ONE, hostile, {"timezone_id": "../../etc/passwd"})
    caplog.set_level(logging.WARNING, logger="calsync")

    assert drive(db, op).outcome == "done"
    _healthy(db, op)
    _in_sync(sim, db, op, ONE, but={hostile})
    refused = _refused(db, op)
    assert set(refused) == {hostile} and refused[hostile]["code"] == "ItemUnconvertible"
    assert refused[hostile]["reason"].startswith("Exchange's answer for this item cannot be parsed: ValueError")
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed while parsing (ValueError" in m and "fetching them one by one" in m for m in messages)
    assert any(f"item {hostile} set aside" in m for m in messages)
    assert drive(db, other).outcome == "done"
    _in_sync(sim, db, other, TWO)


def test_an_unknown_windows_zone_falls_back_for_timed_items_and_refuses_dated_ones(
    db: psycopg.Connection[Any],
    serve: Callable[..., SimulatorServer],
    zone_lookups: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A timed item is placed by Exchange's UTC instants, so it is mirrored with no time zone
    (and a warning naming it). An all-day item or a series needs the zone's rules for its
    dates: it is refused alone with UnknownTimeZone until it is saved with a known zone."""
    sim, op, other = _setup(db, serve, items=8, batch_size=50)
    timed = _timed_item(sim)
    all_day = sim.create_item(
        ONE,
        {
            "subject": "Offsite",
            "start": "2030-06-03",
            "end": "2030-06-05",
            "is_all_day": True,
            "timezone": "Asia/Tokyo",
        },
    )
    daily = sim.create_item(
        ONE,
        {
            "subject": "Stand-up",
            "start": "2030-01-07T09:00:00+01:00",
            "end": "2030-01-07T09:15:00+01:00",
            "timezone": "Europe/Berlin",
            "recurrence": {
                "pattern": {"type": "Daily", "interval": 1},
                "range": {"type": "Numbered", "start_date": "2030-01-07", "count": 10},
            },
        },
    )
    for item_id in (timed, all_day["id"], daily["id"]):
        sim.update_item(ONE, item_id, {"timezone_id": "Mars Standard Time"})
    caplog.set_level(logging.WARNING, logger="calsync")

    assert drive(db, op).outcome == "done"
    assert drive(db, other).outcome == "done"
    _healthy(db, op)
    _in_sync(sim, db, op, ONE, but={all_day["id"], daily["id"]})
    assert _rows(db, op)[timed]["timezone"] is None
    refused = _refused(db, op)
    assert set(refused) == {all_day["id"], daily["id"]}
    assert {r["code"] for r in refused.values()} == {"UnknownTimeZone"}
    assert "'Mars Standard Time' is not a known time zone" in refused[daily["id"]]["reason"]
    assert "UnknownTimeZone" in CATALOGUE
    assert not [k for k in zone_lookups if "Mars" in k]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(timed in m and "'Mars Standard Time' is not a known time zone" in m for m in warnings)
    assert any(f"item {daily['id']} set aside: UnknownTimeZone" in m for m in warnings)
    result = CliRunner().invoke(status, ["--no-broker", ONE])
    assert f"SET ASIDE {ONE} item {daily['id']}: UnknownTimeZone" in result.output

    for item_id in (timed, all_day["id"], daily["id"]):
        sim.update_item(ONE, item_id, {"timezone_id": None})
    _resync(db, op)
    _in_sync(sim, db, op, ONE)
    assert not _refused(db, op)
    assert _rows(db, op)[all_day["id"]]["timezone"] == "Asia/Tokyo"
    _no_violations(sim)


@pytest.mark.parametrize(
    ("raw", "key", "malformed"),
    [
        ("W. Europe Standard Time", "Europe/Berlin", None),
        ("Europe/Copenhagen", "Europe/Copenhagen", None),
        ("UTC", "Etc/UTC", None),
        ("Mars Standard Time", None, False),
        ("Europe/Atlantis", None, False),
        ("../../etc/passwd", None, True),
        ("/etc/passwd", None, True),
        ("Europe/../../etc/passwd", None, True),
        ("..\\..\\Windows\\win.ini", None, True),
        ("Europe/Berlin\x00", None, True),
        ("A" * 300, None, True),
        ("", None, False),
    ],
)
def test_resolve_looks_up_only_known_keys(raw: str, key: str | None, malformed: bool | None) -> None:
    zone = timezones.resolve(raw)
    if key is not None:
        assert timezones.unresolved_id(zone) is None and zone.key == key
    else:
        assert timezones.unresolved_id(zone) == (raw[: timezones.ID_LIMIT], malformed)
        assert zone.key == "UTC"
