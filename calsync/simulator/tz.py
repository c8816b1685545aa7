"""IANA <-> Windows time zone names, from exchangelib's CLDR tables (the names Exchange puts on the wire)."""

from __future__ import annotations

import datetime as dt
from functools import cache

from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP, MS_TIMEZONE_TO_IANA_MAP

from calsync.simulator.model import zone


@cache
def windows_zone(iana: str) -> str | None:
    entry = IANA_TO_MS_TIMEZONE_MAP.get(iana)
    if entry is None:
        return "UTC" if iana in ("UTC", "Etc/UTC") else None
    return str(entry[0])


@cache
def iana_zone(windows: str) -> str | None:
    return MS_TIMEZONE_TO_IANA_MAP.get(windows)


def date_with_offset(day: dt.date, tz_name: str) -> str:
    """xs:date with the zone's offset at local midnight, as Exchange writes recurrence dates."""
    midnight = dt.datetime.combine(day, dt.time(0, 0), tzinfo=zone(tz_name))
    offset = midnight.utcoffset() or dt.timedelta(0)
    if not offset:
        return f"{day.isoformat()}Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{day.isoformat()}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
