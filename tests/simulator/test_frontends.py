"""A second protocol front-end mounts beside EWS and serves the same mailboxes.

The probe front-end below is what calsync/simulator/STATUS.md ("Adding a front-end") tells
the Graph front-end to do: routes over the one Simulator, its own operation name registered
with the fault table, the neutral HTTP faults from calsync.simulator.frontend.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

import requests
from aiohttp import web

from calsync.simulator import (
    Simulator,
    SimulatorClient,
    SimulatorClientError,
    SimulatorServer,
    faults,
    frontend,
    generate,
)
from calsync.simulator.server import FRONTENDS
from testkit import rawsoap

EMAIL = "user0001@example.com"
PROBE_OPERATION = "ProbeListItems"


def probe_routes(sim: Simulator) -> Iterable[web.AbstractRouteDef]:
    faults.register(operations=(PROBE_OPERATION,))
    rng = random.Random(0)

    async def items(request: web.Request) -> web.StreamResponse:
        email = request.match_info["email"]
        sim.stats.request(PROBE_OPERATION, email)
        fired = sim.faults.draw(email, PROBE_OPERATION, None)
        await frontend.delay(sim, fired, rng)
        for fault in fired:
            if fault.kind in frontend.HTTP_ERROR_KINDS:
                sim.fault_fired(fault)
                return frontend.http_error(fault)
        with sim.lock:
            mailbox = sim.find_mailbox(email)
            if mailbox is None:
                return web.json_response({"error": "no such mailbox"}, status=404)
            return web.json_response(sorted(item.subject for item in mailbox.items.values()))

    return [web.get("/probe/{email}/items", items)]


def test_a_second_frontend_serves_the_same_mailboxes_with_neutral_faults() -> None:
    sim = generate(1, 3, seed=7)
    with SimulatorServer(sim, frontends={**FRONTENDS, "probe": probe_routes}) as server:
        admin = SimulatorClient(server.base_url)
        admin.create_item(
            EMAIL,
            {"subject": "Made through /admin", "start": "2030-03-04T09:00:00Z", "end": "2030-03-04T10:00:00Z"},
        )
        probe_url = f"{server.base_url}/probe/{EMAIL}/items"
        subjects = requests.get(probe_url, timeout=10).json()
        assert subjects == sorted(i["subject"] for i in sim.list_items(EMAIL))
        assert len(subjects) == 4 and "Made through /admin" in subjects

        # EWS is still mounted on the same server and sees the same four items.
        answer = requests.post(
            server.ews_url,
            data=rawsoap.sync_folder_items(EMAIL),
            headers=rawsoap.headers(server.user, server.password, EMAIL),
            timeout=10,
        )
        assert answer.status_code == 200
        assert len(re.findall(r"<t:Create>", answer.text)) == 4

        # The front-end's own operation name is accepted by the admin API; a neutral fault hits it alone.
        admin.add_fault(kind="http_503", operation=PROBE_OPERATION, count=1, retry_after=9)
        refused = requests.get(probe_url, timeout=10)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "9"
        assert requests.get(probe_url, timeout=10).json() == subjects
        stats = admin.stats()
        assert stats["faults_injected"] == {"http_503": 1}
        assert stats["requests"][PROBE_OPERATION] == 3  # the refused request counts too

        try:
            admin.add_fault(kind="http_503", operation="NoSuchOperation")
        except SimulatorClientError as exc:
            assert exc.status == 400 and "operation must be one of" in str(exc)
        else:
            raise AssertionError("an unknown operation name must be refused")


def test_the_default_server_mounts_ews_and_admin_only() -> None:
    with SimulatorServer(generate(1, 1, seed=1)) as server:
        assert requests.get(f"{server.base_url}/probe/{EMAIL}/items", timeout=10).status_code == 404
        assert requests.get(server.admin_url + "/stats", timeout=10).status_code == 200
        assert requests.post(server.ews_url, data=b"", timeout=10).status_code == 401
