"""Optional validation of Graph answers against ../shared/graph-schema (tests only: jsonschema is a dev tool)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_validators: dict[str, Any] = {}


def schema_dir() -> Path:
    """$CALSYNC_GRAPH_SCHEMA_DIR, else ../shared/graph-schema next to the repository."""
    override = os.environ.get("CALSYNC_GRAPH_SCHEMA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3].parent / "shared" / "graph-schema"


def available() -> bool:
    return (schema_dir() / "graph-calendar.schema.json").is_file()


def validator(definition: str) -> Any:
    with _lock:
        found = _validators.get(definition)
        if found is None:
            import jsonschema

            schema = json.loads((schema_dir() / "graph-calendar.schema.json").read_text(encoding="utf-8"))
            found = jsonschema.Draft202012Validator(
                {**schema, "$ref": f"#/$defs/{definition}"}, format_checker=jsonschema.FormatChecker()
            )
            _validators[definition] = found
        return found


def errors(body: Any, definition: str) -> str | None:
    """None when the body is valid for the definition, else the first violation."""
    if not available():
        return None
    for err in validator(definition).iter_errors(body):
        where = "/".join(str(p) for p in err.absolute_path)
        return f"{where}: {err.message[:300]}"
    return None
