"""What a soak must show at the end, each a function returning (ok, details) for the report."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from soak.world import EWS_ACCOUNT, SMTP_PASSWORD, SMTP_USER, Mail
from tests.integration.truth import diff, expected_rows, mirror_rows

MEMORY_GROWTH_LIMIT = 0.10


def mirror_problems(conn: Any, client: Any, operators: dict[str, int], since: dt.datetime) -> list[str]:
    """Every operator's mirror against the simulator's truth, column for column (tests/integration/truth.py).

    The window moves while a soak runs: an occurrence that entered the future horizon after
    its series was last synced arrives with the daily horizon roll, and one that left the
    past window stays (calsync keeps what it has). Rows whose membership changed between
    `since` (before the first sync) and now may therefore be absent, or present and then
    exact; everything else must match exactly.
    """
    problems: list[str] = []
    now = dt.datetime.now(dt.UTC)
    for email, op in operators.items():
        items = client.list_items(email)
        actual = mirror_rows(conn, op)
        late = expected_rows(items, now, known=frozenset(actual))
        early = expected_rows(items, since, known=frozenset(actual))
        expected = dict(late)
        for key in late.keys() - early.keys():
            expected[key] = {**late[key], "_edge": True}
        for key in early.keys() - late.keys():
            if key in actual:
                expected[key] = early[key]
        problems += [f"{email}: {p}" for p in diff(expected, actual)]
    dupes = conn.execute(
        "SELECT operator_id, item_id FROM appointments GROUP BY operator_id, item_id HAVING count(*) > 1"
    ).fetchall()
    return problems + [f"duplicate row {d}" for d in dupes]


def secrets() -> dict[str, str]:
    """Every form in which a password could leak: clear, URL-encoded, and inside Basic/AUTH base64."""
    user, password = EWS_ACCOUNT

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    return {
        "EWS password": password,
        "EWS password (URL-encoded)": quote(password, safe=""),
        "EWS password (base64)": b64(password),
        "EWS Basic header (base64 user:password)": b64(f"{user}:{password}"),
        "SMTP password": SMTP_PASSWORD,
        "SMTP password (URL-encoded)": quote(SMTP_PASSWORD, safe=""),
        "SMTP password (base64)": b64(SMTP_PASSWORD),
        "SMTP AUTH PLAIN (base64)": b64(f"\0{SMTP_USER}\0{SMTP_PASSWORD}"),
    }


def leaked_secrets(files: list[Path]) -> dict[str, list[str]]:
    """Which secret forms appear in which log (file name -> forms found)."""
    found: dict[str, list[str]] = {}
    forms = secrets()
    for path in files:
        text = path.read_text(errors="replace")
        hits = [name for name, value in forms.items() if value in text]
        if hits:
            found[path.name] = hits
    return found


EPISODE_RE = re.compile(r"^\* .*<(?P<email>[^>]+)> \(operator (?P<op>\d+)\)\n\s+Code:\s+(?P<code>\S+)", re.M)
SINCE_RE = re.compile(r"Since:\s+(?P<since>.+)")


def failure_episodes(mails: list[Mail]) -> list[tuple[str, str, str, str]]:
    """(recipient, operator, code, since) for every operator block of every failure email."""
    out = []
    for m in mails:
        if "calendar sync failed" not in m.subject and "paused for everyone" not in m.subject:
            continue
        body = m.body.replace("\r\n", "\n")  # as SMTP carried it
        for block in body.split("\n* ")[1:]:
            block = "* " + block
            head = EPISODE_RE.search(block)
            since = SINCE_RE.search(block)
            if head and since:
                for rcpt in m.recipients:
                    out.append((rcpt, head["op"], head["code"], since["since"].strip()))
    return out


def duplicate_emails(mails: list[Mail]) -> dict[str, Any]:
    episodes = failure_episodes(mails)
    twice = {" / ".join(k): n for k, n in Counter(episodes).items() if n > 1}
    recoveries = [m for m in mails if "working again" in m.subject]
    return {
        "ok": not twice,
        "failure_emails": sum(1 for m in mails if "failed" in m.subject or "paused" in m.subject),
        "episodes_notified": len(set(episodes)),
        "recovery_emails": len(recoveries),
        "sent_twice": twice,
        "subjects": [m.subject for m in mails],
    }


def memory(samples: list[dict[str, Any]], warm_from: float, measured: str, own_warm_up: bool = True) -> dict[str, Any]:
    """RSS growth of the never-killed worker's longest-lived process, each process after its warm-up.

    The supervisor may restart even that worker (kombu's broker race on a Redis restart); a
    process it starts again imports, connects and fills its caches like the first did, so it
    is measured only `warm_from` seconds after its own start, and the process measured is the
    one with the longest span after its warm-up. Every process's first and last RSS is listed.
    `own_warm_up=False` measures every process from the run's warm-up alone (as this check
    once did), for comparison.
    """
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for s in samples:
        for name, (pid, rss) in s["rss"].items():
            if name == measured:
                by_pid.setdefault(pid, []).append((s["t"], rss))
    processes = [
        {"pid": pid, "from_s": series[0][0], "to_s": series[-1][0], "rss_first_mib": round(series[0][1], 1),
         "rss_last_mib": round(series[-1][1], 1)}
        for pid, series in by_pid.items()
    ]  # fmt: skip
    warm = {
        pid: [(t, r) for t, r in series if t >= max(warm_from, series[0][0] + warm_from if own_warm_up else 0.0)]
        for pid, series in by_pid.items()
    }
    warm = {pid: series for pid, series in warm.items() if len(series) >= 3}
    if not warm and own_warm_up:
        # Restarted too late to warm up before the end (a short smoke): measured as the run's warm-up says.
        return {**memory(samples, warm_from, measured, own_warm_up=False), "own_warm_up": "none long enough"}
    if not warm:
        return {"ok": False, "reason": f"no samples of {measured} after warm-up", "processes": processes}
    pid, series = max(warm.items(), key=lambda kv: kv[1][-1][0] - kv[1][0][0])
    head = sorted(r for _, r in series[: max(3, len(series) // 10)])
    tail = sorted(r for _, r in series[-max(3, len(series) // 10) :])
    start, end = head[len(head) // 2], tail[len(tail) // 2]
    growth = (end - start) / start if start else 0.0
    return {
        "ok": growth < MEMORY_GROWTH_LIMIT,
        "worker": measured,
        "pid": pid,
        "warm_from_s": series[0][0],
        "span_s": round(series[-1][0] - series[0][0], 1),
        "rss_start_mib": round(start, 1),
        "rss_end_mib": round(end, 1),
        "growth": round(growth, 4),
        "limit": MEMORY_GROWTH_LIMIT,
        "processes": processes,
    }
