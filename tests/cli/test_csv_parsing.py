"""The pure CSV checks of calsync.operators.csv_import (no database, no subprocess)."""

from __future__ import annotations

import pytest

from calsync.operators.csv_import import CsvFileError, OperatorRow, parse_bool, parse_operators_csv


@pytest.mark.parametrize(
    ("word", "expected"),
    [("TRUE", True), (" yes ", True), ("Y", True), ("1", True), ("False", False), ("no", False), ("n", False),
     ("0", False), ("", None), ("on", None), ("wahr", None)],
)  # fmt: skip
def test_parse_bool(word: str, expected: bool | None) -> None:
    assert parse_bool(word) is expected


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed_from_the_header(delimiter: str) -> None:
    text = delimiter.join(["email", "name", "calendar_sync"]) + "\n"
    text += delimiter.join(["a@x.org", '"A, B; C"', "1"]) + "\n"
    parsed = parse_operators_csv(text.encode())
    assert parsed.delimiter == delimiter
    assert parsed.rows == [OperatorRow(line=2, email="a@x.org", name="A, B; C", calendar_sync=True)]


def test_aliases_and_extra_columns() -> None:
    parsed = parse_operators_csv(b"Id,Exchange Email,display_name,CalendarSync,Team\n7,a@x.org,A,n,Sales\n")
    assert parsed.ignored_columns == ["Id", "Team"]
    assert parsed.rows == [OperatorRow(line=2, email="a@x.org", name="A", calendar_sync=False)]


def test_two_columns_for_one_field_are_refused() -> None:
    with pytest.raises(CsvFileError, match="'name' and 'display_name' both mean name"):
        parse_operators_csv(b"email,name,display_name,calendar_sync\n")


def test_empty_file() -> None:
    with pytest.raises(CsvFileError, match="empty"):
        parse_operators_csv(b"\xef\xbb\xbf\r\n")


def test_unbalanced_quote_is_reported_where_it_starts() -> None:
    parsed = parse_operators_csv(b'email,name,calendar_sync\na@x.org,"open,1\nb@x.org,B,1\n')
    assert [str(e) for e in parsed.errors] == [
        'line 2: a double-quoted field starting here is never closed (unbalanced ")'
    ]
    assert parsed.rows == []


def test_row_with_several_problems_reports_each() -> None:
    parsed = parse_operators_csv(b"email,name,calendar_sync\nnope,X,perhaps\n")
    assert [e.line for e in parsed.errors] == [2, 2]
    assert parsed.bad_lines == [2]


def test_trailing_empty_fields_are_tolerated() -> None:
    parsed = parse_operators_csv(b"email;name;calendar_sync\r\na@x.org;A;1;;\r\n;;\r\n")
    assert parsed.errors == []
    assert parsed.blank_lines == 1
    assert len(parsed.rows) == 1
