"""The faults a soak injects, one function each, in a registry so that more can be plugged in.

Each injector does its fault and returns a one-line description for the timeline; faults
with a duration (an Exchange answer that misbehaves for a while) hold it themselves and heal
before returning, so the soak injects one fault at a time and the timeline shows its span.

Redis is a Sentinel group (soak/world.py): a restart keeps the master (back within the
sentinels' down-after time, with its append-only file); a failover moves it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil

from tests.distributed.sentinels import MASTER_NAME
from tests.distributed.stack import wait_for

if TYPE_CHECKING:
    from soak.world import World

Injector = Callable[["World"], str]
FAULTS: dict[str, Injector] = {}


def fault(name: str) -> Callable[[Injector], Injector]:
    """Register an injector under `name` (the name the timeline and the report use)."""

    def add(fn: Injector) -> Injector:
        FAULTS[name] = fn
        return fn

    return add


def _exchange_fault(world: World, seconds: float, **spec: object) -> str:
    client = world.admin()
    added = client.add_fault(**spec)
    try:
        time.sleep(seconds)
    finally:
        client.delete_fault(int(added["id"]))
    return f"{spec['kind']} for {seconds:.0f}s ({spec.get('rate', 1)} of requests)"


def _hold(world: World) -> float:
    return world.rng.uniform(*world.fault_hold)


@fault("exchange_503")
def exchange_503(world: World) -> str:
    return _exchange_fault(world, _hold(world), kind="http_503", rate=0.4, retry_after=1)


@fault("exchange_backoff")
def exchange_backoff(world: World) -> str:
    """ErrorServerBusy with a BackOffMilliseconds hint: every worker of the account must wait."""
    return _exchange_fault(world, _hold(world), kind="server_busy_message", rate=0.3, back_off_ms=2000)


@fault("exchange_truncated")
def exchange_truncated(world: World) -> str:
    return _exchange_fault(world, _hold(world), kind="truncated_body", rate=0.3)


@fault("exchange_slow")
def exchange_slow(world: World) -> str:
    return _exchange_fault(world, _hold(world), kind="latency", rate=0.5, latency_ms=2500, jitter_ms=1500)


@fault("mailbox_outage")
def mailbox_outage(world: World) -> str:
    """One mailbox answers 503 until calsync gives it up (notification_frequency_minutes): one
    failure email, then, once healed, one recovery email. Bounded by a few retry periods."""
    mailbox = world.rng.choice(world.mailboxes)
    client = world.admin()
    added = client.add_fault(kind="http_503", mailbox=mailbox, retry_after=1)
    started = time.monotonic()
    limit = world.notification_minutes * 60 + 240
    try:
        while time.monotonic() - started < limit and world.status_of(mailbox) != "failed":
            time.sleep(2)
        failed = world.status_of(mailbox) == "failed"
        # Healed only after its failure email went out: calsync sends none for an episode that
        # recovered first (nothing to recover from in anyone's inbox), and a notify task held up
        # by the other faults (a killed worker, a Postgres restart) once let the mailbox heal
        # a few seconds after it was marked failed, with no email owed any more.
        emailed = time.monotonic() + 90
        while failed and time.monotonic() < emailed and not world.failure_emailed(mailbox):
            time.sleep(1)
        time.sleep(2)
    finally:
        client.delete_fault(int(added["id"]))
    world.outages.append(mailbox)
    verdict = "marked failed" if failed else "never marked failed"
    return f"{mailbox} answered 503 for {time.monotonic() - started:.0f}s ({verdict})"


def _supervised_child(world: World, name: str, command: str = "celery") -> psutil.Process | None:
    """The process under a supervisor loop (kill -9 hits it, not the supervisor)."""
    try:
        children = psutil.Process(world.stack.procs[name].pid).children()
    except psutil.NoSuchProcess:
        return None
    return next((c for c in children if command in " ".join(c.cmdline())), None)


@fault("kill_worker")
def kill_worker(world: World) -> str:
    name = world.rng.choice(world.killable_workers)
    child = _supervised_child(world, name)
    if child is None:
        return f"{name}: no celery process to kill (restarting)"
    os.kill(child.pid, signal.SIGKILL)
    return f"kill -9 {name} (pid {child.pid})"


@fault("kill_beat_leader")
def kill_beat_leader(world: World) -> str:
    leader = world.beat_leader()
    child = _supervised_child(world, leader) if leader else None
    if child is None:
        return "no beat leader found"
    os.kill(child.pid, signal.SIGKILL)
    return f"kill -9 beat leader {leader} (pid {child.pid})"


@fault("kill_listener")
def kill_listener(world: World) -> str:
    """The push listener dies mid-notification; its supervisor starts it again a second later.
    Exchange retries what got no answer (the simulator: after 30 s, then once a StatusFrequency)."""
    name = world.rng.choice(world.listeners)
    child = _supervised_child(world, name, command="listener serve")
    if child is None:
        return f"{name}: no listener process to kill (restarting)"
    os.kill(child.pid, signal.SIGKILL)
    return f"kill -9 {name} (pid {child.pid})"


@fault("redis_restart")
def redis_restart(world: World) -> str:
    port = world.restart_redis()
    return f"Redis master {port} killed and started again (append-only file kept; still the master)"


@fault("sentinel_failover")
def sentinel_failover(world: World) -> str:
    """The sentinels move the master: in turn, the master is killed (-9, as a lost host; started
    again a little later, it rejoins as a replica) or an operator asks for it (SENTINEL FAILOVER).
    Writes of the master's last moments may not have reached the replica that takes over."""
    group = world.redis
    old = group.master_port()
    if old is None:
        raise RuntimeError("no sentinel names a master")
    killed = world.failovers % 2 == 0
    world.failovers += 1
    started = time.monotonic()
    if killed:
        group.kill(old)
    else:
        group.sentinel(world.rng.randrange(len(group.sentinel_ports))).execute_command(
            "SENTINEL", "FAILOVER", MASTER_NAME
        )
    wait_for(lambda: group.master_port() not in (None, old), 90, "the sentinels' failover", interval=0.2)
    took = time.monotonic() - started
    new = group.master_port()
    if killed:
        group.start_redis(old, replica_of=new)
    how = "master killed (-9), restarted as a replica" if killed else f"SENTINEL FAILOVER {MASTER_NAME}"
    return f"{how}: master {old} -> {new} after {took:.1f}s"


@fault("postgres_restart")
def postgres_restart(world: World) -> str:
    world.restart_postgres()
    return "Postgres stopped (immediate) and started again"


def deck(names: list[str], rng: object) -> list[str]:
    """Every registered fault once, in a random order: a short soak still meets most kinds."""
    order = list(names)
    rng.shuffle(order)  # type: ignore[attr-defined]
    return order
