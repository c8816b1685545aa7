"""A mail-server simulator that the real exchangelib syncs against: a protocol-neutral mailbox core
(this package) with protocol front-ends beside it (``ews/``; see STATUS.md to add one).

Python API: :class:`Simulator` (in-memory state and admin operations), :func:`generate`
(deterministic mailboxes from a seed), :class:`SimulatorServer` (in-process HTTP server on a free
port), :class:`SimulatorProcess` (the same in a subprocess) and :class:`SimulatorClient` (the JSON
admin API over HTTP). See STATUS.md.
"""

from calsync.simulator.client import SimulatorClient, SimulatorClientError
from calsync.simulator.core import DEFAULT_ACCOUNT, Simulator
from calsync.simulator.generator import generate, mailbox_email
from calsync.simulator.process import SimulatorProcess
from calsync.simulator.server import EWS_PATH, SimulatorServer

__all__ = [
    "DEFAULT_ACCOUNT",
    "EWS_PATH",
    "Simulator",
    "SimulatorClient",
    "SimulatorClientError",
    "SimulatorProcess",
    "SimulatorServer",
    "generate",
    "mailbox_email",
]
