"""The peer calsync has to beat: a careful hand-written cron script, no Celery, no leases.

What a competent engineer writes when asked to "mirror these calendars into Postgres every
five minutes", following Microsoft's own guidance for EWS synchronisation:

- exchangelib configured exactly as calsync does it: explicit Version(build=15.0.1497.2),
  BASIC auth, IMPERSONATION, FailFast, no autodiscover, and the calendar addressed by its
  distinguished id on a Root (no GetFolder round trips);
- `calendar.sync_items(sync_state=..., only_fields=["changekey"], max_changes_returned=512)`:
  SyncFolderItems with IdOnly, because Microsoft documents SyncFolderItems as the change
  feed and GetItem as the way to read properties (SyncFolderItems cannot return attendees,
  recurrence or modified occurrences); the ids of created and updated items are then read
  with `account.fetch(..., only_fields=<the same fields calsync fetches>, chunk_size=100)`,
  so both sides parse the same GetItem responses;
- a ThreadPoolExecutor over the mailboxes (one psycopg pool, one exchangelib connection pool
  of the same size), a COPY into a temporary table then one INSERT ... ON CONFLICT DO UPDATE
  per 512 changes, deletes by id, and the new SyncState stored in a table in the same
  transaction as the mailbox's last rows; an unchanged SyncState is not written at all.

What it does not do (and calsync does): leases and fencing, per-batch commits of the
cursor, retries with back-off, a fleet-wide concurrency cap, failure episodes and emails,
the past-window filter, occurrence expansion, private-details masking, run history.

    python -m bench.baseline first-sync|poll --ews-url URL --user U --password P --mailboxes N [...]
prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exchangelib import BASIC, IMPERSONATION, UTC, Account, Configuration, Credentials, FailFast
from exchangelib.folders import Calendar, Root
from exchangelib.items import CalendarItem
from exchangelib.properties import DistinguishedFolderId, ItemId, Mailbox
from exchangelib.version import Build, Version
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

# The fields calsync reads with GetItem, so that both parse the same bytes.
FIELDS = (
    "subject",
    "body",
    "location",
    "start",
    "end",
    "_start_timezone",
    "_end_timezone",
    "is_all_day",
    "sensitivity",
    "is_cancelled",
    "legacy_free_busy_status",
    "type",
    "organizer",
    "required_attendees",
    "optional_attendees",
    "resources",
    "uid",
    "datetime_created",
    "last_modified_time",
    "recurrence",
    "modified_occurrences",
    "deleted_occurrences",
)
FLUSH = 512

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS baseline;
CREATE TABLE IF NOT EXISTS baseline.sync_state (
    mailbox     text PRIMARY KEY,
    sync_state  text,
    synced_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS baseline.appointments (
    mailbox       text NOT NULL,
    item_id       text NOT NULL,
    change_key    text NOT NULL,
    subject       text,
    body          text,
    location      text,
    start_at      timestamptz,
    end_at        timestamptz,
    is_all_day    boolean,
    is_cancelled  boolean,
    sensitivity   text,
    show_as       text,
    kind          text,
    organizer     text,
    attendees     jsonb,
    recurrence    text,
    uid           text,
    modified_at   timestamptz,
    PRIMARY KEY (mailbox, item_id)
);
"""

_COLUMNS = (
    "mailbox, item_id, change_key, subject, body, location, start_at, end_at, is_all_day, is_cancelled, "
    "sensitivity, show_as, kind, organizer, attendees, recurrence, uid, modified_at"
)
_UPSERT = f"""
INSERT INTO baseline.appointments ({_COLUMNS}) SELECT {_COLUMNS} FROM incoming
ON CONFLICT (mailbox, item_id) DO UPDATE SET
    change_key = EXCLUDED.change_key, subject = EXCLUDED.subject, body = EXCLUDED.body,
    location = EXCLUDED.location, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,
    is_all_day = EXCLUDED.is_all_day, is_cancelled = EXCLUDED.is_cancelled,
    sensitivity = EXCLUDED.sensitivity, show_as = EXCLUDED.show_as, kind = EXCLUDED.kind,
    organizer = EXCLUDED.organizer, attendees = EXCLUDED.attendees, recurrence = EXCLUDED.recurrence,
    uid = EXCLUDED.uid, modified_at = EXCLUDED.modified_at
WHERE baseline.appointments.change_key IS DISTINCT FROM EXCLUDED.change_key
"""


def _row(mailbox: str, item: CalendarItem) -> tuple[Any, ...]:
    people = []
    for role, group in (
        ("required", item.required_attendees),
        ("optional", item.optional_attendees),
        ("resource", item.resources),
    ):
        for a in group or ():
            mb = a.mailbox
            people.append({"role": role, "email": mb.email_address, "name": mb.name, "response": a.response_type})
    body = item.body
    return (
        mailbox,
        item.id,
        item.changekey,
        item.subject,
        str(body) if body is not None else None,
        item.location,
        item.start if not item.is_all_day else None,
        item.end if not item.is_all_day else None,
        bool(item.is_all_day),
        bool(item.is_cancelled),
        item.sensitivity,
        item.legacy_free_busy_status,
        item.type,
        item.organizer.email_address if item.organizer else None,
        Jsonb(people),
        str(item.recurrence) if item.recurrence else None,
        item.uid,
        item.last_modified_time,
    )


