"""Pure parts of the Graph adapter: conversion to the contract's shape, error classification,
the cursor, AADSTS codes, settings and the CSV `source` column."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from calsync.errors import Disposition, InvalidCursor
from calsync.notify.catalogue import CATALOGUE
from calsync.operators.csv_import import parse_operators_csv
from calsync.settings import SettingError, SyncSettings, validate_one
from calsync.source.graph import auth, convert, errors
from calsync.source.graph.source import Cursor, GraphSource, WindowRolled
from calsync.source.routed import RoutedSource
from calsync.sync.model import Kind


def _event(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "AQMkX",
        "changeKey": "ck1",
        "type": "singleInstance",
        "subject": "Review",
        "body": {"contentType": "html", "content": "<p>x</p>"},
        "start": {"dateTime": "2026-03-29T08:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-29T09:00:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "W. Europe Standard Time",
        "iCalUId": "UID-1",
        "sensitivity": "normal",
        "showAs": "workingElsewhere",
        "organizer": {"emailAddress": {"name": "Ann", "address": "Ann@Example.com"}},
        "attendees": [
            {
                "type": "optional",
                "status": {"response": "declined"},
                "emailAddress": {"address": "o@x.net", "name": "O"},
            },
            {"type": "required", "status": {"response": "tentativelyAccepted"}, "emailAddress": {"address": "r@x.net"}},
        ],
        "createdDateTime": "2026-01-01T10:00:00Z",
        "lastModifiedDateTime": "2026-01-02T10:00:00.123Z",
    }
    base.update(extra)
    return base


def test_single_in_the_contract_shape() -> None:
    appt = convert.to_appointment(_event(), "ann@example.com")
    assert appt.kind is Kind.SINGLE and appt.timezone == "Europe/Berlin"
    assert appt.start == dt.datetime(2026, 3, 29, 8, tzinfo=dt.UTC)
    assert (appt.body_type, appt.show_as, appt.sensitivity, appt.is_organizer) == (
        "HTML",
        "WorkingElsewhere",
        "Normal",
        True,
    )
    # Required before optional, as EWS lists them; responses in EWS names.
    assert [(a.email, a.role, a.response) for a in appt.attendees] == [
        ("r@x.net", "required", "Tentative"),
        ("o@x.net", "optional", "Decline"),
    ]
    assert appt.exchange_modified_at == dt.datetime(2026, 1, 2, 10, 0, 0, 123000, tzinfo=dt.UTC)


def test_iana_zone_names_pass_and_windows_names_map() -> None:
    assert convert.iana("AUS Eastern Standard Time") == "Australia/Sydney"
    assert convert.iana("America/New_York") == "America/New_York"
    assert convert.iana("Not/AZone") is None


def test_all_day_is_dates_never_shifted() -> None:
    appt = convert.to_appointment(
        _event(
            isAllDay=True,
            originalStartTimeZone="Pacific/Auckland",
            start={"dateTime": "2026-12-31T00:00:00.0000000", "timeZone": "UTC"},
            end={"dateTime": "2027-01-02T00:00:00.0000000", "timeZone": "UTC"},
        ),
        "x@example.com",
    )
    assert (appt.start_date, appt.end_date) == (dt.date(2026, 12, 31), dt.date(2027, 1, 2))
    # Local midnights of the event's zone (Auckland is UTC+13 in summer).
    assert appt.start == dt.datetime(2026, 12, 30, 11, tzinfo=dt.UTC)


def test_private_cancelled_and_empty_body() -> None:
    appt = convert.to_appointment(
        _event(sensitivity="private", isCancelled=True, body={"contentType": "text", "content": ""}), "x@y.z"
    )
    assert appt.sensitivity == "Private" and appt.is_cancelled and appt.body is None and appt.body_type is None


@pytest.mark.parametrize(
    ("graph", "ews"),
    [
        ({"type": "weekly", "interval": 2, "daysOfWeek": ["friday", "monday"], "firstDayOfWeek": "monday"},
         {"type": "Weekly", "interval": 2, "days_of_week": ["Monday", "Friday"], "first_day_of_week": "Monday"}),
        ({"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
          "index": "last"},
         {"type": "RelativeMonthly", "interval": 1, "days_of_week": "Weekday", "day_of_week_index": "Last"}),
        ({"type": "absoluteYearly", "interval": 1, "dayOfMonth": 29, "month": 2},
         {"type": "AbsoluteYearly", "day_of_month": 29, "month": "February"}),
        ({"type": "relativeYearly", "interval": 1, "daysOfWeek": ["saturday", "sunday"], "index": "first", "month": 9},
         {"type": "RelativeYearly", "days_of_week": "WeekendDay", "day_of_week_index": "First", "month": "September"}),
    ],
)  # fmt: skip
def test_recurrence_in_ews_names(graph: dict[str, object], ews: dict[str, object]) -> None:
    rng = {"type": "numbered", "startDate": "2026-01-05", "numberOfOccurrences": 10, "endDate": "0001-01-01"}
    assert convert.recurrence_to_json({"pattern": graph, "range": rng}) == {
        "pattern": ews,
        "range": {"type": "Numbered", "start_date": "2026-01-05", "count": 10},
    }


def _jwt(roles: list[str]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"roles": roles}).encode()).decode().rstrip("=")
    return f"e30.{payload}.sig"


def test_403_fails_the_operator_alone_and_the_token_names_the_likely_cause() -> None:
    # With RBAC for Applications tokens carry no Calendars role by design: one mailbox
    # outside the scope must never pause everyone.
    denied = errors.GraphHttpError(403, "ErrorAccessDenied", "Access is denied.")
    assert errors.classify(denied, _jwt([])).code == "GraphConsentMissing"
    assert errors.classify(denied, _jwt([])).disposition is Disposition.OPERATOR
    scoped = errors.classify(denied, _jwt(["Calendars.Read"]))
    assert (scoped.code, scoped.disposition) == ("GraphMailboxAccessDenied", Disposition.OPERATOR)
    rest = errors.classify(errors.GraphHttpError(403, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported"))
    assert rest.code == "GraphMailboxNotEnabledForRest"


def test_http_statuses_map_to_the_catalogue() -> None:
    cases = {
        (410, "fullSyncRequired"): ("ErrorInvalidSyncStateData", Disposition.RESYNC),
        (400, "syncStateNotFound"): ("ErrorInvalidSyncStateData", Disposition.RESYNC),
        (429, "TooManyRequests"): ("GraphThrottled", Disposition.TRANSIENT),
        (503, "ServiceUnavailable"): ("GraphUnavailable", Disposition.TRANSIENT),
        (504, "GatewayTimeout"): ("GraphGatewayTimeout", Disposition.TRANSIENT),
        (401, "InvalidAuthenticationToken"): ("GraphUnauthorized", Disposition.GLOBAL),
        (404, "ErrorInvalidUser"): ("GraphMailboxNotFound", Disposition.OPERATOR),
        (404, "ErrorItemNotFound"): ("GraphResourceNotFound", Disposition.OPERATOR),
        (500, "InternalServerError"): ("GraphServerError", Disposition.TRANSIENT),
    }
    for (status, code), (want, disposition) in cases.items():
        got = errors.classify(errors.GraphHttpError(status, code, "m", 7.0))
        assert (got.code, got.disposition) == (want, disposition), (status, code)
        assert got.code in CATALOGUE and CATALOGUE[got.code].disposition is disposition
    assert isinstance(errors.classify(errors.GraphHttpError(410, "", "")), InvalidCursor)
    assert errors.classify(errors.GraphHttpError(429, "", "", 7.0)).retry_after == 7.0


def test_aadsts_codes_name_the_fix() -> None:
    for text, code in (
        ("AADSTS7000215: Invalid client secret provided.", "GraphInvalidClientSecret"),
        ("AADSTS700016: Application with identifier 'x' was not found", "GraphAppNotFound"),
        ("AADSTS90002: Tenant 'x' not found.", "GraphTenantNotFound"),
        ("AADSTS65001: The user or administrator has not consented", "GraphConsentRequired"),
        ("AADSTS123456: something new", "GraphTokenError"),
    ):
        err = auth.token_error({"error": "invalid_client", "error_description": text})
        assert err.code == code and err.disposition is Disposition.GLOBAL and err.code in CATALOGUE


def test_plain_http_authority_only_for_the_local_simulator() -> None:
    authority, _, discovery = auth.msal_authority("http://127.0.0.1:8080", "t")
    assert authority == "https://127.0.0.1:8080/t" and not discovery
    with pytest.raises(Exception, match="only the local simulator"):
        auth.msal_authority("http://login.example.com", "t")
    assert auth.msal_authority("https://login.microsoftonline.us", "t")[0] == "https://login.microsoftonline.us/t"
    assert auth.graph_scope("https://graph.microsoft.us/v1.0") == "https://graph.microsoft.us/.default"


def test_cursor_remembers_its_day_and_a_new_day_rolls_the_window() -> None:
    day = dt.date(2026, 12, 2)
    text = Cursor(day, "https://graph.microsoft.com/v1.0/users/a/calendarView/delta?$deltatoken=x").encode()
    assert Cursor.decode(text).day == day
    with pytest.raises(InvalidCursor):
        Cursor.decode("H4sIAAAA-an-ews-sync-state")
    source = GraphSource(None, 180, 365, clock=lambda: dt.datetime(2026, 12, 3, 0, 5, tzinfo=dt.UTC))  # type: ignore[arg-type]
    with pytest.raises(WindowRolled) as rolled:
        source.sync_page("a@b.c", text, 10)
    assert rolled.value.code == "GraphWindowRolled" and rolled.value.code in CATALOGUE
    start, end = source.window(day)
    assert (start, end) == (dt.datetime(2026, 6, 5, tzinfo=dt.UTC), dt.datetime(2027, 12, 3, tzinfo=dt.UTC))


def test_router_refuses_the_other_sources_cursor() -> None:
    router = RoutedSource(lambda m, fresh: "ews" if m.startswith("e") else "graph", {})
    with pytest.raises(InvalidCursor):
        router.route("g@x.y", "H4sIAAAA-an-ews-sync-state")
    with pytest.raises(InvalidCursor):
        router.route("e@x.y", Cursor(dt.date.today(), "l").encode())
    assert router.route("g@x.y", None) == "graph"


def test_graph_settings_are_validated() -> None:
    current = SyncSettings()
    assert validate_one("source", "graph", current).source.value == "graph"
    for key, value in (("source", "owa"), ("graph_base_url", "graph.microsoft.com"), ("graph_tenant_id", "a b")):
        with pytest.raises(SettingError) as bad:
            validate_one(key, value, current)
        assert key in str(bad.value)
    assert validate_one("graph_base_url", "https://graph.microsoft.us/v1.0/", current).graph_base_url.endswith("v1.0")


def test_csv_source_column_is_optional_and_checked() -> None:
    parsed = parse_operators_csv(
        b"email,name,calendar_sync,source\na@x.com,A,true,graph\nb@x.com,B,true,\nc@x.com,C,true,owa\n"
    )
    assert [(r.email, r.source) for r in parsed.rows] == [("a@x.com", "graph"), ("b@x.com", None)]
    assert [e.line for e in parsed.errors] == [4] and "ews or graph" in parsed.errors[0].reason
    assert parse_operators_csv(b"email,name,calendar_sync\na@x.com,A,true\n").rows[0].source is None
