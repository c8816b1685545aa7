"""Scenario 3: change latency, from an edit in Exchange to the edited row readable in Postgres.

Operators are in sync and polled on a short interval (beat ticking every second). Single
appointments get a new subject at uniformly random moments; a watcher reads Postgres every
50 ms and notes when each new subject appears. With polling, the expected latency is about
half the interval on average and up to one interval plus the tick and the sync itself.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from bench import common
from bench.fleet import fleet, wait_for
from calsync.simulator import SimulatorProcess, mailbox_email

LATENCY_MS = 20


def run(quick: bool) -> dict[str, Any]:
    n, per_mailbox = (8, 10) if quick else (50, 20)
    interval_min = 0.03 if quick else 0.25
    changes, window = (6, 2.0) if quick else (40, 20.0)
    interval_s = interval_min * 60
    rng = random.Random(3)
    out: dict[str, Any] = {"operators": n, "poll_interval_s": interval_s, "dispatch_tick_s": 1.0, "changes": changes}
    with SimulatorProcess(mailboxes=n, appointments=per_mailbox, seed=5, latency_ms=LATENCY_MS) as sim:
        common.say(f"change latency: {n} operators polled every {interval_s:.0f}s, {changes} edits over {window:.0f}s")
        common.reset_database()
        common.set_settings(
            exchange_url=sim.ews_url,
            batch_size=512,
            poll_interval_minutes=interval_min,
            past_window_days=3650,
            ews_max_concurrency=27,
        )
        common.add_operators([mailbox_email(i) for i in range(1, n + 1)])
        client = sim.client()
        candidates = []
        for i in range(1, n + 1):
            email = mailbox_email(i)
            for it in client.list_items(email):
                if it["calendar_item_type"] == "Single" and it["sensitivity"] == "Normal":
                    candidates.append((email, it["id"]))
        picks = rng.sample(candidates, changes)
        moments = sorted(rng.uniform(0, window) for _ in range(changes))
        with fleet(sim, workers=2, threads=8, tag="lat"), common.connect() as conn:
            wait_for(
                lambda: (
                    conn.execute("SELECT count(*) AS n FROM sync_state WHERE last_success_at IS NOT NULL").fetchone()[
                        "n"
                    ]
                    >= n
                ),
                120,
                "first syncs",
            )
            time.sleep(interval_s * rng.random())  # start the edits at an arbitrary phase of the polls
            made: dict[str, float] = {}
            seen: dict[str, float] = {}
            done = threading.Event()

            def edit() -> None:
                start = time.time()
                for j, ((email, item_id), at) in enumerate(zip(picks, moments, strict=True)):
                    time.sleep(max(0.0, start + at - time.time()))
                    subject = f"bench-change-{j:04d}"
                    client.update_item(email, item_id, {"subject": subject})
                    made[subject] = time.time()
                done.set()

            editor = threading.Thread(target=edit, daemon=True)
            editor.start()
            deadline = time.monotonic() + window + 3 * interval_s + 10
            while time.monotonic() < deadline and (not done.is_set() or len(seen) < changes):
                rows = conn.execute("SELECT subject FROM appointments WHERE subject LIKE 'bench-change-%%'").fetchall()
                now = time.time()
                for r in rows:
                    seen.setdefault(r["subject"], now)
                time.sleep(0.05)
            editor.join(5)
    lat = [seen[s] - made[s] for s in made if s in seen]
    out.update(
        seen=len(lat),
        missing=changes - len(lat),
        p50_s=_r(common.percentile(lat, 0.5)),
        p95_s=_r(common.percentile(lat, 0.95)),
        p99_s=_r(common.percentile(lat, 0.99)),
        max_s=_r(max(lat) if lat else None),
        latencies_s=sorted(round(v, 3) for v in lat),
    )
    out["p50_of_interval"] = _r(out["p50_s"] / interval_s if out["p50_s"] is not None else None)
    out["p99_of_interval"] = _r(out["p99_s"] / interval_s if out["p99_s"] is not None else None)
    common.say(f"  p50 {out['p50_s']}s, p95 {out['p95_s']}s, p99 {out['p99_s']}s (interval {interval_s:.0f}s)")
    return out


def _r(v: float | None) -> float | None:
    return round(v, 2) if v is not None else None
