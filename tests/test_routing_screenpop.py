"""Screen pops (``ctilink.routing.screenpop``) on SQLite and PostgreSQL: published when a call
is delivered to an agent or routed to one, from the cache at once or after the lookup,
unknown callers as unknown, invalidated when the directory changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy.ext.asyncio import AsyncEngine

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState
from ctilink.model.wire import event_to_wire
from ctilink.routing import admin
from ctilink.routing.directory import CallerKey, CustomerDirectory
from ctilink.routing.numbers import NumberNormalizer
from ctilink.routing.screenpop import ScreenPopper
from tests._schemas import validate_wire
from tests.routing_helpers import (
    DAY,
    MONDAY_10,
    SWITCH,
    TENANT,
    clock_at,
    make_service,
    past_call,
    standard_directory,
    write,
)
from tests.routing_outages import closed_port_url
from tests.stores import aio, until

pytest_plugins = ["tests.routing_fixtures"]

Engines = Callable[..., AsyncEngine]


class Desk:
    """A hub with the state tracker, a screen popper subscribed last, and what it saw."""

    def __init__(self, url: str, make_engine: Engines) -> None:
        self.clock = clock_at()
        self.hub = Hub()
        self.seen: list[ev.Event] = []
        self.hub.subscribe(self.seen.append)
        self.directory = CustomerDirectory(make_engine(url), now=self.clock.seconds)
        self.pops = ScreenPopper(
            self.hub.publish,
            self.directory,
            self.hub.tracker,
            self.clock,
            normalizer=NumberNormalizer("US"),
            tenants={SWITCH: TENANT},
            history=2,
        )
        self.hub.subscribe(self.pops)

    def call_arrives(
        self, call_id: str = "c1", caller: str | None = "5551234567", **data: str
    ) -> None:
        common = self._common(call_id, caller, data)
        self.hub.publish(
            ev.Delivered(**common, time=MONDAY_10, device="800", connection_state=ALERTING)
        )
        self.hub.publish(
            ev.Queued(
                **common, time=MONDAY_10 + 1, device="support", queue="support",
                connection_state=LocalConnectionState.QUEUED, position=1,
            )
        )  # fmt: skip

    def offered(
        self,
        call_id: str = "c1",
        caller: str | None = "5551234567",
        agent: str = "6001",
        **data: str,
    ) -> ev.Event:
        return self.hub.publish(
            ev.Delivered(
                **self._common(call_id, caller, data), time=MONDAY_10 + 7.5, device=agent,
                agent=agent, queue="support", connection_state=ALERTING,
            )
        )  # fmt: skip

    def cleared(self, call_id: str = "c1") -> None:
        self.hub.publish(
            ev.CallCleared(**self._common(call_id, None, {}), time=MONDAY_10 + 20, device=None,
                           connection_state=None)
        )  # fmt: skip

    @staticmethod
    def _common(call_id: str, caller: str | None, data: dict[str, str]) -> dict[str, Any]:
        return {
            "switch": SWITCH,
            "call_id": call_id,
            "calling_number": caller,
            "called_number": "800",
            "data": data,
        }

    def popped(self) -> list[ev.ScreenPop]:
        return [e for e in self.seen if isinstance(e, ev.ScreenPop)]


ALERTING = LocalConnectionState.ALERTING


@pytest_twisted.ensureDeferred
async def test_a_call_delivered_to_an_agent_pops_the_customer_after_the_lookup(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    past_call(routing_url, "past-1", "ACME-001", "6002", MONDAY_10 - 3 * DAY)
    past_call(routing_url, "past-2", "ACME-001", None, MONDAY_10 - DAY)
    past_call(routing_url, "past-3", "ACME-001", "6003", MONDAY_10 - 9 * DAY)
    desk = Desk(routing_url, make_engine)
    desk.call_arrives(IVR_CHOICE="2")
    assert desk.popped() == []  # not for the route point nor the queue
    delivered = desk.offered(IVR_CHOICE="2")
    assert desk.popped() == []  # not cached: the lookup runs
    await until(lambda: len(desk.popped()) == 1, "the pop")
    (pop,) = desk.popped()
    assert desk.seen.index(pop) > desk.seen.index(delivered)
    assert pop.seq > delivered.seq
    assert (pop.call_id, pop.device, pop.agent, pop.queue) == ("c1", "6001", "6001", "support")
    assert pop.connection_state is None and pop.time == delivered.time
    assert pop.data == {"IVR_CHOICE": "2"}
    assert pop.customer is not None
    customer = dict(pop.customer)
    assert customer["name"] == "Alice Customer"
    assert customer["known"] is True and customer["identified_by"] == "number"
    assert customer["number"] == "+15551234567" and customer["account"] == "ACME-001"
    assert customer["wait_seconds"] == 6.5
    assert [i["call_id"] for i in customer["interactions"]] == ["past-2", "past-1"]  # history=2
    assert customer["interactions"][1] == {
        "call_id": "past-1",
        "started": "2026-11-20T10:00:00.000Z",
        "answered": "2026-11-20T10:00:05.000Z",
        "ended": "2026-11-20T10:01:00.000Z",
        "queue": "support",
        "agent": "6002",
        "outcome": "answered",
    }
    validate_wire(event_to_wire(pop))


@pytest_twisted.ensureDeferred
async def test_a_cached_caller_pops_synchronously_right_after_the_delivered_event(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    desk = Desk(routing_url, make_engine)
    # The routing service looked the caller up for the route request (by IVR account).
    await aio(desk.directory.lookup(CallerKey(TENANT, "VIP-003", "+15551234567")))
    desk.call_arrives(CUSTOMER_ACCOUNT="VIP-003")
    delivered = desk.offered(CUSTOMER_ACCOUNT="VIP-003")
    (pop,) = desk.popped()  # published inside the delivered event's consumer call
    assert desk.seen[-2:] == [delivered, pop] and pop.seq == delivered.seq + 1
    assert pop.customer is not None
    assert pop.customer["name"] == "Dana Vip" and pop.customer["identified_by"] == "account"
    assert desk.pops.synchronous == 1
    desk.offered()  # delivered again to the same device (a re-ring): no second pop
    desk.offered(agent="6002", CUSTOMER_ACCOUNT="VIP-003")  # another agent: a pop for them
    assert [p.device for p in desk.popped()] == ["6001", "6002"]
    validate_wire(event_to_wire(pop))


@pytest_twisted.ensureDeferred
async def test_unknown_and_anonymous_callers_pop_as_unknown(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    desk = Desk(routing_url, make_engine)
    desk.call_arrives("c1", "011 33 1 45 67 89 01")
    desk.offered("c1", "011 33 1 45 67 89 01")
    desk.call_arrives("c2", "anonymous")
    desk.offered("c2", "anonymous")  # nothing to look up: at once
    await until(lambda: len(desk.popped()) == 2, "two pops")
    by_call = {p.call_id: p.customer for p in desk.popped()}
    assert by_call["c1"] == {
        "known": False,
        "number": "+33145678901",
        "identified_by": None,
        "wait_seconds": 6.5,
    }
    assert by_call["c2"] == {
        "known": False,
        "number": "anonymous",
        "identified_by": None,
        "wait_seconds": 6.5,
    }
    for pop in desk.popped():
        validate_wire(event_to_wire(pop))


@pytest_twisted.ensureDeferred
async def test_a_route_selected_naming_an_agent_pops_before_the_phone_rings(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    desk = Desk(routing_url, make_engine)
    desk.call_arrives()
    desk.hub.publish(
        ev.RouteSelected(
            switch=SWITCH, time=MONDAY_10 + 2, call_id="c1", device="800",
            calling_number="5551234567", called_number="800", connection_state=None,
            destination="agent:6001", priority=0, rule="last_agent",
        )
    )  # fmt: skip
    await until(lambda: len(desk.popped()) == 1, "the pop")
    desk.offered()
    assert len(desk.popped()) == 1  # the delivered event at 6001 does not pop again
    assert desk.popped()[0].device == "6001"


@pytest_twisted.ensureDeferred
async def test_no_pop_for_a_call_that_ended_during_the_lookup(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    desk = Desk(routing_url, make_engine)
    desk.call_arrives()
    desk.offered()
    desk.cleared()
    key = CallerKey(TENANT, None, "+15551234567")
    await until(lambda: desk.directory.peek(key) is not None, "the lookup")
    assert desk.popped() == []


@pytest_twisted.ensureDeferred
async def test_directory_changes_invalidate_cached_callers(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    service, _ = make_service(routing_url, make_engine, Hub().tracker, clock_at())
    desk = Desk(routing_url, make_engine)
    desk.directory = service.directory  # as in the daemon: one directory for both
    desk.pops.directory = service.directory
    await aio(service.refresh())
    await aio(service.directory.lookup(CallerKey(TENANT, None, "+15551234567")))
    desk.call_arrives()
    desk.offered()
    assert desk.popped()[-1].customer["name"] == "Alice Customer"  # type: ignore[index]

    write(  # an admin command (any process) renames her
        routing_url,
        lambda c: admin.upsert_customer(
            c, TENANT, ["ACME-001"], "Alice Renamed", phones=["5551234567"]
        ),
    )
    assert await aio(service.refresh())  # what the runtime runs every refresh_seconds
    desk.call_arrives("c2")
    desk.offered("c2")
    await until(lambda: len(desk.popped()) == 2, "the second pop")
    assert desk.popped()[-1].customer["name"] == "Alice Renamed"  # type: ignore[index]
    assert not await aio(service.refresh())  # nothing changed since


@pytest_twisted.ensureDeferred
async def test_a_database_outage_pops_the_number_marked_unavailable(
    routing_pg_database: str,
    make_engine: Engines,
    caplog: pytest.LogCaptureFixture,
) -> None:
    desk = Desk(closed_port_url(routing_pg_database), make_engine)
    with caplog.at_level(logging.WARNING, logger="ctilink.routing.screenpop"):
        desk.call_arrives()
        desk.offered()
        desk.call_arrives("c2")
        desk.offered("c2")
        await until(lambda: len(desk.popped()) == 2, "two pops")
    for pop in desk.popped():
        assert pop.customer == {
            "known": False,
            "number": "+15551234567",
            "identified_by": None,
            "wait_seconds": 6.5,
            "unavailable": True,
        }
        validate_wire(event_to_wire(pop))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("screen pops: customer lookups fail (")
