"""The same mailbox mirrored through EWS and through Graph gives the same appointments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from calsync.simulator import Simulator
from calsync.source.ews.source import EwsSource
from calsync.source.graph.source import GraphSource
from tests.graph.conftest import MAILBOX, mirror, sync_to_end


def test_ews_and_graph_mirror_the_same_rows(
    db: psycopg.Connection[Any],
    sim: Simulator,
    configure: Any,
    add_operator: Any,
    ews_source: EwsSource,
    graph_source: GraphSource,
) -> None:
    op = add_operator(MAILBOX)
    sync_to_end(ews_source, op)
    through_ews = mirror(db, op)
    db.execute("DELETE FROM operators WHERE id = %s", (op,))
    op = add_operator(MAILBOX, "graph")
    sync_to_end(graph_source, op)
    through_graph = mirror(db, op)

    # EWS lists a master's exceptions however far ahead; Graph's instances stop at the window
    # (future_horizon_days), so an exception beyond it enters the Graph mirror with the horizon.
    horizon = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    for rows in (through_ews, through_graph):
        for key in [k for k, r in rows.items() if r["kind"] == "exception" and r["original_start"] >= horizon]:
            del rows[key]

    kinds = {r["kind"] for r in through_ews.values()}
    assert kinds == {"single", "series", "occurrence", "exception"}, kinds
    assert any(r["is_all_day"] and r["timezone"] == "Australia/Sydney" for r in through_ews.values())
    assert any(r["details_withheld"] for r in through_ews.values())
    assert any(r["is_cancelled"] for r in through_ews.values())
    assert len(through_ews) > 100

    assert set(through_ews) == set(through_graph), sorted(set(through_ews) ^ set(through_graph), key=str)[:10]
    diffs = []
    for key, row in through_ews.items():
        other = through_graph[key]
        for column, value in row.items():
            if column != "id" and other[column] != value:
                diffs.append((key, column, value, other[column]))
    assert not diffs, sorted({(d[1], str(d[2])[:40], str(d[3])[:40]) for d in diffs})[:20]
