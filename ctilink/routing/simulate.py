"""What-if routing: replay a trace and decide every arriving call against the database.

Theory of operation
-------------------
``arrivals`` replays traces exactly as ``ctilink replay`` does (``load_replay`` +
``ReplayAdapter`` feeding a ``Hub`` and its ``StateTracker``) and, for every call arriving
at the switch (a call whose first event is ``delivered``: at the route point / dialled
number, before any queue or agent), keeps the route request the switch would have made,
the event's time and a frozen copy of the live agents, queues and calls at that moment.

``simulate`` then asks a ``RoutingService`` (without audit) to decide each of them at
that time against that frozen state and the current database: queues, agents' skills,
customers and their history as they are now. Nothing is written anywhere.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL
from twisted.internet.task import Clock

from ctilink import db
from ctilink.config import RoutingConfig
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.records import AgentRecord, CallRecord, QueueRecord
from ctilink.routing.directory import CustomerDirectory
from ctilink.routing.service import Outcome, RoutingService
from ctilink.routing.static import RouteQuery


@dataclass(frozen=True)
class FrozenView:
    """A copy of the tracker's agents, queues and calls at one moment (a ``LiveView``)."""

    agents: Mapping[tuple[str, str], AgentRecord] = field(default_factory=dict)
    queues: Mapping[tuple[str, str], QueueRecord] = field(default_factory=dict)
    calls: Mapping[str, CallRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class Arrival:
    time: float
    query: RouteQuery
    view: FrozenView


@dataclass(frozen=True)
class Simulated:
    arrival: Arrival
    outcome: Outcome


def arrivals(
    paths: Sequence[str | os.PathLike[str]],
    *,
    switch: str = "replay",
    port: int | None = None,
    protocol: str = "auto",
) -> list[Arrival]:
    """Every call arriving at the switch in the traces (AMI or CSTA, see
    ``ctilink.adapters.factories.resolve_replay``), with the live state at that time."""
    from ctilink.adapters.factories import replay_adapter

    hub = Hub()
    tracker = hub.tracker
    found: list[Arrival] = []

    def consumer(event: ev.Event) -> None:
        if not isinstance(event, ev.Delivered):
            return
        call = tracker.calls.get(event.call_id)
        if call is None or call.first_seq != event.seq:
            return
        query = RouteQuery(
            switch=event.switch,
            call_id=event.call_id,
            calling_number=event.calling_number,
            called_number=event.called_number,
            route_point=event.device,
            data=dict(event.data),
        )
        agents, queues, calls = tracker.agents, tracker.queues, tracker.calls
        view = FrozenView(copy.deepcopy(agents), copy.deepcopy(queues), copy.deepcopy(calls))
        found.append(Arrival(event.time, query, view))

    adapter = replay_adapter(switch, paths, hub.publish, protocol=protocol, port=port)
    hub.subscribe(consumer)
    adapter.run_to_end()
    return found


async def simulate(
    url: str | URL,
    found: Sequence[Arrival],
    settings: RoutingConfig,
    *,
    tenants: Mapping[str, str] | None = None,
) -> list[Simulated]:
    """The decision for each arrival against the database at ``url`` (writes nothing)."""
    engine = db.create_engine(url)
    clock = Clock()
    try:
        directory = CustomerDirectory(engine, now=clock.seconds, history=10)
        service = RoutingService(settings, engine, directory, FrozenView(), clock, tenants=tenants)
        results = []
        for arrival in found:
            clock.rightNow = arrival.time
            outcome = await service.decide(arrival.query, arrival.time, arrival.view)
            results.append(Simulated(arrival, outcome))
        return results
    finally:
        await engine.dispose()


def describe(result: Simulated) -> dict[str, Any]:
    """One simulated decision as a plain mapping (what ``ctilink route simulate`` prints)."""
    outcome, query = result.outcome, result.arrival.query
    decision = outcome.decision
    return {
        "time": result.arrival.time,
        "call_id": query.call_id,
        "calling_number": query.calling_number,
        "called_number": query.called_number,
        "decision": (
            None
            if decision is None
            else {"queue": decision.queue, "agent": decision.agent, "priority": decision.priority}
        ),
        "rule": outcome.rule,
        "steps": outcome.steps,
        "candidates": outcome.candidates,
    }
