"""The failure catalogue: every code calsync records, with what it means and what to do.

One table, used by the emails, by `calsync status` and by docs/failures.md (a test keeps the
document equal to this table). The codes are Exchange's own response codes where Exchange
names the failure (so an administrator can search for them), and calsync's names for what
happens below EWS (HTTP, TLS, the network).
"""

from __future__ import annotations

from dataclasses import dataclass

from calsync.errors import Disposition

T, R, OP, G, IT = (
    Disposition.TRANSIENT,
    Disposition.RESYNC,
    Disposition.OPERATOR,
    Disposition.GLOBAL,
    Disposition.ITEM,
)


@dataclass(frozen=True, slots=True)
class Entry:
    code: str
    disposition: Disposition
    message: str  # what happened, in one sentence an administrator understands
    cause: str  # why it usually happens
    fix: str  # what to do about it


_ENTRIES: tuple[Entry, ...] = (
    # --- global: every operator is paused, one probe per period, one alert ---
    Entry(
        "Unauthorized",
        G,
        "Exchange rejected the service account's credentials; syncing is paused for everyone.",
        "The password of CALSYNC_EWS_USERNAME changed or expired, or the account is locked out or disabled.",
        "Fix the account in Active Directory, update CALSYNC_EWS_PASSWORD (or the file named by "
        "CALSYNC_EWS_PASSWORD_FILE); syncing resumes by itself at the next probe.",
    ),
    Entry(
        "ExchangeUnreachable",
        G,
        "The Exchange server cannot be reached; syncing is paused for everyone.",
        "The exchange_url host name does not resolve, the server refuses connections, or a firewall drops them.",
        "Check `calsync settings show` (exchange_url), DNS and the firewall between the workers and Exchange; "
        "syncing resumes by itself once a probe gets through.",
    ),
    Entry(
        "TlsFailure",
        G,
        "The TLS connection to Exchange failed (certificate not trusted or handshake refused); syncing is paused "
        "for everyone.",
        "Exchange's certificate is signed by an internal CA the workers do not trust, has expired, or does not "
        "match the host name in exchange_url.",
        "Put the internal CA's PEM bundle in CALSYNC_EWS_CA_BUNDLE (verification is never switched off), or "
        "renew the certificate, or use the host name the certificate names.",
    ),
    Entry(
        "ErrorInvalidServerVersion",
        G,
        "Exchange does not accept the configured Exchange version; syncing is paused for everyone.",
        "The server runs an older Exchange than the exchange_version setting names, or one older than Exchange "
        "2010 (the oldest calsync can read calendars from: Exchange 2007 lacks the time zone fields it needs).",
        "Set exchange_version to the server's version (`calsync settings set exchange_version Exchange2010`); "
        "a server older than Exchange 2010 must be upgraded.",
    ),
    # --- permanent for one operator: marked failed, re-checked hourly, the others go on ---
    Entry(
        "ErrorNonExistentMailbox",
        OP,
        "Exchange has no mailbox for this operator's email address.",
        "The address is misspelt, the mailbox was deleted, or it moved to Exchange Online.",
        "Correct the operator's email (`calsync operators update`), or switch Calendar Sync off for them.",
    ),
    Entry(
        "ErrorImpersonateUserDenied",
        OP,
        "The service account may not impersonate this operator's mailbox.",
        "The ApplicationImpersonation role assignment does not cover this mailbox (management scope).",
        "Extend the ApplicationImpersonation role assignment of the service account to this mailbox.",
    ),
    Entry(
        "ErrorImpersonationFailed",
        OP,
        "Exchange could not impersonate this operator's mailbox.",
        "The mailbox's account is disabled or in an untrusted forest.",
        "Check the operator's account in Active Directory; re-enable it or switch Calendar Sync off.",
    ),
    Entry(
        "ErrorAccessDenied",
        OP,
        "Exchange denied access to this operator's calendar.",
        "Permissions on the mailbox or its calendar folder were changed.",
        "Restore the service account's access (ApplicationImpersonation) to the mailbox.",
    ),
    Entry(
        "ErrorAccountDisabled",
        OP,
        "This operator's Exchange account is disabled.",
        "The user left or was disabled in Active Directory.",
        "Switch Calendar Sync off for the operator, or re-enable the account.",
    ),
    Entry(
        "MailboxMovedAway",
        OP,
        "This operator's mailbox is no longer served by the configured Exchange server.",
        "The mailbox moved to another forest or to Exchange Online (EWS answered with a redirect or a "
        "cross-site error).",
        "Sync the operator from where the mailbox lives now, or switch Calendar Sync off for them.",
    ),
    Entry(
        "ErrorInvalidSchemaVersionForMailboxVersion",
        OP,
        "This operator's mailbox is on an Exchange server older than the configured version.",
        "The organisation runs mixed Exchange versions.",
        "Set exchange_version to the oldest version that hosts operator mailboxes.",
    ),
    Entry(
        "ErrorFolderNotFound",
        OP,
        "This operator's mailbox has no calendar folder calsync can open.",
        "The mailbox is a shared, resource or not yet provisioned mailbox.",
        "Check the mailbox in Exchange; switch Calendar Sync off if it has no calendar.",
    ),
    # --- resync: handled by itself ---
    Entry(
        "ErrorInvalidSyncStateData",
        R,
        "Exchange no longer accepts the stored sync state; the calendar is being resynced from scratch.",
        "The mailbox moved between databases, or was restored; Exchange invalidates old sync states.",
        "Nothing: calsync resyncs by itself without duplicates and removes what no longer exists.",
    ),
    # --- transient: retried with back-off until the notification timeout, then given up ---
    Entry(
        "ErrorServerBusy",
        T,
        "Exchange asked calsync to slow down.",
        "The service account's EWS throttling budget is exhausted (too many requests or concurrent syncs).",
        "Usually nothing: every worker waits as long as Exchange asked. If it persists, lower "
        "ews_max_concurrency or raise the throttling policy of the service account.",
    ),
    Entry(
        "ErrorExceededConnectionCount",
        T,
        "The service account has more connections open to Exchange than its throttling policy allows.",
        "ews_max_concurrency is higher than the policy's EWSMaxConcurrency (10 on 2010, 27 on 2013+).",
        "Lower ews_max_concurrency below the policy's EWSMaxConcurrency.",
    ),
    Entry(
        "HttpThrottled",
        T,
        "Exchange (or a proxy in front of it) answered HTTP 429 Too Many Requests.",
        "A load balancer or Exchange's own throttling limits the request rate.",
        "Usually nothing: calsync waits as long as Retry-After asks. If it persists, lower ews_max_concurrency.",
    ),
    Entry(
        "HttpUnavailable",
        T,
        "Exchange answered HTTP 503 Service Unavailable.",
        "Exchange or its load balancer is restarting or overloaded.",
        "Usually nothing: calsync retries after Retry-After. If it lasts, check Exchange's health.",
    ),
    Entry(
        "HttpError",
        T,
        "Exchange answered with an unexpected HTTP error.",
        "A proxy or Exchange itself failed to serve EWS.",
        "Check the EWS endpoint in a browser and Exchange's logs.",
    ),
    Entry(
        "ConnectionReset",
        T,
        "The connection to Exchange broke in the middle of a request.",
        "A load balancer or Exchange dropped the connection (restart, idle timeout).",
        "Usually nothing: calsync retries. If it persists, check the load balancer's timeouts.",
    ),
    Entry(
        "TruncatedResponse",
        T,
        "Exchange's answer arrived incomplete; it was discarded and the batch will be retried.",
        "A proxy or load balancer cut the response short, or the connection dropped mid-answer.",
        "Usually nothing: nothing was written from the partial answer. If it persists, check proxies between "
        "the workers and Exchange (response size limits, timeouts).",
    ),
    Entry(
        "ExchangeTimeout",
        T,
        "Exchange did not answer in time.",
        "Exchange is overloaded or a request was too large.",
        "Usually nothing: calsync retries. If it persists, lower batch_size.",
    ),
    Entry(
        "ErrorTimeoutExpired",
        T,
        "Exchange gave up on a request that took too long.",
        "Exchange is overloaded or the mailbox is very large.",
        "Usually nothing: calsync retries. If it persists, lower batch_size.",
    ),
    Entry(
        "ErrorMailboxMoveInProgress",
        T,
        "The operator's mailbox is being moved.",
        "An administrator is moving the mailbox between databases.",
        "Nothing: calsync retries, and resyncs if the move invalidates its sync state.",
    ),
    Entry(
        "ErrorMailboxStoreUnavailable",
        T,
        "The mailbox database holding the operator's mailbox is unavailable.",
        "The database is dismounted or failing over.",
        "Check the database's mount state in Exchange.",
    ),
    Entry(
        "ErrorTooManyObjectsOpened",
        T,
        "Exchange has too many objects open for the service account.",
        "Too many concurrent requests from the service account.",
        "Lower ews_max_concurrency.",
    ),
    Entry(
        "ErrorInternalServerTransientError",
        T,
        "Exchange reported a temporary internal error.",
        "A transient failure inside Exchange.",
        "Usually nothing: calsync retries. If it persists, check Exchange's event log.",
    ),
    Entry(
        "ErrorConnectionFailedTransientError",
        T,
        "Exchange could not reach the mailbox's server.",
        "A transient failure between Exchange servers.",
        "Usually nothing: calsync retries.",
    ),
    Entry(
        "ErrorInternalServerError",
        T,
        "Exchange reported an internal error.",
        "A failure inside Exchange.",
        "If it persists, check Exchange's event log for the time given in the email.",
    ),
    Entry(
        "MalformedResponse",
        T,
        "Exchange's answer could not be understood.",
        "A proxy returned an HTML error page, or the response was cut short.",
        "If it persists, check what sits between the workers and Exchange.",
    ),
    Entry(
        "TransportError",
        T,
        "The request to Exchange failed below EWS.",
        "A network or HTTP-level problem.",
        "If it persists, check connectivity from the workers to exchange_url.",
    ),
    Entry(
        "DatabaseUnavailable",
        T,
        "calsync's Postgres database could not be reached.",
        "Postgres restarted, failed over, or ran out of connections.",
        "Usually nothing: the batch is retried under the same lease. Check Postgres if it persists.",
    ),
    Entry(
        "RedisUnavailable",
        T,
        "calsync's Redis could not be reached.",
        "Redis restarted or failed over.",
        "Usually nothing: the batch is retried. Check Redis if it persists.",
    ),
    Entry(
        "UnexpectedError",
        T,
        "calsync hit an error it does not know.",
        "A bug, or an Exchange answer calsync has not seen before.",
        "Report it with the error message from `calsync status` or the worker log.",
    ),
    Entry(
        "ErrorInvalidWatermark",
        T,
        "Exchange refused the push subscription's resume point (watermark).",
        "The watermark is older than Exchange keeps (30 days) or belongs to another mailbox or subscription.",
        "Nothing: calsync subscribes again from now and a catch-up sync covers the gap.",
    ),
    Entry(
        "ErrorSubscriptionNotFound",
        T,
        "Exchange no longer knows the operator's push subscription.",
        "Exchange dropped it (the listener did not answer within StatusFrequency, or the mailbox moved).",
        "Nothing: calsync subscribes again and a catch-up sync covers the gap; check that Exchange can reach "
        "notification_url if it happens often.",
    ),
    Entry(
        "PushUnsupported",
        OP,
        "EWS push was asked for an operator whose mailbox is read through Microsoft Graph.",
        "The operator's source was switched to Graph while its EWS subscription was being made.",
        "Nothing: the next push sweep subscribes it through Graph change notifications instead.",
    ),
    Entry(
        "GraphSubscriptionNotFound",
        T,
        "Microsoft Graph no longer knows the operator's change-notification subscription.",
        "It lapsed (not renewed before its expirationDateTime), was removed by Graph (subscriptionRemoved), "
        "or was deleted by another tool using the app.",
        "Nothing: calsync creates a new subscription and a catch-up sync covers the gap.",
    ),
    Entry(
        "GraphSubscriptionValidationFailed",
        T,
        "Microsoft Graph refused the change-notification subscription: its validation request to the listener failed.",
        "Graph could not reach notification_url + /graph/... and /graph-lifecycle/... within 10 seconds, "
        "or got another answer than the token (a proxy, a firewall, no `calsync listener serve` behind it).",
        "Check that notification_url is reachable from the internet over https and that the listener runs; "
        "calsync retries, backing off. Until then the operator is polled at the normal interval.",
    ),
    Entry(
        "GraphSubscriptionLimit",
        T,
        "Microsoft Graph refused the subscription: the mailbox has reached its limit of subscriptions.",
        "Over 1,000 active subscriptions on the mailbox across all apps (another app leaks subscriptions).",
        "Find the app holding them (GET /subscriptions as that app) and delete its stale ones; calsync retries.",
    ),
    Entry(
        "GraphSubscriptionRejected",
        T,
        "Microsoft Graph refused to create or renew the change-notification subscription.",
        "An expirationDateTime Graph does not accept (a clock far off), a notification_url that is not https, "
        "or a Graph change calsync does not know yet.",
        "Check the host's clock and that notification_url is https; the message in `calsync status` says more.",
    ),
    Entry(
        "TaskTimeLimit",
        T,
        "A sync batch ran past the task's time limit and was stopped; its lease was given back.",
        "Exchange (or a proxy in front of it) answers very slowly, or a batch is too large for the time limit.",
        "Check Exchange's response times; lower batch_size (`calsync settings set batch_size 100`). The operator "
        "is retried and, if it keeps overrunning, failed with an email after the notification frequency.",
    ),
    # --- item: one appointment is set aside, the rest of its mailbox syncs ---
    Entry(
        "ItemWithoutTimes",
        IT,
        "Exchange sent an appointment without a readable start or end; it was set aside.",
        "The item's Start or End is missing or in a form the EWS client cannot parse (for example with "
        "fractional seconds), often written by a third-party client or a migration tool.",
        "Open the appointment in Outlook and save it again (or move it by a minute and back); it is synced at "
        "its next change. `calsync status EMAIL` lists the items set aside.",
    ),
    Entry(
        "ItemUnconvertible",
        IT,
        "Exchange sent an appointment calsync cannot convert; it was set aside.",
        "A value outside what calsync handles: a time zone id that is no time zone id at all (such as a file "
        "path), or a part of the answer the EWS client cannot parse (the item was fetched alone to find it).",
        "See the reason in `calsync status EMAIL`; correct the item in Outlook (it is synced at its next "
        "change), or report the reason if the item looks normal.",
    ),
    # --- hostile or broken answers, refused before they are parsed (calsync.source.ews.connection) ---
    Entry(
        "ResponseTimeout",
        T,
        "Exchange's answer did not arrive completely within the request deadline; the request was cut off.",
        "A slow proxy or an overloaded server sends the answer in a trickle, or never finishes it.",
        "Usually nothing: calsync retries, and no worker thread waits longer than the deadline "
        "(CALSYNC_EWS_REQUEST_DEADLINE_SECONDS, default 90). If it persists, check proxies between the workers "
        "and Exchange, or lower batch_size.",
    ),
    Entry(
        "ResponseTooLarge",
        T,
        "Exchange's answer was larger than calsync accepts; it was refused unread and nothing was written.",
        "A proxy or server sends an oversized answer, or items with very large bodies exceed the limit.",
        "Lower batch_size, or raise CALSYNC_EWS_MAX_RESPONSE_BYTES (default 32 MiB) if the mailbox's items are "
        "legitimately that large.",
    ),
    Entry(
        "UnsafeXmlResponse",
        T,
        "Exchange's answer contained XML entity definitions (a DTD); it was refused unparsed.",
        "SOAP forbids DTDs, so something between the workers and Exchange injects entity expansion "
        "(billion laughs) or external entities (XXE): a hostile or broken proxy.",
        "Treat it as a security incident: find what rewrites the traffic to exchange_url (use https://).",
    ),
    Entry(
        "UnknownTimeZone",
        IT,
        "An all-day appointment or a recurring series names a time zone calsync does not know; it was set aside.",
        "The item's StartTimeZone or EndTimeZone Id is neither a Windows zone in the EWS client's CLDR table nor "
        "an IANA zone of the installed tz database (a custom zone written by a migration tool or a third-party "
        "client, or a zone newer than the installed tzdata). Its dates and occurrences depend on the zone's "
        "rules, so calsync does not guess. A timed single appointment with such a zone is mirrored by its exact "
        "UTC times, with no time zone, and a warning in the worker's log.",
        "Open the appointment in Outlook and save it with a standard time zone (it is synced at its next change), "
        "or upgrade calsync's tzdata/exchangelib if the zone is new. `calsync status EMAIL` lists the zone id.",
    ),
)

