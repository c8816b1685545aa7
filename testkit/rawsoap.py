"""Pre-built EWS requests as exchangelib sends them, for benchmarks and raw-protocol tests (not shipped)."""

from __future__ import annotations

import base64

from calsync.simulator.ews.soap import NS_M, NS_SOAP, NS_T, esc


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def envelope(email: str, body: str, version: str = "Exchange2013_SP1") -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8'?>"
        f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:m="{NS_M}" xmlns:t="{NS_T}"><s:Header>'
        f'<t:RequestServerVersion Version="{version}"/><t:ExchangeImpersonation><t:ConnectingSID>'
        f"<t:PrimarySmtpAddress>{esc(email)}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
        '<t:TimeZoneContext><t:TimeZoneDefinition Id="UTC"/></t:TimeZoneContext>'
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def sync_folder_items(
    email: str, sync_state: str | None = None, max_changes: int | str = 512, version: str = "Exchange2013_SP1"
) -> bytes:
    state = f"<m:SyncState>{esc(sync_state)}</m:SyncState>" if sync_state else ""
    return envelope(
        email,
        "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
        '<m:SyncFolderId><t:DistinguishedFolderId Id="calendar"><t:Mailbox>'
        f"<t:EmailAddress>{esc(email)}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType>"
        "<t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:DistinguishedFolderId></m:SyncFolderId>"
        f"{state}<m:MaxChangesReturned>{max_changes}</m:MaxChangesReturned></m:SyncFolderItems>",
        version,
    )


def headers(user: str, password: str, email: str) -> dict[str, str]:
    return {
        "Content-Type": "text/xml; charset=utf-8",
        "Authorization": basic_auth(user, password),
        "X-AnchorMailbox": email,
    }
