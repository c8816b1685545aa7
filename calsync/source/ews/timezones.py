"""Time zone ids from Exchange's answers, resolved without ever trusting them as file names.

exchangelib turns an item's StartTimeZone/EndTimeZone Id into a ZoneInfo: a Windows id through
its CLDR table, and anything containing "/" straight into ``ZoneInfo(id)``. An id such as
``../../etc/passwd`` thus reaches the tz database's file lookup (which raises ValueError in
the middle of parsing the GetItem answer, failing every item of the batch), and an unknown
Windows id silently becomes None, after which exchangelib takes an all-day item's dates in the
*worker's* local zone.

`install_time_zone_guard` replaces that one parser: only ids found in exchangelib's CLDR table
or in the installed tz database's list of keys are looked up; any other id becomes an
UTC zone marked as unresolved (so nothing downstream depends on the worker's zone) that
carries the id as Exchange sent it. calsync.source.ews.convert decides what such an item becomes.
"""

from __future__ import annotations

import re
import zoneinfo
from functools import cache
from typing import Any

from exchangelib.errors import UnknownTimeZone
from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.fields import TimeZoneField
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

# A Windows time zone id ("W. Europe Standard Time", "UTC+12", "Kamchatka Standard Time") or
# an IANA key ("Europe/Copenhagen", "America/Argentina/Buenos_Aires", "Etc/GMT+5").
_WINDOWS_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .()+,'-]{0,127}$")
_IANA_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9][A-Za-z0-9_+-]*){0,3}$")
ID_LIMIT = 128


def unresolved(raw_id: str | None) -> EWSTimeZone:
    """A zone id calsync did not look up: UTC rules, marked with the id Exchange sent.

    A fresh EWSTimeZone (never the shared cached UTC) so that exchangelib's own code, which
    checks the type of every zone it meets, takes it as one of its own.
    """
    zone = EWSTimeZone.no_cache("UTC")
    zone.ms_id = "UTC"
    zone.ms_name = ""
    zone.calsync_unresolved = (raw_id or "")[:ID_LIMIT]
    # No id at all is merely unknown; an id that is no time zone id (a path...) is malformed.
    zone.calsync_malformed = bool(raw_id) and not well_formed(raw_id)
    return zone


def unresolved_id(zone: object) -> tuple[str, bool] | None:
    """(the id as Exchange sent it, malformed?) for a zone `resolve` could not look up, else None."""
    raw = getattr(zone, "calsync_unresolved", None)
    return None if raw is None else (raw, bool(getattr(zone, "calsync_malformed", True)))


def well_formed(raw_id: str | None) -> bool:
    if not raw_id or len(raw_id) > ID_LIMIT or ".." in raw_id:
        return False
    return bool(_WINDOWS_ID.match(raw_id) or _IANA_KEY.match(raw_id))


@cache
def _iana_keys() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def resolve(raw_id: str | None) -> EWSTimeZone:
    """The zone for an Id from Exchange; an `unresolved` one for anything not known by name."""
    if raw_id:
        key = MS_TIMEZONE_TO_IANA_MAP.get(raw_id)
        if key is None and "/" in raw_id and raw_id in _iana_keys():
            key = raw_id  # Exchange sometimes sends the IANA key itself (exchangelib accepts it too)
        if key is not None and key in _iana_keys():
            try:
                return EWSTimeZone(key)
            except UnknownTimeZone:
                pass  # a tz database key with no Windows equivalent
    return unresolved(raw_id)


_installed = False
#: exchangelib's own parser, kept so a test can show what calsync does without the guard.
EXCHANGELIB_FROM_XML = TimeZoneField.from_xml


def install_time_zone_guard() -> None:
    """Make exchangelib parse StartTimeZone/EndTimeZone through `resolve` (idempotent)."""
    global _installed
    if _installed:
        return

    def from_xml(self: TimeZoneField, elem: Any, account: Any) -> Any:
        field_elem = elem.find(self.response_tag())
        if field_elem is None:
            return self.default
        return resolve(field_elem.get("Id") or field_elem.get("Name"))

    TimeZoneField.from_xml = from_xml
    _installed = True
