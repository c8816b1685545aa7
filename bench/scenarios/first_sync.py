"""Scenario 2: first-sync throughput, appointments per second end to end into Postgres.

Three numbers from the same simulator in the same run:
- calsync as deployed (beat, dispatcher, 2 worker processes) from "operators enabled" to
  "every operator's first sync succeeded";
- the cron baseline's first sync of the same mailboxes (one thread per mailbox);
- the ceiling: exchangelib alone turning the very same SOAP responses into Python objects,
  in this process, with no network and no database. The responses are recorded once
  (SyncFolderItems pages exactly as calsync asks for them, GetItem in chunks of 100 with
  calsync's fields) and replayed through an HTTP adapter that answers from memory, so the
  replay times exchangelib's request building and XML parsing and nothing else.
  calsync also reads modified occurrences with one extra GetItem per page; the ceiling
  does not, which flatters the ceiling slightly.

Appointments are Exchange items (singles and series masters); occurrence rows calsync
expands from series are counted apart.
"""

from __future__ import annotations

import collections
import io
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests.adapters
import urllib3
from exchangelib import BASIC, IMPERSONATION, UTC, Account, Configuration, Credentials, FailFast
from exchangelib.fields import FieldPath
from exchangelib.folders import Calendar, Root
from exchangelib.items import CalendarItem
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import BaseProtocol
from exchangelib.services import SyncFolderItems
from exchangelib.version import Build, Version

from bench import common, profile
from bench.fleet import fleet, wait_for
from calsync.simulator import SimulatorProcess, mailbox_email
from calsync.source.ews.convert import FETCH_FIELDS

LATENCY_MS = 20


class ReplayAdapter(requests.adapters.HTTPAdapter):
    """Records response bodies in order per mailbox (mode 'record'), then answers from them (mode 'replay').

    Keyed by the X-AnchorMailbox header exchangelib sends with every impersonated request, so
    the recording can run one thread per mailbox and the replay stays in order.
    """

    mode = "off"
    tape: collections.defaultdict[str, collections.deque[bytes]] = collections.defaultdict(collections.deque)

    def send(
        self,
        request: Any,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> Any:
        key = request.headers.get("X-AnchorMailbox", "")
        if self.mode == "replay":
            body = self.tape[key].popleft()
            raw = urllib3.HTTPResponse(
                body=io.BytesIO(body),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                status=200,
                preload_content=False,
                decode_content=False,
                request_method="POST",
            )
            return self.build_response(request, raw)
        response = super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        if self.mode == "record":
            self.tape[key].append(response.content)
        return response


_PAGE_FIELDS = frozenset(FieldPath(field=CalendarItem.get_field_by_fieldname(n)) for n in ("end", "type"))


def _mailbox_pass(config: Configuration, email: str) -> int:
    """What calsync asks Exchange for in a first sync, with exchangelib alone; returns items parsed."""
    account = Account(
        primary_smtp_address=email,
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION,
        default_timezone=UTC,
        locale="en_US",
    )
    folder = Calendar(
        root=Root(account=account),
        _distinguished_id=DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=email)),
    )
    state: str | None = None
    items = 0
    while True:
        svc = SyncFolderItems(account=account)
        ids = [
            item.id
            for change, item in svc.call(
                folder=folder,
                shape="IdOnly",
                additional_fields=_PAGE_FIELDS,
                sync_state=state,
                ignore=None,
                max_changes_returned=512,
                sync_scope=None,
            )
            if change in ("create", "update")
        ]
        for obj in account.fetch(ids=[(i, None) for i in ids], folder=folder, only_fields=FETCH_FIELDS, chunk_size=100):
            if isinstance(obj, CalendarItem):
                items += 1
        state = svc.sync_state
        if svc.includes_last_item_in_range:
            return items


def ceiling(sim: SimulatorProcess, mailboxes: list[str], passes: int = 2) -> dict[str, Any]:
    old = BaseProtocol.HTTP_ADAPTER_CLS
    BaseProtocol.HTTP_ADAPTER_CLS = ReplayAdapter
    try:
        config = Configuration(
            service_endpoint=sim.ews_url,
            credentials=Credentials(sim.user, sim.password),
            auth_type=BASIC,
            version=Version(build=Build(15, 0, 1497, 2)),
            retry_policy=FailFast(),
            max_connections=len(mailboxes),
        )
        ReplayAdapter.tape.clear()
        ReplayAdapter.mode = "record"
        with ThreadPoolExecutor(len(mailboxes)) as pool:
            list(pool.map(lambda m: _mailbox_pass(config, m), mailboxes))
        recorded = {k: list(v) for k, v in ReplayAdapter.tape.items()}
        ReplayAdapter.mode = "replay"
        best: dict[str, Any] = {}
        for _ in range(passes):  # the best pass: the machine is shared
            for k, v in recorded.items():
                ReplayAdapter.tape[k].extend(v)
            t0, c0 = time.perf_counter(), time.process_time()
            items = sum(_mailbox_pass(config, m) for m in mailboxes)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if not best or wall < best["seconds"]:
                best = {
                    "items": items,
                    "seconds": round(wall, 3),
                    "cpu_s": round(cpu, 3),
                    "appointments_per_s": round(items / wall, 1),
                }
        best["responses"] = sum(len(v) for v in recorded.values())
        best["response_mb"] = round(sum(len(b) for v in recorded.values() for b in v) / 1e6, 1)
        return best
    finally:
        ReplayAdapter.mode = "off"
        ReplayAdapter.tape.clear()
        BaseProtocol.HTTP_ADAPTER_CLS = old


