"""A private Redis Sentinel group for fault tests: one master, two replicas, three sentinels.

Every server runs on a free port with its own directory and is stopped at the end; nothing
touches the machine's shared Redis.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.distributed.stack import free_port, wait_for

MASTER_NAME = "calsync-test"


@dataclass
class SentinelGroup:
    data: Path
    redis_ports: list[int]
    sentinel_ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    appendonly: bool = False

    @property
    def url(self) -> str:
        """The sentinels as kombu, Celery and calsync read them."""
        return ";".join(f"sentinel://127.0.0.1:{p}/0" for p in self.sentinel_ports)

    def sentinel(self, i: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[i], socket_timeout=2, decode_responses=True)

    def master_port(self) -> int | None:
        for i in range(len(self.sentinel_ports)):
            try:
                addr = self.sentinel(i).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except redis.RedisError:
                continue
            if addr:
                return int(addr[1])
        return None

    def master(self) -> redis.Redis:
        port = self.master_port()
        assert port is not None
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def kill(self, port: int) -> None:
        """kill -9, as a crashed host would."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def start_redis(self, port: int, replica_of: int | None = None) -> None:
        """(Re)start the redis-server of `port` on its own directory (its append-only file, if any)."""
        d = self.data / f"redis-{port}"
        d.mkdir(exist_ok=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.appendonly else "no", "--dir", str(d)]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.procs[port] = _start(args, self.data / f"redis-{port}.log")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def sentinel_group(down_after_ms: int = 1000, appendonly: bool = False) -> Iterator[SentinelGroup]:
    """`down_after_ms`: how long the master may be silent before the sentinels fail it over (a
    restart quicker than that stays a restart); `appendonly`: a restarted server keeps its data."""
    data = Path(tempfile.mkdtemp(prefix="calsync-sentinel-"))
    group = SentinelGroup(data, [free_port() for _ in range(3)], [free_port() for _ in range(3)], appendonly=appendonly)
    master = group.redis_ports[0]
    try:
        for i, port in enumerate(group.redis_ports):
            group.start_redis(port, replica_of=master if i else None)
        for port in group.sentinel_ports:
            conf = data / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {data}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            )
            group.procs[port] = _start(["redis-server", str(conf), "--sentinel"], data / f"sentinel-{port}.log")

        def ready() -> bool:
            try:
                s = group.sentinel(0)
                replicas = s.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                others = s.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
                return len(replicas) == 2 and len(others) == 2
            except redis.RedisError:
                return False

        wait_for(ready, 30, "three sentinels that know the master's two replicas")
        yield group
    finally:
        group.stop()
        shutil.rmtree(data, ignore_errors=True)
