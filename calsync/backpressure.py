"""How much the dispatcher may claim in one tick when the sync queue is deeper than the fleet drains.

Without a limit, an overloaded fleet goes wrong in a loop: messages wait in the queue longer
than the lease, the dispatcher claims those operators again (new token, new message), and
the queue carries both, the stale copy costing a worker a round trip to find out. The
dispatcher therefore keeps the queue at most `target_wait` seconds deep (well under the
lease), measured with what it can see cheaply each tick: the queue's length (LLEN) and how
much of the queue the previous interval drained.

Pure: no Redis, no Postgres; calsync.tasks.dispatch reads the queue and stores the
`Observation` between ticks. Units: queue depth and drain rate in messages, claims in
operators (a poll chunk carries many operators per message, a chain one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Weight of the newest drain sample in the running estimate (the rest is history).
SMOOTHING = 0.5


@dataclass(frozen=True, slots=True)
class Observation:
    """What the dispatcher left behind at the end of a tick."""

    at: float  # seconds (one clock for every dispatcher: Redis TIME)
    depth: int  # messages in the sync queue right after this tick published
    ops_per_message: float  # operators per published message this tick (1 for chains, up to the chunk size)
    rate: float | None  # estimated messages drained per second; None until measured

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Observation | None:
        try:
            rate = data.get("rate")
            return cls(
                at=float(data["at"]),
                depth=int(data["depth"]),
                ops_per_message=max(1.0, float(data["ops_per_message"])),
                rate=None if rate is None else float(rate),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None  # unreadable (an older version, a hand edit): start measuring afresh


def drain_rate(prev: Observation | None, now: float, depth: int) -> float | None:
    """Messages per second the fleet took off the queue since the previous tick, smoothed.

    A queue found empty says only that the fleet kept up (it may drain much faster), so the
    estimate is then never lowered. The sample counts net consumption: follow-on batches
    the workers publish themselves make it an underestimate, which errs on the safe side.
    """
    if prev is None:
        return None
    elapsed = now - prev.at
    if elapsed <= 0:
        return prev.rate
    sample = max(0.0, prev.depth - depth) / elapsed
    if depth == 0:
        return sample if prev.rate is None else max(prev.rate, sample)
    if prev.rate is None:
        return sample
    return SMOOTHING * sample + (1 - SMOOTHING) * prev.rate


def claim_limit(
    depth: int,
    rate: float | None,
    ops_per_message: float,
    target_wait: float,
    ceiling: int,
    floor: int = 1,
    bootstrap: int = 64,
) -> int:
    """How many operators to claim: what fits in the queue within `target_wait` seconds of draining.

    Never fewer than `floor` (overdue and failing operators come first in the claim's order,
    so something always moves), never more than `ceiling`. Before any measurement (a fresh
    start, or the observation lost with Redis), an empty queue sets no limit (one tick then
    claims every due operator, as without backpressure) and a queue that holds something may
    grow to `bootstrap` messages until the next tick has measured the drain.
    """
    floor = max(1, min(floor, ceiling))
    if rate is None and depth <= 0:
        return ceiling
    room = (bootstrap if rate is None else rate * target_wait) - max(0, depth)
    if room <= 0:
        return floor
    return max(floor, min(ceiling, int(room * max(1.0, ops_per_message))))


def target_wait(lease_seconds: float, tick_seconds: float) -> float:
    """How long a message may wait in the queue: half the lease (so it is taken before the
    lease expires and the operator is claimed again), but at least two ticks."""
    return max(2 * tick_seconds, lease_seconds / 2)