def run_calsync(sim: SimulatorProcess, m: int, workers: int, threads: int, profile_it: bool) -> dict[str, Any]:
    common.reset_database()
    common.set_settings(
        exchange_url=sim.ews_url,
        batch_size=512,
        poll_interval_minutes=60,
        past_window_days=3650,
        ews_max_concurrency=27,
    )
    with (
        common.connect() as conn,
        conn.cursor() as cur,
        cur.copy("COPY operators (email, display_name, calendar_sync) FROM STDIN") as copy,
    ):
        for i in range(1, m + 1):
            copy.write_row((mailbox_email(i), f"User {i}", False))
    assert sim.pid is not None
    with fleet(sim, workers=workers, threads=threads, tag="first") as f, common.connect() as conn:
        wait_for(
            lambda: conn.execute("SELECT count(*) AS n FROM dispatch_ticks").fetchone()["n"] > 0,
            60,
            "the first dispatcher tick",
        )
        prof = profile.record(f.workers[0].pid, 60, "first_sync") if profile_it else None
        with common.cpu_window(
            {"calsync": f.pids, "simulator": [sim.pid], "postgres": common.postgres_backends}
        ) as cpu:
            t0 = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
            conn.execute("UPDATE operators SET calendar_sync = true")
            conn.execute("UPDATE sync_state SET status = 'not_synced', next_poll_at = now()")
            wait_for(
                lambda: (
                    conn.execute("SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL").fetchone()[
                        "n"
                    ]
                    >= m
                ),
                timeout=400,
                what=f"{m} first syncs",
                interval=0.1,
            )
        t1 = conn.execute("SELECT max(last_success_at) AS t FROM sync_state").fetchone()["t"]
        counts = conn.execute(
            "SELECT count(*) FILTER (WHERE kind IN ('single', 'series')) AS items, count(*) AS rows FROM appointments"
        ).fetchone()
        profile.stop(prof)
    seconds = (t1 - t0).total_seconds()
    result = {
        "workers": workers,
        "threads": threads,
        "items": counts["items"],
        "rows": counts["rows"],
        "seconds": round(seconds, 2),
        "appointments_per_s": round(counts["items"] / seconds, 1),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items() if k != "wall"},
    }
    if prof is not None:
        result["profile"] = profile.summary(prof, "first_sync")
    return result


def run_baseline(sim: SimulatorProcess, m: int) -> dict[str, Any]:
    proc = subprocess.run(
        [
            common.PYTHON,
            "-m",
            "bench.baseline",
            "first-sync",
            "--ews-url",
            sim.ews_url,
            "--user",
            sim.user,
            "--password",
            sim.password,
            "--db-url",
            common.DB_URL,
            "--mailboxes",
            str(m),
            "--threads",
            str(m),
        ],
        capture_output=True,
        text=True,
        cwd=common.REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"baseline first sync failed: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "items": data["written"],
        "seconds": round(data["seconds"], 2),
        "cpu_s": round(data["cpu_s"], 2),
        "appointments_per_s": round(data["written"] / data["seconds"], 1),
    }


def run(quick: bool) -> dict[str, Any]:
    m, k = (2, 200) if quick else (8, 1500)
    out: dict[str, Any] = {"mailboxes": m, "appointments_each": k, "latency_ms": LATENCY_MS}
    with SimulatorProcess(mailboxes=m, appointments=k, seed=11, latency_ms=LATENCY_MS) as sim:
        mailboxes = [mailbox_email(i) for i in range(1, m + 1)]
        common.say(f"first sync: {m} mailboxes x {k} appointments")
        out["calsync"] = run_calsync(sim, m, workers=2, threads=max(4, m // 2), profile_it=True)
        common.say(f"  calsync: {out['calsync']['appointments_per_s']} appointments/s")
        out["baseline"] = run_baseline(sim, m)
        common.say(f"  baseline: {out['baseline']['appointments_per_s']} appointments/s")
        out["ceiling"] = ceiling(sim, mailboxes, passes=1)
        common.say(f"  exchangelib ceiling: {out['ceiling']['appointments_per_s']} appointments/s")
    c, ceil, b = (out[x]["appointments_per_s"] for x in ("calsync", "ceiling", "baseline"))
    out["ratio_to_ceiling"] = round(c / ceil, 2) if ceil else None
    out["ratio_to_baseline"] = round(c / b, 2) if b else None
    out["twenty_1472_events_s"] = round(1472 / c, 2) if c else None
    return out
