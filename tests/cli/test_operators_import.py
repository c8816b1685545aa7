"""`calsync operators import`: all-or-nothing checks, idempotence, spreadsheet formats, speed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cli.conftest import Run

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, content: str | bytes, name: str = "operators.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def operators(db: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = db.execute(
        "SELECT o.email, o.display_name, o.calendar_sync, o.updated_at, s.status, s.in_flight, "
        "s.updated_at AS state_updated_at FROM operators o JOIN sync_state s ON s.operator_id = o.id"
    )
    return {r["email"]: r for r in rows}


# Good rows on lines 2, 5, 9; every other data line is bad in its own way.
MIXED = (
    "email,name,calendar_sync\n"
    "ann@example.com,Ann,true\n"  # 2
    "not-an-email,Bad Email,true\n"  # 3
    ",No Email,true\n"  # 4
    'bob@example.com,"Bob, the Builder",no\n'  # 5
    "carl@example.com,Carl,maybe\n"  # 6
    "ANN@example.com,Ann Again,true\n"  # 7 duplicate of line 2
    "dora@example.com,Dora\n"  # 8 wrong number of columns
    "eve@example.com,,1\n"  # 9 empty name is allowed
    "fay@example.com,Fay,true,extra\n"  # 10 wrong number of columns
    "gus@example.com,Gus,\n"  # 11 missing calendar_sync
)
BAD_LINES = {
    3: "bad email 'not-an-email'",
    4: "missing email",
    6: "bad calendar_sync value 'maybe'",
    7: "duplicate email ANN@example.com (already on line 2)",
    8: "wrong number of columns: 2 instead of 3",
    10: "wrong number of columns: 4 instead of 3",
    11: "missing calendar_sync value",
}


def test_bad_rows_are_all_listed_and_nothing_is_written(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    result = run("operators", "import", str(write(tmp_path, MIXED)))
    assert result.returncode == 2
    for line, reason in BAD_LINES.items():
        assert f"line {line}: {reason}" in result.stderr
    for good_line in (2, 5, 9):
        assert f"line {good_line}:" not in result.stderr
    assert "7 bad row(s), nothing imported" in result.stderr
    assert operators(db) == {}


def test_skip_invalid_writes_exactly_the_good_rows(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    result = run("operators", "import", "--skip-invalid", str(write(tmp_path, MIXED)))
    assert result.returncode == 0, result.stderr
    assert "3 new, 0 updated, 0 unchanged, 7 bad row(s) skipped" in result.stdout
    assert "line 3: bad email" in result.stderr
    found = {email: (r["display_name"], r["calendar_sync"], r["status"]) for email, r in operators(db).items()}
    assert found == {
        "ann@example.com": ("Ann", True, "not_synced"),
        "bob@example.com": ("Bob, the Builder", False, "disabled"),
        "eve@example.com": ("", True, "not_synced"),
    }


def test_second_import_of_the_same_file_changes_nothing(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = REPO / "examples" / "operators.csv"
    first = run("operators", "import", str(path))
    assert first.returncode == 0, first.stderr
    assert "50 new, 0 updated, 0 unchanged" in first.stdout
    before = operators(db)
    assert len(before) == 50
    assert before["user0050@example.com"]["display_name"] == "User 0050"
    second = run("operators", "import", str(path))
    assert "0 new, 0 updated, 50 unchanged" in second.stdout
    assert operators(db) == before  # updated_at of operators and sync_state included


def test_changed_rows_update_only_those_operators(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    run(
        "operators", "import", str(write(tmp_path, "email,name,calendar_sync\na@x.org,A,1\nb@x.org,B,1\nc@x.org,C,1\n"))
    )
    db.execute("UPDATE sync_state SET in_flight = true")
    before = operators(db)
    changed = write(tmp_path, "email,name,calendar_sync\nA@X.ORG,A,1\nb@x.org,Bee,1\nc@x.org,,0\n", "changed.csv")
    result = run("operators", "import", str(changed))
    assert "0 new, 2 updated, 1 unchanged" in result.stdout
    after = operators(db)
    assert after["a@x.org"] == before["a@x.org"]  # only the address's case differs: unchanged
    assert after["b@x.org"]["display_name"] == "Bee"
    assert after["b@x.org"]["updated_at"] > before["b@x.org"]["updated_at"]
    assert after["b@x.org"]["status"] == "not_synced"
    # Disabling stops the sync at once and keeps the name when the file leaves it empty.
    assert (after["c@x.org"]["display_name"], after["c@x.org"]["calendar_sync"]) == ("C", False)
    assert (after["c@x.org"]["status"], after["c@x.org"]["in_flight"]) == ("disabled", False)


def test_reenabling_by_import_makes_the_operator_due_again(
    run: Run, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    run("operators", "import", str(write(tmp_path, "email,name,calendar_sync\nnew@x.org,N,0\nold@x.org,O,0\n")))
    db.execute(
        "UPDATE sync_state s SET ews_sync_state = 'opaque', last_success_at = now() "
        "FROM operators o WHERE o.id = s.operator_id AND o.email = 'old@x.org'"
    )
    run("operators", "import", str(write(tmp_path, "email,name,calendar_sync\nnew@x.org,N,1\nold@x.org,O,1\n")))
    found = operators(db)
    assert found["new@x.org"]["status"] == "not_synced"  # never synced: a first sync follows
    assert found["old@x.org"]["status"] == "active"  # resumes from its sync state


def test_spreadsheet_formats_bom_semicolons_crlf_quotes(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    content = "\ufeff E-Mail ;Display Name;Calendar Sync\r\n"
    content += 'anna@example.de;"Müller; Anna";Yes\r\n'
    content += 'jörg@example.de;"Jörg\r\nSchmidt, Dr.";N\r\n'
    content += '"quoted@example.de";"Say ""hi""";1\r\n'
    content += ";;\r\n"  # an empty spreadsheet row
    path = write(tmp_path, content.encode("utf-8"))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    result = run("operators", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert "3 new" in result.stdout
    found = {email: (r["display_name"], r["calendar_sync"]) for email, r in operators(db).items()}
    assert found == {
        "anna@example.de": ("Müller; Anna", True),
        "jörg@example.de": ("Jörg Schmidt, Dr.", False),
        "quoted@example.de": ('Say "hi"', True),
    }


def test_line_numbers_count_physical_lines_of_multiline_fields(
    run: Run, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    content = 'email,name,calendar_sync\r\na@x.org,"two\r\nlines",1\r\nbroken,x,1\r\n'
    result = run("operators", "import", str(write(tmp_path, content)))
    assert result.returncode == 2
    assert "line 4: bad email 'broken'" in result.stderr


def test_dry_run_shows_changes_and_writes_nothing(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    run("operators", "import", str(write(tmp_path, "email,name,calendar_sync\na@x.org,A,1\nb@x.org,B,1\n")))
    before = operators(db)
    plan = write(tmp_path, "email,name,calendar_sync\na@x.org,A,1\nb@x.org,B,false\nc@x.org,C,yes\n", "plan.csv")
    result = run("operators", "import", "--dry-run", str(plan))
    assert result.returncode == 0, result.stderr
    assert "dry run (nothing written): 1 new, 1 updated, 1 unchanged" in result.stdout
    assert "new      line 4: c@x.org" in result.stdout
    assert "updated  line 3: b@x.org calendar_sync true -> false" in result.stdout
    assert "a@x.org" not in result.stdout
    assert operators(db) == before


def test_non_utf8_file_is_refused_with_the_fix(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = write(tmp_path, "email;name;calendar_sync\nanna@example.de;Müller;1\n".encode("cp1252"))
    result = run("operators", "import", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "not UTF-8" in result.stderr and "line 2" in result.stderr
    assert '"CSV UTF-8' in result.stderr
    assert operators(db) == {}


def test_missing_column_names_it_and_the_header_found(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    result = run("operators", "import", str(write(tmp_path, "Email,Full Name,Enabled\na@x.org,A,1\n")))
    assert result.returncode == 2
    assert "missing required column 'calendar_sync'" in result.stderr
    assert "header found on line 1: 'Email', 'Full Name', 'Enabled'" in result.stderr
    assert operators(db) == {}


@pytest.mark.slow
def test_import_100k_rows(run: Run, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    rows = ["email,name,calendar_sync"]
    rows += [f"op{i:06d}@bulk.example.com,Operator {i:06d},{'true' if i % 10 else 'false'}" for i in range(100_000)]
    path = write(tmp_path, "\n".join(rows) + "\n")
    started = time.perf_counter()
    result = run("operators", "import", str(path))
    first = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "100000 new" in result.stdout
    started = time.perf_counter()
    again = run("operators", "import", str(path))
    second = time.perf_counter() - started
    assert "0 new, 0 updated, 100000 unchanged" in again.stdout
    counts = db.execute(
        "SELECT count(*) AS n, count(*) FILTER (WHERE s.status = 'disabled') AS disabled "
        "FROM operators o JOIN sync_state s ON s.operator_id = o.id"
    ).fetchone()
    assert counts == {"n": 100_000, "disabled": 10_000}
    print(f"\n100,000-row import: {first:.2f} s (first, all new), {second:.2f} s (again, all unchanged)")
