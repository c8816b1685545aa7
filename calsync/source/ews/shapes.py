"""ItemShape elements built once per shape, not once per request.

exchangelib builds the `<m:ItemShape>` of every GetItem and SyncFolderItems request from
the field list: it expands each field for the server version, sorts them and renders a
FieldURI per field. For calsync's fixed list that was about a fifth of GetItem's CPU on
the worker, paid again for every pushed change. The element only depends on (tag, base
shape, fields, version), so it is built once for each and copied (lxml's deepcopy, in C)
into each request.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from exchangelib.services import get_item, sync_folder_hierarchy

# Distinct shapes are few (one per service and server version); the bound is a safety net.
MAX_SHAPES = 64

_lock = threading.Lock()
_built: dict[tuple[Any, ...], Any] = {}
_installed = False


def install() -> None:
    """Route the services calsync calls through the cache (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        cached = _cached(get_item.shape_element)
        for module in (get_item, sync_folder_hierarchy):
            module.shape_element = cached
        _installed = True


def _cached(build: Any) -> Any:
    def shape_element(tag: str, shape: str, additional_fields: Any, version: Any) -> Any:
        key = (tag, shape, frozenset(additional_fields or ()), repr(version))  # build and API version
        elem = _built.get(key)
        if elem is None:
            elem = build(tag=tag, shape=shape, additional_fields=additional_fields, version=version)
            if len(_built) < MAX_SHAPES:
                _built[key] = copy.deepcopy(elem)  # the request takes `elem` into its own tree
            return elem
        return copy.deepcopy(elem)

    return shape_element
