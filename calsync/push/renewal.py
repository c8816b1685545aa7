"""When a Graph subscription is asked to expire, and when calsync renews it.

Graph lets an Outlook subscription live at most 4,230 minutes; calsync asks for a little less
(LIFETIME_MINUTES), so that a clock a few minutes ahead of Graph's is not refused with 400.
It renews each subscription after a fraction of the lifetime Graph granted, between 65% and
85%: late enough that a renewal is rare, early enough that a day of failing renewals (Graph
down, throttled, the app's secret expired) is retried for hours before the subscription lapses.

The fraction is fixed per operator and spread with Fibonacci hashing (the golden-ratio
sequence): the operators of a bulk import (consecutive ids), all subscribed in the same
minute, renew evenly over the whole 20% band rather than in one burst, and any run of
consecutive ids fills the band almost uniformly (a random jitter would leave clumps). Each
renewal counts from the moment it happened, so the spread only widens over time.

All durations are in simulated minutes (env().push_minute_seconds real seconds each; 60 in
production), as the simulator's Graph front-end counts them.
"""

from __future__ import annotations

import datetime as dt

MAX_LIFETIME_MINUTES = 4230  # Graph's limit for Outlook resources without resource data
LIFETIME_MINUTES = 4200  # asked for: 30 minutes of margin against clock skew
SPREAD_LOW, SPREAD_HIGH = 0.65, 0.85
_GOLDEN_64 = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_MASK_64 = (1 << 64) - 1


def renew_fraction(operator_id: int) -> float:
    """The operator's share of a lifetime after which its subscription is renewed, in [0.65, 0.85)."""
    phase = ((operator_id * _GOLDEN_64) & _MASK_64) / float(1 << 64)
    return SPREAD_LOW + (SPREAD_HIGH - SPREAD_LOW) * phase


def expiration(now: dt.datetime, minute_seconds: float, minutes: float = LIFETIME_MINUTES) -> dt.datetime:
    """The expirationDateTime to ask for (a real instant: `minutes` scaled minutes from now)."""
    return now + dt.timedelta(seconds=minutes * minute_seconds)


def renew_at(operator_id: int, granted_at: dt.datetime, expires_at: dt.datetime) -> dt.datetime:
    """When to renew a subscription Graph granted at `granted_at` until `expires_at` (Graph may
    grant less than was asked: the fraction applies to what it granted)."""
    return granted_at + (expires_at - granted_at) * renew_fraction(operator_id)


def retry_in(failures: int, now: dt.datetime, expires_at: dt.datetime | None, minute_seconds: float) -> float:
    """Seconds before a failed renewal is tried again: 1, 2, 4 ... 64 scaled minutes, and never
    later than halfway to the expiry, so several attempts fit before the subscription lapses."""
    wait = minute_seconds * float(2 ** min(max(failures, 0), 6))
    if expires_at is not None:
        left = (expires_at - now).total_seconds()
        wait = min(wait, max(left / 2, 0.0))
    return max(wait, 0.05)


def format_expiration(value: dt.datetime) -> str:
    """Graph's DateTimeOffset form, in UTC with 7 fractional digits."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_expiration(text: str) -> dt.datetime:
    """An expirationDateTime from Graph (up to 7 fractional digits, Z or an offset)."""
    value = text.strip().replace("Z", "+00:00")
    if "." in value:
        head, rest = value.split(".", 1)
        n = len(rest) - len(rest.lstrip("0123456789"))
        digits, tail = rest[:n], rest[n:]
        value = f"{head}.{(digits + '000000')[:6]}{tail}"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
