"""One soak: start the world, let users edit and faults strike for `minutes`, then converge and check.

    python -m soak [--minutes 30] [--out soak/results] [--operators 30] [--seed 7]

Writes <out>/soak.json (the report) and <out>/soak.png (a timeline of faults, queue depth,
latency and errors); exits 1 when a check fails.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis

from calsync.celeryconfig import task_routes
from calsync.tasks import names
from soak import checks, faults, timeline
from soak.users import Users
from soak.world import Size, World, world
from tests.distributed.stack import connect

SYNC_QUEUE = str(task_routes[names.SYNC_BATCH]["queue"])
SAMPLE_SECONDS = 2.0
# Faults that outlast the notification timeout: run in the background, one at a time.
LONG_FAULTS = {"mailbox_outage"}


def say(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Db:
    """A Postgres connection that survives the soak's own Postgres restarts (reconnects on error)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]] | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3, row_factory=_dict_row())
            return list(self.conn.execute(sql, params).fetchall())
        except psycopg.Error:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None


def _dict_row() -> Any:
    from psycopg.rows import dict_row

    return dict_row


def _rss(w: World) -> dict[str, tuple[int, float]]:
    out = {}
    for name in w.workers:
        try:
            for child in psutil.Process(w.stack.procs[name].pid).children():
                if "celery" in " ".join(child.cmdline()):
                    out[name] = (child.pid, child.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            pass
    return out


class Sampler:
    """Every two seconds: queue depth, operators failing, edits seen in Postgres (latency), worker RSS."""

    def __init__(self, w: World, users: Users, t0: float) -> None:
        self.w, self.users, self.t0 = w, users, t0
        self.samples: list[dict[str, Any]] = []
        self.seen: dict[str, float] = {}
        self.db = Db(w.pg_url)
        self.redis = w.redis_client()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.samples.append(self.sample())

    def sample(self) -> dict[str, Any]:
        now = time.time()
        try:
            depth: int | None = int(self.redis.llen(SYNC_QUEUE))
        except redis.RedisError:
            depth = None
        rows = self.db.query(
            "SELECT count(*) FILTER (WHERE failing_since IS NOT NULL) AS failing, "
            "count(*) FILTER (WHERE status = 'failed') AS failed, "
            "count(*) FILTER (WHERE status = 'retrying') AS retrying FROM sync_state"
        )
        subjects = self.db.query("SELECT DISTINCT subject FROM appointments WHERE subject LIKE 'soak-%%'")
        latencies = []
        for r in subjects or []:
            s = r["subject"]
            made = self.users.made.get(s)
            if made is not None and s not in self.seen:
                self.seen[s] = now
                latencies.append(round(now - made, 2))
        return {
            "t": round(now - self.t0, 1),
            "depth": depth,
            "failing": rows[0]["failing"] if rows else None,
            "failed": rows[0]["failed"] if rows else None,
            "retrying": rows[0]["retrying"] if rows else None,
            "latencies": latencies,
            "rss": _rss(self.w),
        }


def _inject(w: World, name: str, t0: float, events: list[dict[str, Any]]) -> None:
    start = time.time()
    say(f"fault: {name}")
    try:
        detail = faults.FAULTS[name](w)
    except Exception as exc:  # a fault that fails to inject is reported, the soak goes on
        detail = f"injection failed: {type(exc).__name__}: {exc}"
    events.append({"fault": name, "start": round(start - t0, 1), "end": round(time.time() - t0, 1), "detail": detail})
    say(f"  {name}: {detail}")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(1.0)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _count(db: Db, sql: str, params: Any = None) -> int:
    rows = db.query(sql, params)
    return int(rows[0]["n"]) if rows else -1


def soak(
    minutes: float,
    out_dir: Path,
    size: Size,
    seed: int = 7,
    order: list[str] | None = None,
    trace_memory: bool = False,
) -> dict[str, Any]:
    """Run the soak; returns the report (also written to out_dir) with `ok` and each check."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"minutes": minutes, "seed": seed, "size": {**size.__dict__},
                              "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
    since = dt.datetime.now(dt.UTC)  # before any sync: the window can only have moved on from here
    with world(size, seed, out_dir / "tracemalloc" if trace_memory else None) as w:
        db = Db(w.pg_url)
        n = len(w.operators)
        say(f"{n} operators, {size.workers} workers x {size.threads} threads, 2 beats; waiting for first syncs")
        first = _wait(lambda: _count(db, "SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL") == n,
                      300, "every first sync")  # fmt: skip
        report["first_sync_s"] = round(first, 1)
        t0 = time.time()
        deadline = t0 + minutes * 60
        warm = minutes * 60 * size.warm_fraction
        users = Users(w.admin(), w.mailboxes, w.rng, size.edit_interval)
        users.start()
        sampler = Sampler(w, users, t0)
        sampler.start()
        events: list[dict[str, Any]] = []
        pending: list[str] = []
        background = threading.Thread()
        say(
            f"soak for {minutes:g} min: edits every {size.edit_interval:g}s, first fault in 20s, memory measured after {warm:.0f}s"
        )
        time.sleep(20.0)
        while True:
            if not pending:
                pending = list(order) if order else faults.deck(list(faults.FAULTS), w.rng)
                order = None  # an explicit order is used once, then random decks
            name = pending.pop(0)
            left = deadline - time.time()
            if name in LONG_FAULTS:
                # Long faults (an outage past the notification timeout) run beside the others.
                if background.is_alive() or left < size.notification_minutes * 60 + 30:
                    continue
                background = threading.Thread(target=_inject, args=(w, name, t0, events), daemon=True)
                background.start()
                continue
            if left < size.fault_hold[1] + 10:
                break
            _inject(w, name, t0, events)
            time.sleep(max(0.0, min(w.rng.uniform(*size.fault_gap), deadline - time.time())))
        time.sleep(max(0.0, deadline - time.time()))
        if background.is_alive():
            background.join()
        users.stop()
        edits_end = db.query("SELECT now() AS t")
        while edits_end is None:
            time.sleep(1)
            edits_end = db.query("SELECT now() AS t")
        say(f"edits stopped ({sum(users.done.values())} made); waiting for every operator to be polled after them")
        settled = (
            "SELECT count(*) AS n FROM sync_state WHERE last_poll_at > %s AND NOT in_flight "
            "AND last_success_at >= last_poll_at AND failing_since IS NULL"
        )
        try:
            report["converged_s"] = round(_wait(lambda: _count(db, settled, (edits_end[0]["t"],)) == n, 300,
                                                "every operator polled after the last edit"), 1)  # fmt: skip
        except TimeoutError as exc:
            report["converged_s"] = None
            report["convergence_error"] = str(exc)
        unsent = (
            # (an episode that recovered before its failure email owes none: calsync.store.failures)
            "SELECT count(*) AS n FROM failure_episodes WHERE (failed_at IS NOT NULL AND notified_at IS NULL "
            "AND recovered_at IS NULL) "
            "OR (recovered_at IS NOT NULL AND notified_at IS NOT NULL AND recovery_notified_at IS NULL)"
        )
        try:
            _wait(lambda: _count(db, unsent) == 0, 120, "every failure and recovery email sent")
        except TimeoutError as exc:
            report["emails_error"] = str(exc)
        episodes = db.query("SELECT count(*) FILTER (WHERE notified_at IS NOT NULL) AS notified, "
                            "count(*) FILTER (WHERE recovery_notified_at IS NOT NULL) AS recovered "
                            "FROM failure_episodes") or [{}]  # fmt: skip
        time.sleep(2 * SAMPLE_SECONDS)
        sampler.stop()
        conn = connect(w.pg_url)
        problems = checks.mirror_problems(conn, w.admin(), w.operators, since)
        conn.close()
        report["elapsed_s"] = round(time.time() - t0, 1)
        supervised = (*w.workers, *w.beats, *w.listeners)
        restarts = {name: w.stack.log(name).count(" exited (") for name in supervised}
        alive = {name: w.stack.procs[name].poll() is None for name in supervised}
        emails = checks.duplicate_emails(w.sink.mails)
        emails["mailbox_outages"] = len(w.outages)
        emails["episodes_in_db"] = episodes[0]
        emails["ok"] = emails["ok"] and "emails_error" not in report
        leaks = checks.leaked_secrets(w.log_files())
        mem = checks.memory(sampler.samples, warm, w.workers[0])
        latencies = [x for s in sampler.samples for x in s["latencies"]]
        report.update(
            edits={"made": dict(users.done), "refused_by_simulator": dict(users.refused),
                   "marked": len(users.made), "seen_in_postgres": len(sampler.seen)},
            faults=events,
            faults_by_kind=dict(Counter(e["fault"] for e in events)),
            mirror={"ok": not problems and report["converged_s"] is not None, "problems": problems[:50],
                    "problem_count": len(problems)},
            emails=emails,
            memory=mem,
            secrets={"ok": not leaks, "found": leaks, "logs_scanned": [p.name for p in w.log_files()],
                     "forms_checked": list(checks.secrets())},
            latency_s=_quantiles(latencies),
            queue_depth_max=max((s["depth"] or 0 for s in sampler.samples), default=0),
            process_restarts=restarts,
            supervisors_alive=alive,
        )  # fmt: skip
        report["ok"] = all(report[k]["ok"] for k in ("mirror", "emails", "memory", "secrets")) and all(alive.values())
        report["samples"] = sampler.samples
        (out_dir / "soak.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        timeline.chart(report, out_dir / "soak.png")
        (out_dir / "summary.md").write_text(summary(report) + "\n")
        if not report["ok"]:
            (out_dir / "logs.txt").write_text(w.stack.dump_logs())
    return report


def _quantiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]

    return {"count": len(s), "p50": q(0.5), "p95": q(0.95), "max": s[-1]}


def summary(r: dict[str, Any]) -> str:
    def ok(v: bool) -> str:
        return "yes" if v else "**no**"

    lat = r["latency_s"]
    mem = r["memory"]
    em = r["emails"]
    rows = [
        ("Run", f"{r['minutes']:g} min of edits and faults ({r['elapsed_s']:.0f} s with convergence), "
                f"{r['size']['operators']} operators, {r['size']['workers']} workers x {r['size']['threads']} "
                f"threads, 2 beats", ""),
        ("Edits by users", ", ".join(f"{k} {v}" for k, v in sorted(r["edits"]["made"].items())), ""),
        ("Faults injected", ", ".join(f"{k} {v}" for k, v in sorted(r["faults_by_kind"].items())), ""),
        ("Change latency (s; edits with a new subject)",
         f"p50 {lat.get('p50')}, p95 {lat.get('p95')}, max {lat.get('max')} ({lat['count']} seen)", ""),
        ("Sync queue depth, max (messages)", str(r["queue_depth_max"]), ""),
        ("Process restarts by the supervisors", ", ".join(f"{k} {v}" for k, v in r["process_restarts"].items()), ""),
        ("Every mirror equals the simulator, column for column",
         f"{r['mirror']['problem_count']} difference(s); converged {r['converged_s']} s after the last edit",
         ok(r["mirror"]["ok"])),
        ("No failure email twice for one episode",
         f"{em['failure_emails']} failure email(s) for {em['episodes_notified']} episode(s), "
         f"{em['recovery_emails']} recovery email(s), {len(em['sent_twice'])} sent twice", ok(em["ok"])),
        ("Worker memory flat after warm-up (< 10%)",
         f"{mem.get('rss_start_mib')} -> {mem.get('rss_end_mib')} MiB ({(mem.get('growth') or 0):+.1%}) "
         f"over {mem.get('span_s')} s", ok(mem["ok"])),
        ("No secret in any log", f"{len(r['secrets']['forms_checked'])} forms x {len(r['secrets']['logs_scanned'])} "
                                 f"logs: {r['secrets']['found'] or 'none found'}", ok(r["secrets"]["ok"])),
    ]  # fmt: skip
    lines = ["| | | passed |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)
