"""Parse and check an operators CSV file (the seed's bulk enabling by Data Import).

Pure: bytes in, rows and errors out, no database. Every row is checked before anything is
written, so the caller can refuse the whole file (all-or-nothing) or write only the good
rows (--skip-invalid) knowing exactly what was left out and why.

Files come from spreadsheet programs, so the parser accepts what they produce: UTF-8 with
or without a BOM, CRLF line ends, quoted fields holding commas or newlines, and ';' as the
delimiter (European locales). Line numbers are physical lines of the file (header = 1) so
an administrator can find a row in a text editor even when a quoted field spans lines.

Decisions:
- An empty name is allowed: the Exchange address is all a sync needs. For an operator that
  already exists an empty name keeps the stored name (a file with only addresses and flags
  must not wipe the CRM's names); `calsync operators update --name ''` clears one.
- Runs of whitespace in a name (a quoted name spanning lines) become one space.
- Lines whose fields are all blank are skipped (spreadsheets leave trailing ';;;' rows).
- Columns other than the three required ones are ignored and reported, so a CRM export
  with extra columns imports as it is.
- Emails are matched case-insensitively (Exchange addresses are); a file that only changes
  the case of an existing address changes nothing. They are normalised and checked in one
  place (calsync.operators.emails): invisible and non-ASCII characters are refused with the
  line number, so Python and Postgres always agree on which rows are the same operator.
- A header line longer than MAX_HEADER_CHARS is not a header (a wrong file, or binary data).
- A later row with an email already seen in the file is an error; with --skip-invalid the
  first occurrence wins.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from calsync.operators import emails

REQUIRED_COLUMNS: tuple[str, ...] = ("email", "name", "calendar_sync")

# Normalised header (see normalize_header) -> the column it means.
COLUMN_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        (
            "email",
            "e_mail",
            "email_address",
            "e_mail_address",
            "mail",
            "exchange_email",
            "exchange_email_address",
            "exchange_address",
        ),
        "email",
    ),
    **dict.fromkeys(("name", "display_name", "displayname", "full_name", "operator_name", "operator"), "name"),
    **dict.fromkeys(
        (
            "calendar_sync",
            "calendarsync",
            "calendar_sync_enabled",
            "calendar_synchronization",
            "sync",
            "sync_enabled",
        ),
        "calendar_sync",
    ),
    # Optional: ews or graph (empty: the deployment's `source` setting, or what the operator has).
    **dict.fromkeys(("source", "calendar_source", "sync_source"), "source"),
}
SOURCES: tuple[str, ...] = ("ews", "graph")

TRUE_WORDS = frozenset({"true", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "no", "n", "0"})
BOOLEAN_HINT = "use true or false (also yes/no, y/n, 1/0)"
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
MAX_HEADER_CHARS = 64 * 1024  # a real header is a few dozen characters; csv's own field limit is 128 KiB


class CsvFileError(ValueError):
    """The file as a whole cannot be read (encoding, header); str() is the one-line fix."""


@dataclass(frozen=True)
class OperatorRow:
    """One good row: what the file says an operator should look like."""

    line: int
    email: str
    name: str
    calendar_sync: bool
    source: str | None = None  # ews | graph; None: not given in the file


@dataclass(frozen=True)
class RowError:
    """One problem of one row; a row can have several."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedFile:
    rows: list[OperatorRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    delimiter: str = ","
    header: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    blank_lines: int = 0

    @property
    def bad_lines(self) -> list[int]:
        return sorted({e.line for e in self.errors})


def normalize_header(name: str) -> str:
    """'  Calendar Sync ' and 'calendar-sync' both become 'calendar_sync'."""
    return re.sub(r"[\s\-.]+", "_", name.replace("\ufeff", "").strip().lower()).strip("_")


def parse_bool(raw: str) -> bool | None:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def read_operators_file(path: Path) -> ParsedFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvFileError(f"{path}: cannot read it ({exc.strerror})") from exc
    return parse_operators_csv(data, source=str(path))


def parse_operators_csv(data: bytes, source: str = "input") -> ParsedFile:
    text = _decode(data, source)
    if not text.strip():
        raise CsvFileError(
            f"{source}: the file is empty; expected a header line with the columns " + ", ".join(REQUIRED_COLUMNS)
        )
    header_line = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    if len(header_line) > MAX_HEADER_CHARS:
        raise CsvFileError(
            f"{source}: line 1 is {len(header_line)} characters long, not a header; expected a short first line "
            "naming the columns " + ", ".join(REQUIRED_COLUMNS) + " (is this the operators CSV file?)"
        )
    parsed = ParsedFile(delimiter=_choose_delimiter(header_line))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=parsed.delimiter, strict=True)
    try:
        parsed.header = next(reader)
    except csv.Error as exc:
        raise CsvFileError(f"{source}: line 1 (the header) cannot be read: {_csv_error_text(exc)}") from exc
    index, parsed.ignored_columns = _map_columns(parsed.header, source)
    seen: dict[str, int] = {}
    while True:
        line = reader.line_num + 1  # a record may span lines: report where it starts
        try:
            fields = next(reader)
        except StopIteration:
            return parsed
        except csv.Error as exc:
            parsed.errors.append(RowError(line, _csv_error_text(exc)))
            continue
        if not any(f.strip() for f in fields):
            parsed.blank_lines += 1
            continue
        row = _check_row(line, fields, index, len(parsed.header), parsed.delimiter, seen, parsed.errors)
        if row is not None:
            parsed.rows.append(row)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvFileError(
            f"{source}: not UTF-8 (byte 0x{data[exc.start]:02X} on line {line}); "
            'save the file again as "CSV UTF-8 (comma delimited)" in Excel, or with character set '
            "UTF-8 in LibreOffice, and import that"
        ) from exc