class Baseline:
    def __init__(self, ews_url: str, user: str, password: str, db_url: str, threads: int) -> None:
        self.config = Configuration(
            service_endpoint=ews_url,
            credentials=Credentials(user, password),
            auth_type=BASIC,
            version=Version(build=Build(15, 0, 1497, 2)),
            retry_policy=FailFast(),
            max_connections=threads,
        )
        self.threads = threads
        self.db = ConnectionPool(db_url, min_size=threads, max_size=threads, open=True)
        self._calendars: dict[str, tuple[Account, Calendar]] = {}
        self._lock = threading.Lock()
        with self.db.connection() as conn:
            conn.execute(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def calendar(self, mailbox: str) -> tuple[Account, Calendar]:
        hit = self._calendars.get(mailbox)
        if hit is None:
            account = Account(
                primary_smtp_address=mailbox,
                config=self.config,
                autodiscover=False,
                access_type=IMPERSONATION,
                default_timezone=UTC,
                locale="en_US",
            )
            folder = Calendar(
                root=Root(account=account),
                _distinguished_id=DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=mailbox)),
            )
            hit = (account, folder)
            with self._lock:
                self._calendars[mailbox] = hit
        return hit

    def load_states(self) -> dict[str, str | None]:
        with self.db.connection() as conn:
            return dict(conn.execute("SELECT mailbox, sync_state FROM baseline.sync_state").fetchall())

    def sync_mailbox(self, mailbox: str, state: str | None) -> tuple[str | None, int]:
        """One mailbox from `state` to the end: changes written per 512, then the new state."""
        account, folder = self.calendar(mailbox)
        changed: list[str] = []
        deleted: list[str] = []
        written = 0
        for change, item in folder.sync_items(sync_state=state, only_fields=["changekey"], max_changes_returned=512):
            if change == "delete":
                assert isinstance(item, ItemId)
                deleted.append(item.id)
            elif change in ("create", "update"):
                changed.append(item.id)
            if len(changed) + len(deleted) >= FLUSH:
                written += self._write(account, folder, mailbox, changed, deleted, None)
                changed, deleted = [], []
        new_state = folder.item_sync_state
        if new_state == state and not changed and not deleted:
            return new_state, written
        written += self._write(account, folder, mailbox, changed, deleted, new_state)
        return new_state, written

    def _write(
        self,
        account: Account,
        folder: Calendar,
        mailbox: str,
        changed: list[str],
        deleted: list[str],
        new_state: str | None,
    ) -> int:
        rows = []
        if changed:
            for item in account.fetch(
                ids=[(i, None) for i in changed], folder=folder, only_fields=FIELDS, chunk_size=100
            ):
                if isinstance(item, CalendarItem):
                    rows.append(_row(mailbox, item))
                elif isinstance(item, Exception) and "ItemNotFound" not in type(item).__name__:
                    raise item
        with self.db.connection() as conn, conn.cursor() as cur:
            if rows:
                cur.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS incoming (LIKE baseline.appointments) ON COMMIT DELETE ROWS"
                )
                with cur.copy(f"COPY incoming ({_COLUMNS}) FROM STDIN") as copy:
                    for r in rows:
                        copy.write_row(r)
                cur.execute(_UPSERT)
            if deleted:
                cur.execute(
                    "DELETE FROM baseline.appointments WHERE mailbox = %s AND item_id = ANY(%s)", (mailbox, deleted)
                )
            if new_state is not None:
                cur.execute(
                    "INSERT INTO baseline.sync_state (mailbox, sync_state) VALUES (%s, %s) ON CONFLICT (mailbox) "
                    "DO UPDATE SET sync_state = EXCLUDED.sync_state, synced_at = now()",
                    (mailbox, new_state),
                )
        return len(rows) + len(deleted)

    def run_once(self, mailboxes: Sequence[str]) -> dict[str, Any]:
        """What cron runs every few minutes: every mailbox once, `threads` at a time."""
        states = self.load_states()
        started, cpu0 = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(self.threads) as pool:
            results = list(pool.map(lambda m: self.sync_mailbox(m, states.get(m)), mailboxes))
        return {
            "seconds": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu0,
            "mailboxes": len(mailboxes),
            "written": sum(r[1] for r in results),
        }

    def poll_for(self, mailboxes: Sequence[str], seconds: float) -> dict[str, Any]:
        """Capacity: keep polling the mailboxes round-robin for `seconds`; count completed polls."""
        states = self.load_states()
        queue: Iterator[str] = itertools.cycle(mailboxes)
        lock = threading.Lock()
        counts = [0] * self.threads
        errors = [0] * self.threads
        deadline = time.monotonic() + seconds

        def loop(i: int) -> None:
            while time.monotonic() < deadline:
                with lock:
                    mailbox = next(queue)
                try:
                    states[mailbox] = self.sync_mailbox(mailbox, states.get(mailbox))[0]
                    counts[i] += 1
                except Exception:
                    errors[i] += 1

        started, cpu0 = time.perf_counter(), time.process_time()
        workers = [threading.Thread(target=loop, args=(i,)) for i in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
        return {"polls": sum(counts), "errors": sum(errors), "seconds": elapsed, "cpu_s": cpu, "threads": self.threads}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the cron-script baseline")
    parser.add_argument("mode", choices=["first-sync", "poll"])
    parser.add_argument("--ews-url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--mailboxes", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--wait-stdin", action="store_true", help="start only after a line on stdin")
    args = parser.parse_args(argv)
    from calsync.simulator import mailbox_email

    mailboxes = [mailbox_email(n) for n in range(1, args.mailboxes + 1)]
    base = Baseline(args.ews_url, args.user, args.password, args.db_url, args.threads)
    try:
        for m in mailboxes:  # Accounts are built once per run, as a cron script does
            base.calendar(m)
        if args.mode == "poll" and not base.load_states():
            base.run_once(mailboxes)  # polls are incremental: bring the mailboxes in sync first
        if args.wait_stdin:
            print("ready", flush=True)
            input()
        out = base.run_once(mailboxes) if args.mode == "first-sync" else base.poll_for(mailboxes, args.seconds)
    finally:
        base.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
