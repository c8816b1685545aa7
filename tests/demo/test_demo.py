"""Issue 9: `make demo`'s job end to end, and its summary is what the database holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import REPO


@pytest.mark.timeout(400)
def test_demo_runs_and_its_summary_matches_the_database(database_url: str, redis_url: str) -> None:
    demo_db = urlunsplit(urlsplit(database_url)._replace(path="/calsync_demo_test"))
    env = {**os.environ, "CALSYNC_DEMO_DATABASE_URL": demo_db, "CALSYNC_REDIS_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, "-m", "calsync.demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=380
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    lines = {m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
             for m in re.finditer(r"^(\S+@example\.com)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\w+)\s", out, re.M)}  # fmt: skip
    assert len(lines) == 50
    with psycopg.connect(demo_db, row_factory=dict_row) as conn:
        rows = conn.execute(
            """
            SELECT o.email, s.status,
                   count(a.*) FILTER (WHERE a.kind IN ('single', 'series')) AS appointments,
                   count(a.*) FILTER (WHERE a.kind IN ('occurrence', 'exception')) AS occurrences,
                   count(a.*) FILTER (WHERE a.is_cancelled) AS cancelled
              FROM operators o JOIN sync_state s ON s.operator_id = o.id
              LEFT JOIN appointments a ON a.operator_id = o.id
             GROUP BY o.email, s.status
            """
        ).fetchall()
        for r in rows:
            assert lines[r["email"]] == (r["appointments"], r["occurrences"], r["cancelled"], r["status"]), r
        total = sum(r["appointments"] for r in rows)
        occurrences = sum(r["occurrences"] for r in rows)
        assert f"appointments mirrored: {total} singles and series, plus {occurrences} occurrences" in out
        assert all(r["status"] == "active" for r in rows)
        second = re.search(r"changes seen by the polls after the edits: (\d+) created, (\d+) updated", out)
        assert second is not None and (int(second.group(1)), int(second.group(2))) == (3, 6)
        moved = conn.execute(
            "SELECT count(*) AS n FROM appointments WHERE subject LIKE 'Moved by the demo%'"
        ).fetchone()
        assert moved == {"n": 3}
    assert "stopped beat, workers and simulator" in out
