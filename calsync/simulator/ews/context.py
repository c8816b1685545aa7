"""What an operation handler gets: the simulator, the resolved mailbox and the parsed request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from calsync.simulator.ews.render import RenderContext
from calsync.simulator.ews.soap import NS_M, NS_T, Request

if TYPE_CHECKING:
    from calsync.simulator.core import Simulator
    from calsync.simulator.mailbox import Mailbox

M = f"{{{NS_M}}}"
T = f"{{{NS_T}}}"


class Fault(Exception):
    """Answer the whole request with this SOAP fault (HTTP 500), as Exchange does."""

    def __init__(self, payload: bytes) -> None:
        super().__init__("soap fault")
        self.payload = payload


@dataclass(slots=True)
class Context:
    sim: Simulator
    mailbox: Mailbox
    request: Request
    #: The schema version the response is written for (RequestServerVersion, capped by the server).
    version_at_least_2010: bool = True

    @property
    def render(self) -> RenderContext:
        return RenderContext(self.mailbox.calendar_folder_id, self.mailbox.folder_change_key)

    @property
    def owner(self) -> str:
        return self.mailbox.email


def folder_target(elem) -> tuple[str, str | None]:
    """('distinguished', name) or ('id', folder id) for a DistinguishedFolderId/FolderId element."""
    tag = elem.tag
    if tag == f"{T}DistinguishedFolderId":
        return "distinguished", elem.get("Id")
    return "id", elem.get("Id")


def is_calendar(ctx: Context, elem) -> bool:
    kind, value = folder_target(elem)
    if kind == "distinguished":
        return value == "calendar"
    return value == ctx.mailbox.calendar_folder_id
