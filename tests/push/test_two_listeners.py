"""Two listener instances behind a load balancer share the work; kill -9 of one loses nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.distributed.stack import free_port, wait_for
from tests.push.balancer import Balancer
from tests.push.conftest import PushStack


def test_two_listeners_share_the_work_and_a_kill_9_loses_nothing(push_stack: Callable[..., PushStack]) -> None:
    port = free_port()
    ps = push_stack(mailboxes=4, appointments=8, listeners=2, proxy_port=port)
    backends = [ps.listener_ports["listener"], ps.listener_ports["listener2"]]
    assert port not in backends
    with Balancer(port, backends) as balancer:
        ps.wait_subscribed()
        targets = {email: ps.mirrored_item(email) for email in ps.operators}
        last: dict[str, str] = {}
        killed_at = None
        started = time.monotonic()
        n = 0
        # Users keep editing for 6 s; one listener is killed -9 in the middle.
        while time.monotonic() - started < 6.0:
            for email, item_id in targets.items():
                n += 1
                subject = f"edit {n}"
                ps.client.update_item(email, item_id, {"subject": subject})
                last[email] = subject
            if killed_at is None and time.monotonic() - started > 2.0:
                assert all(balancer.served[b] > 0 for b in backends), balancer.served
                ps.stack.kill("listener")
                killed_at = n
            time.sleep(0.1)
        assert killed_at is not None and n > killed_at + 8
        wait_for(
            lambda: all(ps.mirror_subject(email, targets[email]) == last[email] for email in ps.operators),
            30,
            "every last edit in the mirror",
            0.2,
        )
        # The survivor took over: it served connections after the kill, and no subscription died.
        assert not [r for r in ps.query("SELECT state FROM push_subscriptions") if r["state"] == "dead"]
        assert balancer.served[backends[1]] > 0
