"""Optional validation of request and response bodies against Microsoft's EWS schema (off by default: slow)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lxml import etree

_lock = threading.Lock()
_schema: etree.XMLSchema | None = None


def schema_dir() -> Path:
    """$CALSYNC_EWS_SCHEMA_DIR, else ../shared/ews-schema next to the repository."""
    override = os.environ.get("CALSYNC_EWS_SCHEMA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3].parent / "shared" / "ews-schema"


def available() -> bool:
    return (schema_dir() / "messages.xsd").is_file()


def schema() -> etree.XMLSchema:
    global _schema
    with _lock:
        if _schema is None:
            path = schema_dir() / "messages.xsd"
            if not path.is_file():
                raise RuntimeError(f"EWS schema not found at {path} (set CALSYNC_EWS_SCHEMA_DIR)")
            _schema = etree.XMLSchema(etree.parse(str(path)))
        return _schema


def errors(elem: etree._Element) -> str | None:
    """None when valid, else the first violation (line and text)."""
    xsd = schema()
    with _lock:  # an XMLSchema object is not safe to use from two threads at once
        if xsd.validate(etree.ElementTree(elem)):
            return None
        err = xsd.error_log.last_error
    return f"line {err.line}: {err.message}" if err is not None else "invalid"


def response_errors(payload: bytes) -> str | None:
    try:
        root = etree.fromstring(payload)
    except etree.XMLSyntaxError as exc:
        return f"response is not well-formed: {exc}"
    body = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    if body is None or not len(body):
        return "response has no SOAP Body"
    if body[0].tag == "{http://schemas.xmlsoap.org/soap/envelope/}Fault":
        return None
    return errors(body[0])
