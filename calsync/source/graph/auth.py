"""App-only tokens for Graph (OAuth2 client credentials) through MSAL.

MSAL caches the token and asks Entra ID for a new one before the cached one expires (it
treats a token as expired some minutes early and honours `refresh_in`), so a request never
leaves with a token about to lapse. A token Graph rejects anyway (revoked, clock skew, the
simulator's "expired token" fault) is dropped and one fresh token is tried before the
error counts.

An `http://` authority is accepted for loopback hosts only (the built-in simulator): MSAL
insists on https, so requests to such an authority are sent over plain HTTP by a session
adapter. Real clouds are always https, with MSAL's own validation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msal
import requests
import requests.adapters

from calsync.errors import Disposition, SourceError

GRAPH_SCOPE_SUFFIX = "/.default"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _PlainHttpForLoopback(requests.adapters.HTTPAdapter):
    """Sends https://<loopback>/... as http:// (only mounted for a loopback http authority)."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        request.url = urlunsplit(("http", parts.netloc, parts.path, parts.query, parts.fragment))
        kwargs["verify"] = True
        return super().send(request, *args, **kwargs)


def msal_authority(authority_url: str, tenant: str) -> tuple[str, requests.Session, bool]:
    """(authority for MSAL, its HTTP session, whether MSAL may run instance discovery)."""
    parts = urlsplit(authority_url)
    session = requests.Session()
    if parts.scheme == "http":
        if (parts.hostname or "") not in LOOPBACK:
            raise SourceError(
                "GraphConfigInvalid",
                Disposition.GLOBAL,
                f"graph_authority_url {authority_url} is plain http; only the local simulator may use http, "
                "set it to https://login.microsoftonline.com (or your national cloud's authority)",
            )
        session.mount(f"https://{parts.netloc}/", _PlainHttpForLoopback())
        return f"https://{parts.netloc}{parts.path.rstrip('/')}/{tenant}", session, False
    return f"{authority_url.rstrip('/')}/{tenant}", session, True


def graph_scope(base_url: str) -> str:
    """The .default scope of the Graph resource the base URL belongs to (national clouds differ)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}{GRAPH_SCOPE_SUFFIX}"


class TokenProvider:
    """One per process and app registration; thread-safe."""

    def __init__(
        self,
        authority_url: str,
        tenant_id: str,
        client_id: str,
        credential: Callable[[], str | dict[str, str] | None],
        base_url: str,
    ) -> None:
        self.authority_url = authority_url
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._credential = credential
        self.scope = graph_scope(base_url)
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None

    def _build(self) -> msal.ConfidentialClientApplication:
        credential = self._credential()
        if not credential:
            raise SourceError(
                "GraphCredentialMissing",
                Disposition.GLOBAL,
                "no Graph client credential: set CALSYNC_GRAPH_CLIENT_SECRET, CALSYNC_GRAPH_CLIENT_SECRET_FILE "
                "or CALSYNC_GRAPH_CERTIFICATE on every worker",
            )
        authority, session, discovery = msal_authority(self.authority_url, self.tenant_id)
        kwargs: dict[str, Any] = {"http_client": session}
        if not discovery:
            kwargs["instance_discovery"] = False
        try:
            return msal.ConfidentialClientApplication(
                self.client_id, client_credential=credential, authority=authority, **kwargs
            )
        except ValueError as exc:  # MSAL's tenant discovery: unknown tenant, unreachable authority
            raise token_error({"error": "invalid_request", "error_description": str(exc)}) from exc
        except requests.RequestException as exc:
            raise SourceError("GraphAuthorityUnreachable", Disposition.GLOBAL, str(exc)[:500]) from exc

    def token(self) -> str:
        with self._lock:
            if self._app is None:
                self._app = self._build()
            app = self._app
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise SourceError("GraphAuthorityUnreachable", Disposition.GLOBAL, str(exc)[:500]) from exc
        if not result or "access_token" not in result:
            raise token_error(result or {})
        return str(result["access_token"])

    def invalidate(self) -> None:
        """Forget the cached token (Graph rejected it): the next call gets a fresh one."""
        with self._lock:
            self._app = None


# AADSTS codes an administrator meets, with the catalogue code they map to.
_AADSTS = {
    "7000215": "GraphInvalidClientSecret",  # invalid client secret
    "7000222": "GraphClientSecretExpired",  # expired client secret
    "700027": "GraphInvalidCertificate",  # certificate assertion not valid for the app
    "700016": "GraphAppNotFound",  # application not found in the tenant
    "90002": "GraphTenantNotFound",  # tenant not found
    "900023": "GraphTenantNotFound",  # tenant identifier malformed
    "65001": "GraphConsentRequired",  # admin consent not granted
    "7000112": "GraphAppDisabled",  # application disabled
    "500011": "GraphServicePrincipalMissing",  # resource principal (Graph) not in the tenant
}


def token_error(result: dict[str, Any]) -> SourceError:
    """An MSAL error answer as a catalogue entry; every one of them stops the whole app (GLOBAL)."""
    description = str(result.get("error_description") or result.get("error") or "no token in the answer")
    first = description.splitlines()[0][:500]
    code = "GraphTokenError"
    for number, name in _AADSTS.items():
        if f"AADSTS{number}:" in description or f"AADSTS{number} " in description:
            code = name
            break
    return SourceError(code, Disposition.GLOBAL, first)
