"""How long a failing batch waits before its retry.

Celery's own exponential helper with full jitter (a fleet that failed together does not
retry together), and one floor on top: never sooner than Exchange asked.
"""

from __future__ import annotations

from celery.utils.time import get_exponential_backoff_interval

MAX_RETRY_COUNTDOWN = 900.0  # below the broker's visibility timeout (celeryconfig)
BACKOFF_FACTOR = 5  # seconds: the first retry waits up to 5 s, the second up to 10 s, ...
MIN_WAIT = 1.0  # full jitter may draw 0; a retry in the same second only hits the same fault


def backoff_seconds(attempts: int, server_hint: float | None) -> float:
    """Exponential back-off with full jitter, never sooner than the server asked."""
    wait = get_exponential_backoff_interval(BACKOFF_FACTOR, min(attempts, 10), int(MAX_RETRY_COUNTDOWN), True)
    return min(MAX_RETRY_COUNTDOWN, max(float(wait), MIN_WAIT, server_hint or 0.0))
