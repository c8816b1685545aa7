"""Subscribe requests against Microsoft's schema: ours validates, exchangelib 5.6's with a watermark does not."""

from __future__ import annotations

from typing import Any

import pytest
from exchangelib.services.subscribe import SubscribeToPush
from exchangelib.util import create_element

from calsync.errors import SourceError
from calsync.simulator import Simulator, SimulatorServer, generate
from calsync.simulator.ews import validation
from calsync.source.ews import subscribe
from calsync.source.ews.connection import EwsEndpoint
from calsync.source.ews.source import EwsSource


@pytest.fixture
def server() -> Any:
    sim = generate(1, 3, 5, validate=True)
    with SimulatorServer(sim) as srv:
        yield srv


def _source(srv: SimulatorServer) -> EwsSource:
    return EwsSource(EwsEndpoint(srv.ews_url, "Exchange2013", srv.user, srv.password))


def test_subscribe_with_and_without_watermark_validates(server: SimulatorServer) -> None:
    sim: Simulator = server.simulator
    email = sim.list_mailboxes()[0]["email"]
    source = _source(server)
    sub_id, mark = source.subscribe_push(email, "http://127.0.0.1:9/push/" + "s" * 20, None, 30)
    again, _ = source.subscribe_push(email, "http://127.0.0.1:9/push/" + "t" * 20, mark, 30)
    assert sub_id != again
    assert sim.get_stats()["schema_violations"] == 0
    assert sim.get_stats()["responses"].get("ErrorSchemaValidation", 0) == 0
    with pytest.raises(SourceError) as bad:
        source.subscribe_push(email, "http://127.0.0.1:9/push/" + "u" * 20, "bm90IGEgd2F0ZXJtYXJr", 30)
    assert bad.value.code == "ErrorInvalidWatermark"
    with pytest.raises(ValueError, match=r"1\.\.1440"):
        source.subscribe_push(email, "http://127.0.0.1:9/push/x", None, 0)


def test_exchangelibs_own_watermark_element_breaks_the_schema() -> None:
    """Why calsync.source.ews.subscribe builds its own payload (exchangelib 5.6 writes m:Watermark)."""
    assert validation.available()
    folder = create_element("t:DistinguishedFolderId", attrs={"Id": "calendar"})

    def payload(cls: type[SubscribeToPush]) -> Any:
        svc = cls.__new__(cls)
        svc._partial_payload = lambda folders, event_types: _request(cls, folder, event_types)  # type: ignore[method-assign]
        return svc.get_payload(folders=None, event_types=["CreatedEvent"], watermark="AQID", status_frequency=5,
                               url="http://x/y")  # fmt: skip

    assert validation.errors(payload(SubscribeToPush)) is not None
    assert validation.errors(payload(subscribe._SchemaValidSubscribeToPush)) is None


def _request(cls: type[SubscribeToPush], folder: Any, event_types: list[str]) -> Any:
    from exchangelib.services.common import add_xml_child

    elem = create_element(cls.subscription_request_elem_tag)
    ids = create_element("t:FolderIds")
    ids.append(folder)
    elem.append(ids)
    types = create_element("t:EventTypes")
    for t in event_types:
        add_xml_child(types, "t:EventType", t)
    elem.append(types)
    return elem
