"""The EWS front-end: ``POST /EWS/Exchange.asmx`` with basic auth, Exchange's throttling and faults.

Concurrency accounting and the faults live here because they need the request and its socket;
the neutral ones (latency, HTTP 503/429, a reset connection, a cut or garbled body) come from
calsync/simulator/frontend.py, the Exchange-only ones from ews/faults.py.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from aiohttp import web

from calsync.simulator import frontend
from calsync.simulator.core import Simulator
from calsync.simulator.ews import dispatch, validation
from calsync.simulator.ews.faults import ERROR_KINDS
from calsync.simulator.ews.soap import NS_SOAP, SchemaError, schema_fault, server_busy_fault
from calsync.simulator.faults import Fault

EWS_PATH = "/EWS/Exchange.asmx"
XML = "text/xml; charset=utf-8"
# Checked in this order when several faults fire for one request.
_ERROR_KINDS = (*frontend.HTTP_ERROR_KINDS, *ERROR_KINDS)
_MALFORMED = (
    b'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="' + NS_SOAP.encode() + b'">'
    b"<s:Header/><Oops>not an EWS response</Oops></s:Envelope>"
)


# An item's own Start or End (not an occurrence's, a deleted occurrence's or an original start).
_FRACTIONAL = re.compile(rb"(<t:(?:Start|End)>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z(</t:(?:Start|End)>)")


def _xml(payload: bytes, status: int = 200) -> web.Response:
    return web.Response(body=payload, status=status, headers={"Content-Type": XML})


class EwsEndpoint:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.auth = frontend.BasicAuth(sim.service_accounts)
        self.rng = random.Random(sim.seed)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        data = await request.read()
        account = self.auth.account(request.headers.get("Authorization"))
        if account is None:
            sim.stats.response("http_401")
            return web.Response(
                status=401, text="401 - Unauthorized", headers={"WWW-Authenticate": 'Basic realm="simulator"'}
            )
        try:
            req = dispatch.parse(sim, data)
            email = dispatch.target_mailbox(req, request.headers.get("X-AnchorMailbox"))
            with sim.lock:
                mailbox = dispatch.resolve(sim, req, email)
        except SchemaError as exc:
            sim.stats.response("ErrorSchemaValidation")
            return _xml(schema_fault(exc), 500)
        except dispatch.Fault as exc:
            sim.stats.response("fault")
            return _xml(exc.payload, 500)
        operation = req.operation
        sim.stats.request(operation, mailbox.email)
        is_sync = operation == "SyncFolderItems"
        _, concurrent_account, concurrent_syncs = sim.stats.enter(mailbox.email, account, is_sync)
        try:
            return await self._serve(
                request, dispatch.Prepared(req, mailbox), account, concurrent_account, concurrent_syncs
            )
        finally:
            sim.stats.leave(mailbox.email, account, is_sync)

    async def _serve(
        self, request: web.Request, prepared: dispatch.Prepared, account: str, concurrent_account: int, syncs: int
    ) -> web.StreamResponse:
        sim = self.sim
        operation = prepared.request.operation
        email = prepared.mailbox.email
        faults = sim.faults
        if faults:
            for limit in faults.limits("account_concurrency_limit", email, operation, account):
                if concurrent_account > limit.limit:
                    sim.fault_fired(limit)
                    return _xml(dispatch.connection_count_exceeded(sim, operation))
            if operation == "SyncFolderItems":
                for limit in faults.limits("concurrent_sync_limit", email, operation, account):
                    if syncs > limit.limit:
                        sim.fault_fired(limit)
                        return _xml(server_busy_fault(limit.back_off_ms), 500)
        fired = faults.draw(email, operation, account) if faults else []
        await frontend.delay(sim, fired, self.rng)
        error = next((f for k in _ERROR_KINDS for f in fired if f.kind == k), None)
        if error is not None:
            return await self._error(request, error, prepared)
        payload = dispatch.run(sim, prepared)
        for fault in fired:
            if fault.kind == "truncated_body":
                sim.fault_fired(fault)
                return _xml(frontend.truncated(payload))
            if fault.kind == "malformed_body":
                sim.fault_fired(fault)
                return _xml(_MALFORMED)
            if fault.kind == "fractional_seconds":
                sim.fault_fired(fault)
                payload = _FRACTIONAL.sub(rb"\1.000Z\2", payload)
        if sim.validate:
            problem = validation.response_errors(payload)
            if problem is not None:
                sim.stats.violation(f"{operation}: {problem}")
        return _xml(payload)

    async def _error(self, request: web.Request, fault: Fault, prepared: dispatch.Prepared) -> web.StreamResponse:
        sim = self.sim
        operation = prepared.request.operation
        sim.fault_fired(fault)
        kind = fault.kind
        if kind == "connection_reset":
            return await frontend.reset_connection(request, dispatch.run(sim, prepared), XML)
        if kind in ("http_503", "http_429"):
            return frontend.http_error(fault)
        if kind == "server_busy_fault":
            return _xml(server_busy_fault(fault.back_off_ms), 500)
        if kind == "server_busy_message":
            return _xml(dispatch.server_busy_message(sim, operation, fault.back_off_ms))
        return _xml(dispatch.invalid_sync_state(sim))


def routes(sim: Simulator) -> Iterable[web.AbstractRouteDef]:
    """The EWS front-end's routes; exchangelib sometimes lower-cases the path, so both spellings answer."""
    endpoint = EwsEndpoint(sim)

    async def ews(request: web.Request) -> web.StreamResponse:
        return await endpoint(request)

    return [web.post(EWS_PATH, ews), web.post(EWS_PATH.lower(), ews)]
