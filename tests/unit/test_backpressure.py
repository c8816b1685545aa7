"""The dispatcher's backpressure rule (calsync.backpressure): pure, so every case is a table row."""

from __future__ import annotations

import itertools

import pytest

from calsync.backpressure import Observation, claim_limit, drain_rate, target_wait

CEILING = 200_000


def test_before_any_measurement_an_empty_queue_sets_no_limit_and_a_full_one_the_bootstrap() -> None:
    """A fresh start claims what is due in one tick, as without backpressure; a leftover queue does not grow past
    the bootstrap until the drain is measured."""
    assert claim_limit(depth=0, rate=None, ops_per_message=1, target_wait=60, ceiling=CEILING, bootstrap=64) == CEILING
    assert claim_limit(depth=14, rate=None, ops_per_message=1, target_wait=60, ceiling=CEILING, bootstrap=64) == 50
    assert claim_limit(depth=500, rate=None, ops_per_message=1, target_wait=60, ceiling=CEILING, bootstrap=64) == 1


def test_claims_fill_the_queue_up_to_what_drains_within_the_target_wait() -> None:
    # 10 messages/s for 60 s is 600 messages of room; 100 are queued; 500 messages of 1 operator.
    assert claim_limit(depth=100, rate=10.0, ops_per_message=1, target_wait=60, ceiling=CEILING) == 500
    # Chunks of 20 operators per message: the same room holds 20 times the operators.
    assert claim_limit(depth=100, rate=10.0, ops_per_message=20, target_wait=60, ceiling=CEILING) == 10_000
    # An empty queue: the whole room.
    assert claim_limit(depth=0, rate=10.0, ops_per_message=1, target_wait=60, ceiling=CEILING) == 600


def test_a_queue_deeper_than_the_fleet_drains_still_claims_the_floor() -> None:
    """Never starving: the most overdue operators still move every tick."""
    assert claim_limit(depth=5000, rate=10.0, ops_per_message=1, target_wait=60, ceiling=CEILING) == 1
    assert claim_limit(depth=5000, rate=10.0, ops_per_message=1, target_wait=60, ceiling=CEILING, floor=25) == 25
    assert claim_limit(depth=5000, rate=0.0, ops_per_message=1, target_wait=60, ceiling=CEILING, floor=0) == 1


def test_the_limit_never_exceeds_the_ceiling() -> None:
    assert claim_limit(depth=1, rate=1e6, ops_per_message=25, target_wait=60, ceiling=1000) == 1000
    assert claim_limit(depth=1, rate=None, ops_per_message=1, target_wait=60, ceiling=1000, floor=5000) == 1000


def test_a_fleet_that_keeps_up_ramps_up_from_a_low_estimate() -> None:
    """Each tick whose queue was emptied at least doubles what the next may claim."""
    tick, wait, limits = 10.0, 150.0, []
    at = 0.0
    obs = Observation(at=0.0, depth=4, ops_per_message=1, rate=None)  # a small first tick, all drained
    for _ in range(5):
        at += tick
        rate = drain_rate(obs, at, depth=0)
        limit = claim_limit(0, rate, 1, wait, CEILING, bootstrap=64)
        limits.append(limit)
        obs = Observation(at=at, depth=limit, ops_per_message=1, rate=rate)  # all published, all drained by next tick
    assert limits[0] == 60  # 0.4 messages/s measured x 150 s
    assert all(b >= 2 * a or b == CEILING for a, b in itertools.pairwise(limits))
    assert limits[-1] == CEILING


def test_drain_rate_is_unknown_before_a_first_observation() -> None:
    assert drain_rate(None, now=100.0, depth=50) is None


def test_drain_rate_measures_what_left_the_queue_and_smooths_it() -> None:
    prev = Observation(at=100.0, depth=300, ops_per_message=1, rate=None)
    assert drain_rate(prev, now=110.0, depth=200) == pytest.approx(10.0)
    prev = Observation(at=100.0, depth=300, ops_per_message=1, rate=20.0)
    assert drain_rate(prev, now=110.0, depth=200) == pytest.approx(15.0)  # half new sample, half history


def test_a_growing_queue_measures_no_drain() -> None:
    prev = Observation(at=100.0, depth=300, ops_per_message=1, rate=None)
    assert drain_rate(prev, now=110.0, depth=400) == 0.0


def test_an_emptied_queue_never_lowers_the_estimate() -> None:
    """A queue found empty only says the fleet kept up; it may drain far faster."""
    prev = Observation(at=100.0, depth=10, ops_per_message=1, rate=50.0)
    assert drain_rate(prev, now=110.0, depth=0) == 50.0
    prev = Observation(at=100.0, depth=1000, ops_per_message=1, rate=50.0)
    assert drain_rate(prev, now=110.0, depth=0) == pytest.approx(100.0)


def test_a_clock_that_did_not_move_keeps_the_previous_rate() -> None:
    prev = Observation(at=100.0, depth=10, ops_per_message=1, rate=7.0)
    assert drain_rate(prev, now=100.0, depth=5) == 7.0


def test_target_wait_is_half_the_lease_but_at_least_two_ticks() -> None:
    assert target_wait(lease_seconds=300, tick_seconds=10) == 150
    assert target_wait(lease_seconds=10, tick_seconds=10) == 20


def test_observation_round_trips_and_refuses_garbage() -> None:
    obs = Observation(at=1.5, depth=3, ops_per_message=2.5, rate=None)
    assert Observation.from_json(obs.to_json()) == obs
    assert Observation.from_json({"at": "x"}) is None
    assert Observation.from_json([1, 2]) is None
