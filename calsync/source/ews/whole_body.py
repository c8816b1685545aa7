"""Hand exchangelib's XML parser the answer's body in one piece, not one byte at a time.

exchangelib parses every answer from ``response.iter_content()``, whose default chunk size is
one byte. calsync's HTTP adapter has already read the whole body (to check it is complete), so
requests slices it byte by byte: 8 million Python iterations for an 8 MB answer (a meeting with
33,000 attendees), about two thirds of the time of its GetItem. This gives the parser the body
that is already in memory, as bytes.
"""

from __future__ import annotations

from typing import Any

from exchangelib.services.common import EWSService

_installed = False


def install_whole_body_parser() -> None:
    """Wrap EWSService._get_soap_parts (idempotent); answers not yet read are left as they are."""
    global _installed
    if _installed:
        return
    original = EWSService._get_soap_parts.__func__

    def _get_soap_parts(cls: type[EWSService], response: Any) -> Any:
        body = getattr(response, "_content", None)
        if getattr(response, "_content_consumed", False) and isinstance(body, bytes):
            # exchangelib.util.to_xml parses bytes from a BytesIO; a generator, even of one
            # chunk, goes through a reader that copies the rest of the body on every read.
            response.iter_content = lambda *args, **kwargs: body
        return original(cls, response)

    EWSService._get_soap_parts = classmethod(_get_soap_parts)
    _installed = True