def _choose_delimiter(header_line: str) -> str:
    """The delimiter under which the header names the most required columns.

    Sniffing from the header alone is reliable: its names never contain the delimiter,
    whereas data rows may (quoted names with commas).
    """

    def score(rank_delimiter: tuple[int, str]) -> tuple[int, int, int]:
        rank, delimiter = rank_delimiter
        names = next(csv.reader([header_line], delimiter=delimiter), [])
        found = {COLUMN_ALIASES[n] for n in map(normalize_header, names) if n in COLUMN_ALIASES}
        return (len(found), len(names), -rank)

    return max(enumerate(DELIMITERS), key=score)[1]


def _map_columns(header: list[str], source: str) -> tuple[dict[str, int], list[str]]:
    index: dict[str, int] = {}
    ignored: list[str] = []
    for position, raw in enumerate(header):
        column = COLUMN_ALIASES.get(normalize_header(raw))
        if column is None:
            if raw.strip():
                ignored.append(raw.strip())
            continue
        if column in index:
            first = header[index[column]].strip()
            raise CsvFileError(f"{source}: columns {first!r} and {raw.strip()!r} both mean {column}; keep only one")
        index[column] = position
    for column in REQUIRED_COLUMNS:
        if column not in index:
            aliases = sorted(a for a, c in COLUMN_ALIASES.items() if c == column and a != column)
            found = ", ".join(repr(h.strip()) for h in header) or "(nothing)"
            raise CsvFileError(
                f"{source}: missing required column {column!r} (also accepted: {', '.join(aliases)}; "
                f"case and spaces do not matter); header found on line 1: {found}"
            )
    return index, ignored


def _check_row(
    line: int,
    fields: list[str],
    index: dict[str, int],
    width: int,
    delimiter: str,
    seen: dict[str, int],
    errors: list[RowError],
) -> OperatorRow | None:
    extra = fields[width:]
    if len(fields) < width or any(f.strip() for f in extra):
        shown = "tab" if delimiter == "\t" else repr(delimiter)
        errors.append(
            RowError(
                line,
                f"wrong number of columns: {len(fields)} instead of {width} "
                f"(a field holding {shown} must be in double quotes)",
            )
        )
        return None
    before = len(errors)
    email = ""
    try:
        email = emails.normalize(fields[index["email"]])
    except emails.BadEmail as exc:
        errors.append(RowError(line, str(exc)))
    if email and emails.key(email) in seen:
        errors.append(RowError(line, f"duplicate email {email} (already on line {seen[emails.key(email)]})"))
    elif email:
        seen[emails.key(email)] = line
    raw_sync = fields[index["calendar_sync"]].strip()
    sync = parse_bool(raw_sync)
    if sync is None:
        what = f"bad calendar_sync value {raw_sync!r}" if raw_sync else "missing calendar_sync value"
        errors.append(RowError(line, f"{what}; {BOOLEAN_HINT}"))
    source: str | None = None
    if "source" in index:
        source = fields[index["source"]].strip().lower() or None
        if source is not None and source not in SOURCES:
            errors.append(
                RowError(line, f"bad source {fields[index['source']].strip()!r}; use ews or graph (or leave it empty)")
            )
    if len(errors) > before or sync is None:
        return None
    return OperatorRow(
        line=line, email=email, name=" ".join(fields[index["name"]].split()), calendar_sync=sync, source=source
    )


def _csv_error_text(exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return 'a double-quoted field starting here is never closed (unbalanced ")'
    return f"malformed CSV: {text}"
