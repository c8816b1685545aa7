"""Empty incremental SyncFolderItems answered per second by one simulator process (one core).

The clients send pre-built raw SOAP over keep-alive connections from several processes, so the
simulator, not the client, is what is measured. Target: >= 1,500/s.

    .venv/bin/python -m bench.simulator_bench [--seconds 5] [--clients 2] [--threads 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import threading
import time
from urllib.parse import urlparse

from lxml import etree

from calsync.simulator import SimulatorProcess, mailbox_email
from testkit import rawsoap

_M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"


def _first_states(url: str, user: str, password: str, mailboxes: int) -> list[tuple[str, bytes]]:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
    out = []
    for n in range(1, mailboxes + 1):
        email = mailbox_email(n)
        state = None
        while True:
            conn.request(
                "POST", parsed.path, rawsoap.sync_folder_items(email, state), rawsoap.headers(user, password, email)
            )
            root = etree.fromstring(conn.getresponse().read())
            state = root.findtext(f".//{_M}SyncState")
            if root.findtext(f".//{_M}IncludesLastItemInRange") == "true":
                break
        out.append((email, rawsoap.sync_folder_items(email, state)))
    return out


def _client(
    url: str, user: str, password: str, requests: list[tuple[str, bytes]], seconds: float, threads: int, q: mp.Queue
) -> None:
    parsed = urlparse(url)
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
        k = i
        while time.monotonic() < deadline:
            email, body = requests[k % len(requests)]
            k += threads
            conn.request("POST", parsed.path, body, rawsoap.headers(user, password, email))
            response = conn.getresponse()
            data = response.read()
            if response.status == 200 and b"<m:Changes/>" in data:
                counts[i] += 1
            else:
                errors[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    q.put((sum(counts), sum(errors)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="keep-alive connections per client process")
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--appointments", type=int, default=200)
    args = parser.parse_args()
    with SimulatorProcess(mailboxes=args.mailboxes, appointments=args.appointments, seed=1) as proc:
        prepared = _first_states(proc.ews_url, proc.user, proc.password, args.mailboxes)
        proc.client().reset_stats()
        q: mp.Queue = mp.Queue()
        procs = [
            mp.Process(
                target=_client, args=(proc.ews_url, proc.user, proc.password, prepared, args.seconds, args.threads, q)
            )
            for _ in range(args.clients)
        ]
        started = time.monotonic()
        for p in procs:
            p.start()
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.monotonic() - started
        ok = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        stats = proc.client().stats()
    rate = ok / args.seconds
    print(
        json.dumps(
            {
                "benchmark": "simulator_empty_incremental_sync",
                "requests_ok": ok,
                "errors": errors,
                "seconds": args.seconds,
                "wall_seconds": round(elapsed, 2),
                "per_second": round(rate, 1),
                "target_per_second": 1500,
                "meets_target": rate >= 1500,
                "server_counted": stats["requests"].get("SyncFolderItems", 0),
                "clients": f"{args.clients} processes x {args.threads} connections",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