# --- Microsoft Graph (Exchange Online): the same catalogue, Graph's failures ---
_ENTRIES += (
    Entry(
        "GraphConsentMissing",
        OP,
        "Microsoft Graph denies calsync's app this mailbox, and the app's token carries no calendar permission.",
        "The app has no admin consent for Calendars.Read (never granted, or revoked), or, with RBAC for "
        "Applications, no role assignment whose scope holds this mailbox.",
        "Entra ID, App registrations > calsync > API permissions: Microsoft Graph Calendars.Read (Application) and "
        "'Grant admin consent'; or with RBAC for Applications add the mailbox to the scope of the 'Application "
        "Calendars.Read' assignment (docs/graph.md). calsync checks the operator again within the hour; "
        "`calsync sync EMAIL` retries at once.",
    ),
    Entry(
        "GraphConsentRequired",
        G,
        "Entra ID refuses calsync's app a token until an administrator consents (AADSTS65001); syncing through "
        "Graph is paused.",
        "The app's permissions were never granted admin consent in this tenant, or the consent was withdrawn.",
        "Entra ID, App registrations > calsync > API permissions: 'Grant admin consent'; syncing resumes by "
        "itself at the next probe.",
    ),
    Entry(
        "GraphUnauthorized",
        G,
        "Microsoft Graph rejected calsync's access token twice in a row; syncing is paused for everyone.",
        "The token was revoked, the app was deleted or disabled, or the workers' clocks are far off.",
        "Check the app registration in Entra ID and the workers' time (NTP); syncing resumes at the next probe.",
    ),
    Entry(
        "GraphInvalidClientSecret",
        G,
        "Entra ID rejected calsync's client secret (AADSTS7000215); syncing through Graph is paused.",
        "CALSYNC_GRAPH_CLIENT_SECRET (or its file) holds a wrong value: the secret's ID instead of its value, "
        "or a secret of another app.",
        "Create a new client secret for the app and put its Value in CALSYNC_GRAPH_CLIENT_SECRET or the file "
        "named by CALSYNC_GRAPH_CLIENT_SECRET_FILE.",
    ),
    Entry(
        "GraphClientSecretExpired",
        G,
        "calsync's client secret has expired (AADSTS7000222); syncing through Graph is paused.",
        "Client secrets have an end date (at most two years).",
        "Create a new client secret (or use a certificate: CALSYNC_GRAPH_CERTIFICATE) and update the workers.",
    ),
    Entry(
        "GraphInvalidCertificate",
        G,
        "Entra ID rejected calsync's certificate (AADSTS700027); syncing through Graph is paused.",
        "The certificate in CALSYNC_GRAPH_CERTIFICATE is not the one uploaded to the app, or it expired.",
        "Upload the certificate (public part) to the app registration, or point CALSYNC_GRAPH_CERTIFICATE at "
        "the PEM file (private key and certificate) whose certificate is uploaded.",
    ),
    Entry(
        "GraphAppNotFound",
        G,
        "Entra ID does not know the configured app (AADSTS700016); syncing through Graph is paused.",
        "graph_client_id is wrong, or the app is registered in another tenant than graph_tenant_id.",
        "Set graph_client_id to the app's Application (client) ID and graph_tenant_id to its Directory "
        "(tenant) ID: `calsync settings set graph_client_id ...`.",
    ),
    Entry(
        "GraphTenantNotFound",
        G,
        "Entra ID does not know the configured tenant (AADSTS90002); syncing through Graph is paused.",
        "graph_tenant_id is mistyped, or graph_authority_url points at another cloud than the tenant's.",
        "Set graph_tenant_id to the Directory (tenant) ID and graph_authority_url to the tenant's cloud "
        "(https://login.microsoftonline.com, or a national cloud's).",
    ),
    Entry(
        "GraphAppDisabled",
        G,
        "calsync's app is disabled in the tenant (AADSTS7000112); syncing through Graph is paused.",
        "An administrator disabled the app's enterprise application (service principal).",
        "Entra ID, Enterprise applications > calsync > Properties: 'Enabled for users to sign-in' = Yes.",
    ),
    Entry(
        "GraphServicePrincipalMissing",
        G,
        "Microsoft Graph is not available to the tenant (AADSTS500011); syncing through Graph is paused.",
        "graph_base_url names a resource the tenant does not have (a national cloud's Graph for a global tenant).",
        "Set graph_base_url to the tenant's cloud: https://graph.microsoft.com/v1.0 (global) or the national "
        "cloud's Graph endpoint.",
    ),
    Entry(
        "GraphTokenError",
        G,
        "Entra ID refused to issue calsync an access token; syncing through Graph is paused.",
        "See the AADSTS code in the message; Microsoft documents each one.",
        "Look the AADSTS code up (https://login.microsoftonline.com/error?code=NNN) and fix the app registration.",
    ),
    Entry(
        "GraphAuthorityUnreachable",
        G,
        "Entra ID (the token endpoint) cannot be reached; syncing through Graph is paused.",
        "graph_authority_url does not resolve, or a firewall or proxy blocks the workers' outbound HTTPS.",
        "Check graph_authority_url, DNS and outbound HTTPS (443) from the workers to the authority.",
    ),
    Entry(
        "GraphCredentialMissing",
        G,
        "The workers have no Graph client credential; syncing through Graph is paused.",
        "None of CALSYNC_GRAPH_CLIENT_SECRET, CALSYNC_GRAPH_CLIENT_SECRET_FILE, CALSYNC_GRAPH_CERTIFICATE is set.",
        "Set one of them in every worker's environment and restart the workers.",
    ),
    Entry(
        "GraphConfigInvalid",
        G,
        "The Graph settings cannot be used; syncing through Graph is paused.",
        "graph_authority_url or graph_base_url is plain http to a host other than the local simulator.",
        "Use the https URLs of the tenant's cloud: `calsync settings set graph_authority_url https://...`.",
    ),
    Entry(
        "GraphUnreachable",
        G,
        "Microsoft Graph cannot be reached; syncing through Graph is paused.",
        "graph_base_url does not resolve, or a firewall or proxy blocks the workers' outbound HTTPS.",
        "Check graph_base_url, DNS and outbound HTTPS from the workers; syncing resumes once a probe gets through.",
    ),
    Entry(
        "GraphNotConfigured",
        OP,
        "This operator's mailbox is to be read through Graph, but Graph is not configured.",
        "The operator's source (or the `source` setting) is graph, and graph_tenant_id or graph_client_id is empty.",
        "`calsync settings set graph_tenant_id ...` and `calsync settings set graph_client_id ...`, or switch the "
        "operator back: `calsync operators source ews EMAIL`.",
    ),
    Entry(
        "GraphMailboxAccessDenied",
        OP,
        "Microsoft Graph denies calsync's app access to this mailbox.",
        "An RBAC for Applications management scope (or an application access policy) leaves this mailbox out.",
        "Add the mailbox to the scope: Exchange Online PowerShell, `Get-ManagementScope` for calsync's role "
        "assignment, then add the user to the group or filter it names (docs/graph.md).",
    ),
    Entry(
        "GraphMailboxNotEnabledForRest",
        OP,
        "The operator's mailbox cannot be read through Graph (MailboxNotEnabledForRESTAPI).",
        "The mailbox is on-premises (hybrid), inactive, soft-deleted, or has no Exchange Online license.",
        "License the user for Exchange Online, or read the mailbox through EWS: `calsync operators source ews EMAIL`.",
    ),
    Entry(
        "GraphMailboxNotFound",
        OP,
        "Microsoft Graph knows no user with the operator's address.",
        "The address is wrong, the user was deleted, or it is an alias Graph does not resolve.",
        "Fix the operator's address (`calsync operators update EMAIL --email NEW`) to the user's primary address.",
    ),
    Entry(
        "GraphResourceNotFound",
        OP,
        "Microsoft Graph answered 404 for the operator's calendar.",
        "The user has no calendar (no mailbox yet), or graph_base_url points at the wrong API version.",
        "Check the user's mailbox in Exchange Online and graph_base_url (https://graph.microsoft.com/v1.0).",
    ),
    Entry(
        "GraphLinkForeign",
        OP,
        "Microsoft Graph handed calsync a paging link on another host; calsync did not follow it.",
        "graph_base_url is not the host Graph answers from (a proxy rewrites links, or a national cloud mix-up).",
        "Set graph_base_url to the host Graph's links use.",
    ),
    Entry(
        "GraphWindowRolled",
        R,
        "A new day moved the sync window; this mailbox's Graph delta starts a new generation.",
        "Graph fixes the window inside its delta token; moving the horizon means a new delta.",
        "Nothing: calsync lists the new window, rewrites only what changed and removes only what is gone.",
    ),
    Entry(
        "GraphThrottled",
        T,
        "Microsoft Graph throttled calsync (HTTP 429) for this mailbox.",
        "More than 4 concurrent requests or 10,000 requests per 10 minutes for one mailbox by the app.",
        "Usually nothing: every worker waits as long as Retry-After asks. If it persists, lower graph_max_concurrency.",
    ),
    Entry(
        "GraphUnavailable",
        T,
        "Microsoft Graph answered 503 Service Unavailable.",
        "Graph or Exchange Online is overloaded or being maintained.",
        "Usually nothing: every worker waits as Retry-After asks. Check the Microsoft 365 service health if it lasts.",
    ),
    Entry(
        "GraphGatewayTimeout",
        T,
        "Microsoft Graph answered 504 Gateway Timeout.",
        "Exchange Online did not answer Graph in time (a large page, a busy mailbox server).",
        "Usually nothing: calsync retries. If it persists, lower batch_size (the delta page size).",
    ),
    Entry(
        "GraphServerError",
        T,
        "Microsoft Graph reported an internal error.",
        "A transient failure inside Graph or Exchange Online.",
        "Usually nothing: calsync retries. Check the Microsoft 365 service health if it persists.",
    ),
    Entry(
        "GraphRequestRejected",
        T,
        "Microsoft Graph rejected a request calsync made.",
        "A Graph change calsync does not know yet, or a proxy altering requests.",
        "Report it with the message from `calsync status`; calsync retries until the notification timeout.",
    ),
    Entry(
        "GraphTimeout",
        T,
        "Microsoft Graph did not answer in time.",
        "Graph is overloaded or the page was large.",
        "Usually nothing: calsync retries. If it persists, lower batch_size.",
    ),
)

CATALOGUE: dict[str, Entry] = {e.code: e for e in _ENTRIES}

UNKNOWN_EWS = Entry(
    "OtherExchangeError",
    T,
    "Exchange returned an error calsync has no specific entry for.",
    "See the Exchange response code in the message; Microsoft documents each one (ResponseCode).",
    "Look the code up in Microsoft's EWS ResponseCode reference; calsync retries until the notification timeout.",
)


def lookup(code: str) -> Entry:
    """The entry for `code`; Exchange codes without an entry share one generic text that names them."""
    entry = CATALOGUE.get(code)
    if entry is not None:
        return entry
    return Entry(code, UNKNOWN_EWS.disposition, f"{UNKNOWN_EWS.message} ({code})", UNKNOWN_EWS.cause, UNKNOWN_EWS.fix)


def markdown_table() -> str:
    """The catalogue as the Markdown table in docs/failures.md."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| Code | Kind | Message | Cause | Fix |", "| --- | --- | --- | --- | --- |"]
    for e in (*_ENTRIES, UNKNOWN_EWS):
        lines.append(f"| `{e.code}` | {e.disposition.value} | {cell(e.message)} | {cell(e.cause)} | {cell(e.fix)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate the table in docs/failures.md
    print(markdown_table(), end="")
