"""Credentials never reach a log line, at any level.

At debug level exchangelib logs every request's headers (the `Authorization: Basic ...` of the
service account) and libraries print URLs with their passwords. Rather than a filter on each
handler (Celery, the CLI and libraries add and replace handlers), calsync replaces the log
record factory once per process: every record is redacted when it is made, whoever handles it.

What is redacted: HTTP credentials after `Authorization` (Basic, Bearer, NTLM, Negotiate), the
password in any `scheme://user:password@` URL, and the literal secrets this process holds (the
EWS password, the base64 of user:password, the SMTP password), wherever they appear, including
exception texts.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
_AUTH = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*)(basic|bearer|ntlm|negotiate|digest)\s+[^\s'\",}]+")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s'\"]*):([^@\s'\"/]+)@")

_lock = threading.Lock()
_installed = False
_secrets: tuple[str, ...] = ()


def redact(text: str) -> str:
    text = _AUTH.sub(lambda m: f"{m.group(1)}{m.group(2)} {MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _known_secrets() -> tuple[str, ...]:
    """The secrets of this process's configuration, and the forms they travel in."""
    from calsync.config import ConfigError, env

    found: list[str] = []
    try:
        cfg = env()
        password = cfg.ews_password_value()
    except (ConfigError, ValueError):
        return ()
    if password:
        found.append(password)
        if cfg.ews_username:
            found.append(base64.b64encode(f"{cfg.ews_username}:{password}".encode()).decode())
    if cfg.smtp_url is not None:
        try:
            smtp_password = urlsplit(cfg.smtp_url.get_secret_value()).password
        except ValueError:
            smtp_password = None
        if smtp_password:
            found += [smtp_password, unquote(smtp_password)]
    # Short values would mask innocent text; they are still caught by the patterns above.
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the handler's problem, not ours
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


def install() -> None:
    """Redact every log record this process makes from now on (idempotent)."""
    global _installed, _secrets
    with _lock:
        _secrets = _known_secrets()
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return _redact_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True
