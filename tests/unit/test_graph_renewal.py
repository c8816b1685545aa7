"""The Graph renewal schedule as a pure function: no lapse, and no burst, over 10 days.

2,000 operators of a bulk import (consecutive ids) are subscribed in the same minute, the
worst case. Each is renewed when calsync.push.renewal says, with the lifetime calsync asks
for, over 10 simulated days. No subscription may lapse, and no 10-minute window may hold
more than its share: the renewals of one generation spread over the 20% band of the
lifetime (65-85%), so a window's share is N x 10 min / (0.2 x lifetime), and later
generations only spread wider.
"""

from __future__ import annotations

import collections
import datetime as dt
import math

from calsync.push import renewal

N = 2_000
DAYS = 10
WINDOW = dt.timedelta(minutes=10)
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def schedule(fraction_of: object = renewal.renew_fraction) -> tuple[list[dt.datetime], int]:
    """Every renewal instant in 10 days, and how many subscriptions lapsed (minute = 60 s)."""
    end = T0 + dt.timedelta(days=DAYS)
    instants: list[dt.datetime] = []
    lapsed = 0
    for op in range(1, N + 1):
        granted = T0
        expires = renewal.expiration(granted, 60.0)
        while True:
            at = granted + (expires - granted) * fraction_of(op)  # type: ignore[operator]
            if at >= end:
                break
            if at >= expires:
                lapsed += 1
                break
            instants.append(at)
            granted, expires = at, renewal.expiration(at, 60.0)
    return instants, lapsed


def busiest_window(instants: list[dt.datetime]) -> int:
    counts = collections.Counter((t - T0) // WINDOW for t in instants)
    return max(counts.values())


def share() -> int:
    return math.ceil(
        N * WINDOW.total_seconds() / 60 / ((renewal.SPREAD_HIGH - renewal.SPREAD_LOW) * renewal.LIFETIME_MINUTES)
    )


def test_ten_days_of_renewals_never_lapse_and_never_burst() -> None:
    instants, lapsed = schedule()
    assert lapsed == 0
    # Every subscription renewed at least 3 times in 10 days (4,200-minute lifetime, <= 85%).
    assert len(instants) >= 3 * N
    assert busiest_window(instants) <= share() + 2, (busiest_window(instants), share())


def test_a_fixed_fraction_would_burst() -> None:
    """The check above can fail: the same schedule without the spread renews everyone at once."""
    instants, lapsed = schedule(lambda op: 0.75)
    assert lapsed == 0
    assert busiest_window(instants) == N


def test_fraction_bounds_and_lifetime_limit() -> None:
    fractions = [renewal.renew_fraction(op) for op in range(1, 5001)]
    assert min(fractions) >= renewal.SPREAD_LOW and max(fractions) < renewal.SPREAD_HIGH
    assert renewal.LIFETIME_MINUTES < renewal.MAX_LIFETIME_MINUTES
    # Graph may grant less than asked: the fraction applies to what was granted.
    granted = T0 + dt.timedelta(hours=1)
    assert T0 < renewal.renew_at(7, T0, granted) < granted
    # A failing renewal is retried well before the expiry.
    assert renewal.retry_in(10, T0, T0 + dt.timedelta(minutes=10), 60.0) == 300.0
    assert renewal.retry_in(0, T0, None, 60.0) == 60.0


def test_expiration_round_trips_graphs_format() -> None:
    at = dt.datetime(2026, 12, 4, 11, 0, 5, 123456, tzinfo=dt.UTC)
    text = renewal.format_expiration(at)
    assert text == "2026-12-04T11:00:05.1234560Z"
    assert renewal.parse_expiration(text) == at
    assert renewal.parse_expiration("2026-12-04T11:00:05Z") == at.replace(microsecond=0)
    assert renewal.parse_expiration("2026-12-04T12:00:05.1234567+01:00") == at
