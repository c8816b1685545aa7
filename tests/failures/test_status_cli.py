"""`calsync status` shows the failing operators and the pause in the catalogue's words."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from click.testing import CliRunner

from calsync.cli.status import status
from calsync.notify.catalogue import CATALOGUE

from .conftest import add_operators


def test_status_lists_failures_with_catalogue_texts(clean_failures: psycopg.Connection[Any]) -> None:
    db = clean_failures
    good, bad = add_operators(db, ["good@example.com", "bad@example.com"])
    db.execute("UPDATE sync_state SET status = 'active', last_success_at = now() WHERE operator_id = %s", (good,))
    db.execute(
        "UPDATE sync_state SET status = 'failed', last_error_code = 'ErrorNonExistentMailbox', attempts = 2, "
        "failing_since = now() WHERE operator_id = %s",
        (bad,),
    )
    db.execute("INSERT INTO global_pause (code, until) VALUES ('Unauthorized', now() + interval '1 minute')")
    result = CliRunner().invoke(status, ["--no-broker"])
    assert result.exit_code == 1, "a failed operator and a pause make status exit nonzero for monitoring"
    out = result.output
    assert "active 1" in out and "failed 1" in out
    assert "FAILED bad@example.com" in out and "good@example.com" not in out
    assert CATALOGUE["ErrorNonExistentMailbox"].fix in out
    assert "SYNCING PAUSED FOR EVERYONE: Unauthorized" in out and CATALOGUE["Unauthorized"].fix in out

    data = json.loads(CliRunner().invoke(status, ["--json", "--no-broker"]).output)
    assert data["by_status"]["failed"] == 1 and data["operators"] == 2
    assert data["pause"]["code"] == "Unauthorized"
