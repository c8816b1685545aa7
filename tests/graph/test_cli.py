"""The source per operator through the installed `calsync` command: add, import, switch, list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from tests.cli.conftest import Run, run  # noqa: F401  (fixture)


def test_source_per_operator_from_the_cli_and_the_csv(
    run: Run,  # noqa: F811
    db: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    added = run("operators", "add", "ann@example.com", "--source", "graph")
    assert added.returncode == 0, added.stderr
    csv = tmp_path / "ops.csv"
    csv.write_text("email;name;calendar_sync;source\nbob@example.com;Bob;true;\ncy@example.com;Cy;true;GRAPH\n")
    imported = run("operators", "import", str(csv))
    assert imported.returncode == 0, imported.stderr
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("email,name,calendar_sync,source\ndee@example.com,Dee,true,exchange-online\n")
    refused = run("operators", "import", str(wrong))
    assert refused.returncode != 0 and "line 2" in refused.stdout + refused.stderr
    assert "ews or graph" in refused.stdout + refused.stderr

    listed = {o["email"]: o["source"] for o in json.loads(run("operators", "list", "--json").stdout)}
    assert listed == {"ann@example.com": "graph", "bob@example.com": None, "cy@example.com": "graph"}
    db.execute("UPDATE sync_state SET ews_sync_state = 'state', stage = 'incremental', status = 'active'")
    switched = run("operators", "source", "ews", "ann@example.com", "bob@example.com")
    assert switched.returncode == 0, switched.stderr
    assert "1 switched" in switched.stdout  # bob already read through EWS (the default)
    rows = {
        r["email"]: r
        for r in db.execute(
            "SELECT o.email, o.source, s.ews_sync_state, s.stage, s.generation FROM operators o "
            "JOIN sync_state s ON s.operator_id = o.id"
        )
    }
    assert (rows["ann@example.com"]["source"], rows["ann@example.com"]["ews_sync_state"]) == ("ews", None)
    assert rows["ann@example.com"]["stage"] == "initial" and rows["ann@example.com"]["generation"] == 2
    assert rows["bob@example.com"]["ews_sync_state"] == "state" and rows["bob@example.com"]["generation"] == 0
