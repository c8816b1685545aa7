"""HTTP to Graph: one GET, one paged list, one $batch; tokens attached, errors classified.

A link Graph hands back (nextLink, deltaLink) is only ever followed on Graph's own origin,
so a token is never sent elsewhere. A 401 is answered once with a fresh token (MSAL's
cache may hold one Graph has revoked, or the clock may be off) before it counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters

from calsync.errors import Disposition, SourceError
from calsync.source.ews.errors import parse_retry_after
from calsync.source.graph.auth import TokenProvider
from calsync.source.graph.errors import GraphHttpError, classify, http_error, network_error

BATCH_LIMIT = 20  # requests per $batch call (Graph's limit)


class GraphClient:
    def __init__(self, base_url: str, tokens: TokenProvider, timeout: float = 60.0, pool: int = 16) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.version_path = parts.path  # "/v1.0": $batch sub-request urls are relative to it
        self.tokens = tokens
        self.timeout = timeout
        self._local = threading.local()
        self._pool = pool

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=self._pool)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def url(self, path_or_link: str) -> str:
        if path_or_link.startswith(("http://", "https://")):
            if not path_or_link.startswith(self.origin + "/"):
                raise SourceError(
                    "GraphLinkForeign",
                    Disposition.OPERATOR,
                    f"Graph returned a link outside {self.origin}: {path_or_link[:200]}",
                )
            return path_or_link
        return self.base_url + path_or_link

    def request(
        self,
        method: str,
        path_or_link: str,
        *,
        json: Any = None,
        prefer: Sequence[str] = (),
        classifier: Callable[[GraphHttpError, str], SourceError] | None = None,
    ) -> Any:
        """One call; the JSON answer, or None for an answer without a body (204). `classifier`
        turns an error answer into a catalogue entry where the generic one would mislead (a
        404 of a subscription is not a missing mailbox)."""
        url = self.url(path_or_link)
        for attempt in (0, 1):
            token = self.tokens.token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if prefer:
                headers["Prefer"] = ", ".join(prefer)
            try:
                response = self._session().request(method, url, headers=headers, json=json, timeout=self.timeout)
            except requests.RequestException as exc:
                raise network_error(exc) from exc
            if response.status_code == 401 and attempt == 0:
                self.tokens.invalidate()
                continue
            if response.status_code >= 400:
                raise (classifier or classify)(http_error(response), token)
            if response.status_code == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise SourceError(
                    "MalformedResponse",
                    Disposition.TRANSIENT,
                    f"Graph answered HTTP {response.status_code} with a body that is not JSON",
                ) from exc
        raise AssertionError("unreachable")

    def get(self, path_or_link: str, prefer: Sequence[str] = ()) -> Any:
        return self.request("GET", path_or_link, prefer=prefer)

    def pages(self, path: str, prefer: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Every item of a collection, following @odata.nextLink."""
        link: str | None = path
        while link:
            body = self.get(link, prefer)
            yield from body.get("value") or ()
            link = body.get("@odata.nextLink")

    def batch(self, paths: Sequence[str], prefer: Sequence[str] = ()) -> list[tuple[int, Any]]:
        """GET every path through $batch (20 per call); (status, body) per path, in order.

        A throttled or failing sub-request fails the whole call with its error: the port's
        callers retry a batch as a unit, and nothing partial is kept.
        """
        out: list[tuple[int, Any]] = []
        headers = {"Prefer": ", ".join(prefer)} if prefer else None
        for i in range(0, len(paths), BATCH_LIMIT):
            chunk = paths[i : i + BATCH_LIMIT]
            requests_ = [
                {"id": str(n), "method": "GET", "url": p, **({"headers": headers} if headers else {})}
                for n, p in enumerate(chunk)
            ]
            body = self.request("POST", "/$batch", json={"requests": requests_})
            answers = {str(r.get("id")): r for r in body.get("responses") or ()}
            worst: tuple[int, SourceError] | None = None
            for n in range(len(chunk)):
                r = answers.get(str(n))
                if r is None:
                    raise SourceError("MalformedResponse", Disposition.TRANSIENT, f"$batch answer lacks request {n}")
                status = int(r.get("status") or 0)
                if status in (200, 404):
                    out.append((status, r.get("body")))
                    continue
                err = (r.get("body") or {}).get("error") or {}
                retry = parse_retry_after(str((r.get("headers") or {}).get("Retry-After") or "")) or None
                error = classify(
                    GraphHttpError(status, str(err.get("code") or ""), str(err.get("message") or ""), retry),
                    self.tokens.token(),
                )
                if worst is None or (error.retry_after or 0) > (worst[1].retry_after or 0):
                    worst = (status, error)
            if worst is not None:
                raise worst[1]
        return out
