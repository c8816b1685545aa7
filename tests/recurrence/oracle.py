"""The occurrences of a simulator series, computed with python-dateutil's rrule alone.

Independent of calsync.sync.recurrence and of calsync.simulator.recurrence: it reads the
simulator's admin JSON (the truth a user sees in Outlook) and turns the EWS pattern into an
RFC 5545 rule. Where Exchange differs from RFC 5545 the rule says so explicitly:

* an absolute day a month lacks falls on the month's last day: BYMONTHDAY=28..d with
  BYSETPOS=-1 picks exactly min(d, length of month);
* relative patterns (Second Tuesday, Last Weekday) are BYDAY sets with BYSETPOS;
* occurrences keep the wall-clock time in the series' zone (an aware DTSTART keeps its wall
  time in rrule); an all-day occurrence is a run of local dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule

UTC = dt.UTC
DAYS = {
    "Monday": [rrule.MO], "Tuesday": [rrule.TU], "Wednesday": [rrule.WE], "Thursday": [rrule.TH],
    "Friday": [rrule.FR], "Saturday": [rrule.SA], "Sunday": [rrule.SU],
    "Day": [rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU],
    "Weekday": [rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR],
    "WeekendDay": [rrule.SA, rrule.SU],
}  # fmt: skip
WKST = {"Monday": rrule.MO, "Tuesday": rrule.TU, "Wednesday": rrule.WE, "Thursday": rrule.TH,
        "Friday": rrule.FR, "Saturday": rrule.SA, "Sunday": rrule.SU}  # fmt: skip
SETPOS = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")  # fmt: skip


def _monthday(day: int) -> dict[str, Any]:
    if day <= 28:
        return {"bymonthday": day}
    return {"bymonthday": list(range(28, day + 1)), "bysetpos": -1}


def rule_of(recurrence: dict[str, Any], dtstart: dt.datetime) -> rrule.rrule:
    pattern, rng = recurrence["pattern"], recurrence["range"]
    ptype = pattern["type"]
    kw: dict[str, Any] = {"dtstart": dtstart, "interval": int(pattern.get("interval", 1))}
    freq: Any
    if ptype == "Daily":
        freq = rrule.DAILY
    elif ptype == "Weekly":
        freq = rrule.WEEKLY
        kw["byweekday"] = [d for name in pattern["days_of_week"] for d in DAYS[name]]
        kw["wkst"] = WKST[pattern.get("first_day_of_week", "Sunday")]
    elif ptype == "AbsoluteMonthly":
        freq = rrule.MONTHLY
        kw.update(_monthday(int(pattern["day_of_month"])))
    elif ptype == "RelativeMonthly":
        freq = rrule.MONTHLY
        kw.update(byweekday=DAYS[pattern["days_of_week"]], bysetpos=SETPOS[pattern["day_of_week_index"]])
    elif ptype == "AbsoluteYearly":
        freq = rrule.YEARLY
        kw["interval"] = 1
        kw["bymonth"] = MONTHS.index(pattern["month"]) + 1
        kw.update(_monthday(int(pattern["day_of_month"])))
    else:
        freq = rrule.YEARLY
        kw["interval"] = 1
        kw.update(
            bymonth=MONTHS.index(pattern["month"]) + 1,
            byweekday=DAYS[pattern["days_of_week"]],
            bysetpos=SETPOS[pattern["day_of_week_index"]],
        )
    if rng["type"] == "Numbered":
        kw["count"] = int(rng["count"])
    elif rng["type"] == "EndDate":
        end = dt.date.fromisoformat(rng["end_date"][:10])
        kw["until"] = dt.datetime.combine(end, dt.time(23, 59, 59), tzinfo=dtstart.tzinfo)
    return rrule.rrule(freq, **kw)


@dataclass
class Instance:
    """One occurrence the CRM must show."""

    original_start: dt.datetime  # UTC
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    start_date: dt.date | None
    end_date: dt.date | None
    exception: dict[str, Any] | None = None  # the simulator's modified-occurrence JSON
    fields: dict[str, Any] = field(default_factory=dict)


def _utc(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).astimezone(UTC)


def instances(item: dict[str, Any], until: dt.datetime | None = None) -> list[Instance]:
    """Every occurrence of a series (exceptions applied, deletions removed), up to `until`."""
    tz = ZoneInfo(item["timezone"])
    start, end = dt.datetime.fromisoformat(item["start"]).astimezone(tz), dt.datetime.fromisoformat(item["end"])
    first_day = dt.date.fromisoformat(item["recurrence"]["range"]["start_date"][:10])
    all_day = item["is_all_day"]
    days = (end.astimezone(tz).date() - start.date()).days if all_day else 0
    length = end - start
    dtstart = dt.datetime.combine(first_day, start.time() if not all_day else dt.time(), tzinfo=tz)
    deleted = {_utc(d) for d in item["deleted_occurrences"]}
    modified = {_utc(m["original_start"]): m for m in item["modified_occurrences"]}
    # Iterate past `until` far enough to meet every exception, wherever it was moved from.
    limit = max([until, *(o + dt.timedelta(days=1) for o in modified)]) if until is not None else None
    out: list[Instance] = []
    for local in rule_of(item["recurrence"], dtstart):
        if all_day:
            day = local.date()
            last = day + dt.timedelta(days=days)
            s = dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(UTC)
            inst = Instance(s, s, dt.datetime.combine(last, dt.time(), tzinfo=tz).astimezone(UTC), day, last)
        else:
            s = local.replace(fold=0).astimezone(UTC)
            inst = Instance(s, s, s + length, None, None)
        if limit is not None and inst.original_start > limit:
            break
        if inst.original_start in deleted:
            continue
        mod = modified.get(inst.original_start)
        if mod is not None:
            inst.exception = mod
            inst.start, inst.end = _utc(mod["start"]), _utc(mod["end"])
            if all_day:
                inst.start_date = inst.start.astimezone(tz).date()
                inst.end_date = inst.end.astimezone(tz).date()
        out.append(inst)
    return out


def in_window(inst: Instance, cutoff: dt.datetime, horizon: dt.datetime) -> bool:
    """The README's rule: an occurrence shows when it ends in the past window and starts before the
    horizon; an exception shows from the past window on, whatever its start."""
    if inst.exception is not None:
        return inst.end >= cutoff
    return inst.end >= cutoff and inst.start < horizon


def occurrence_key(series_id: str, original_start: dt.datetime) -> str:
    return f"{series_id}@{original_start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
