"""Failure and recovery emails: composition from the catalogue, and delivery over SMTP.

CALSYNC_SMTP_URL is the only place credentials come from: smtp://user:pass@host:port
(plain, port 25), smtps://... (TLS from the first byte, port 465) or smtp://...?starttls=1
(STARTTLS, port 587 unless given). TLS certificates are verified. The password never appears
in a log line, an exception message or a repr.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from calsync.config import ConfigError, env
from calsync.notify.catalogue import lookup
from calsync.store.failures import Episode


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    mode: str  # "plain", "starttls" or "tls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0

    def describe(self) -> str:
        """host:port and mode, for logs; never the credentials."""
        return f"{self.mode} smtp {self.host}:{self.port}" + (f" as {self.username}" if self.username else "")


def parse_smtp_url(url: str) -> SmtpConfig:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(
            "CALSYNC_SMTP_URL: expected smtp://user:pass@host:port, smtps://user:pass@host:port "
            "or smtp://user:pass@host:port?starttls=1"
        )
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    starttls = query.get("starttls") in ("1", "true", "yes", "on")
    mode = "tls" if scheme == "smtps" else ("starttls" if starttls else "plain")
    try:
        port = parts.port or {"tls": 465, "starttls": 587, "plain": 25}[mode]
    except ValueError as exc:
        raise ConfigError("CALSYNC_SMTP_URL: the port is not a number") from exc
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        mode=mode,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def smtp_config() -> SmtpConfig | None:
    secret = env().smtp_url
    return parse_smtp_url(secret.get_secret_value()) if secret is not None else None


def send(config: SmtpConfig, message: EmailMessage) -> None:
    """Deliver one message; raises smtplib/OS errors (without the credentials) for the caller to retry."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if config.mode == "tls":
        smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
    with smtp:
        if config.mode == "starttls":
            smtp.starttls(context=context)
        if config.username:
            try:
                smtp.login(config.username, config.password or "")
            except smtplib.SMTPAuthenticationError as exc:
                # exc carries the server's reply only, but be explicit: no secrets travel on.
                raise smtplib.SMTPAuthenticationError(exc.smtp_code, b"authentication failed") from None
        smtp.send_message(message)


# --- composition ---------------------------------------------------------------------------


def _when(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _failure_block(ep: Episode) -> str:
    entry = lookup(ep.code)
    if ep.operator_id is None:
        who = f"ALL operators ({ep.operators_affected} with Calendar Sync on): syncing is paused"
    else:
        who = f"{ep.display_name or ep.email} <{ep.email}> (operator {ep.operator_id})"
    return "\n".join(
        [
            f"* {who}",
            f"  Code:      {ep.code}",
            f"  Problem:   {entry.message}",
            f"  Since:     {_when(ep.started_at)}",
            f"  Attempts:  {ep.attempts}",
            f"  Cause:     {entry.cause}",
            f"  What to do: {entry.fix}",
            f"  Last error: {ep.message[:300]}" if ep.message else "",
        ]
    ).rstrip()


def _recovery_block(ep: Episode) -> str:
    who = "ALL operators: syncing resumed" if ep.operator_id is None else f"{ep.display_name or ep.email} <{ep.email}>"
    recovered = _when(ep.recovered_at) if ep.recovered_at else "now"
    return f"* {who}\n  Was failing with {ep.code} since {_when(ep.started_at)}; working again since {recovered}."


def failure_subject(episodes: Sequence[Episode]) -> str:
    glob = [e for e in episodes if e.operator_id is None]
    ops = [e for e in episodes if e.operator_id is not None]
    if glob:
        extra = f" (+{len(ops)} operator failure(s))" if ops else ""
        return f"calsync: calendar sync paused for everyone: {glob[0].code}{extra}"
    if len(ops) == 1:
        return f"calsync: calendar sync failed for {ops[0].email} ({ops[0].code})"
    codes = sorted({e.code for e in ops})
    return f"calsync: calendar sync failed for {len(ops)} operators ({', '.join(codes[:3])})"


def compose_failures(
    episodes: Sequence[Episode], sender: str, recipients: Sequence[str], timeout_minutes: int
) -> EmailMessage:
    lines = [
        "calsync gave up synchronising the calendars below after retrying them for up to "
        f"{timeout_minutes} minute(s) (the notification frequency), or because the failure is permanent.",
        "Their CRM calendars keep what was synchronised before; calsync keeps re-checking them and "
        "sends one more email when they work again.",
        "",
    ]
    by_code: dict[str, list[Episode]] = {}
    for ep in episodes:
        by_code.setdefault(ep.code, []).append(ep)
    for code, eps in by_code.items():
        lines.append(f"== {code}: {lookup(code).message} ({len(eps)}) ==")
        lines.extend(_failure_block(ep) for ep in eps)
        lines.append("")
    lines.append("`calsync status` shows every operator's status; docs/failures.md lists all codes.")
    return _message(failure_subject(episodes), "\n".join(lines), sender, recipients)


def compose_recoveries(episodes: Sequence[Episode], sender: str, recipients: Sequence[str]) -> EmailMessage:
    if len(episodes) == 1:
        ep = episodes[0]
        subject = "calsync: calendar sync working again" + (f" for {ep.email}" if ep.email else " for everyone")
    else:
        subject = f"calsync: calendar sync working again for {len(episodes)} operators"
    body = "\n".join(
        ["These calendar syncs failed earlier and work again:", "", *(_recovery_block(e) for e in episodes)]
    )
    return _message(subject, body, sender, recipients)


def _message(subject: str, body: str, sender: str, recipients: Sequence[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "calsync.local")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body + "\n")
    return msg
