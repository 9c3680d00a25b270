"""``CtilinkService`` in this process: how its parts are put together."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ctilink import db
from ctilink.config import EventSocketConfig, ReplayOptions, SwitchConfig, default_config
from ctilink.daemon import CtilinkService
from ctilink.model import events as ev
from ctilink.routing.service import RoutingService
from tests.aio import aio_test, deferred_result
from tests.conftest import TRACES


@aio_test
async def test_routes_go_to_the_routing_service_and_pops_follow_their_delivered_event(
    tmp_path: Path,
) -> None:
    from twisted.internet import reactor

    base = default_config(tmp_path)
    config = replace(
        base,
        event_socket=EventSocketConfig(listen="tcp:port=0:interface=127.0.0.1", auth="none"),
        routing=replace(base.routing, default_queue="support"),
        switches=(
            SwitchConfig(
                name="pbx",
                kind="replay",
                tenant="default",
                replay=ReplayOptions(
                    traces=(TRACES / "inbound-answered.jsonl",), loop=False, speed=20, port=None
                ),
            ),
        ),
    )
    db.upgrade(config.database.connect_url())
    service = CtilinkService(config, reactor)
    seen: list[ev.Event] = []
    service.hub.subscribe(seen.append)  # a consumer like any other, subscribed first
    service.startService()
    try:
        await deferred_result(service.ready)
        assert service.routing is not None
        assert isinstance(service.routes.router, RoutingService)
        await deferred_result(service.adapters[0].finished())
    finally:
        await deferred_result(service.stopService())
    types = [event.TYPE for event in seen]
    alerted = next(
        i for i, e in enumerate(seen) if isinstance(e, ev.Delivered) and e.device == "6001"
    )
    # Every consumer sees events in seq order; the pop follows the agent's delivered and
    # comes before the call is answered.
    assert [event.seq for event in seen] == sorted(event.seq for event in seen)
    assert alerted < types.index("screen_pop") < types.index("established")
