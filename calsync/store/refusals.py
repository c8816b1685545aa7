"""Items set aside: what the source refused, per operator, until the item reads again or goes.

Written in the batch's own transaction (calsync.runner.batch), so a refusal is recorded
exactly when the cursor moves past the item; read by `calsync status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from calsync.operators.emails import key as email_key
from calsync.sync.model import RefusedItem

REASON_LIMIT = 2000


def record(
    conn: psycopg.Connection[Any], operator_id: int, refused: Sequence[RefusedItem], settled: Sequence[str]
) -> None:
    """Note this page's refusals, and forget earlier ones of items the page settled."""
    if settled:
        conn.execute(
            "DELETE FROM refused_items WHERE operator_id = %s AND item_id = ANY(%s)", (operator_id, list(settled))
        )
    if refused:
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO refused_items (operator_id, item_id, change_key, code, reason)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (operator_id, item_id) DO UPDATE
                   SET change_key = EXCLUDED.change_key, code = EXCLUDED.code, reason = EXCLUDED.reason,
                       refused_at = now()
                """,
                [(operator_id, r.item_id, r.change_key, r.code, r.reason[:REASON_LIMIT]) for r in refused],
            )


def listed(conn: psycopg.Connection[Any], emails: list[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The refused items (of the named operators), newest first."""
    rows = conn.execute(
        """
        SELECT o.email, r.item_id, r.code, r.reason, r.first_refused_at, r.refused_at
          FROM refused_items r JOIN operators o ON o.id = r.operator_id
         WHERE %(emails)s::text[] IS NULL OR o.email_key = ANY(%(emails)s)
         ORDER BY r.refused_at DESC
         LIMIT %(limit)s
        """,
        {"emails": [email_key(e) for e in emails] if emails else None, "limit": limit},
    ).fetchall()
    return [dict(r) for r in rows]


def purge(conn: psycopg.Connection[Any], operator_ids: Sequence[int]) -> None:
    """The mirror was purged: its refusals go with it (the next first sync meets them again)."""
    conn.execute("DELETE FROM refused_items WHERE operator_id = ANY(%s)", (list(operator_ids),))
