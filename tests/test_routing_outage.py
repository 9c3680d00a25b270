"""The routing service when its database is down: the default route, in time, logged once.

Outages are real: PostgreSQL on a closed port, through a TCP forwarder switched off and on,
or behind a port that accepts connections and never answers; SQLite as a file that cannot
be opened. The decisions' audit goes to a working database, so fallbacks are checked there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet import reactor

from ctilink.agi.server import FastAgiFactory
from ctilink.hub import Hub
from ctilink.model.events import RouteSelected
from ctilink.routing.audit import DecisionAudit
from ctilink.routing.directory import CustomerDirectory
from ctilink.routing.service import RoutingService
from ctilink.routing.static import RouteDecision
from ctilink.state import StateTracker
from ctilink.traces import read_trace
from tests.conftest import TRACES
from tests.routing_helpers import (
    SWITCH,
    TENANT,
    clock_at,
    live_agent,
    query,
    settings,
    standard_directory,
    stored_decisions,
)
from tests.routing_outages import BlackHole, Forwarder, closed_port_url
from tests.stores import until

pytest_plugins = ["tests.routing_fixtures"]

Engines = Callable[..., AsyncEngine]
DEFAULT = RouteDecision("support", None, 0, "fallback")
BUDGET = 0.3


def unreachable(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'ctilink.db'}"
    return closed_port_url(request.getfixturevalue("routing_pg_database"))


def service_on(
    url: str,
    audit_url: str,
    make_engine: Engines,
    tracker: StateTracker,
    clock: object,
    **config: object,
) -> RoutingService:
    engine = make_engine(url)
    return RoutingService(
        settings(**config),
        engine,
        CustomerDirectory(engine, now=clock.seconds),  # type: ignore[attr-defined]
        tracker,
        clock,  # type: ignore[arg-type]
        tenants={SWITCH: TENANT},
        audit=DecisionAudit(make_engine(audit_url), clock),  # type: ignore[arg-type]
    )


@pytest_twisted.ensureDeferred
async def test_an_unreachable_database_gets_the_default_route_in_budget_logged_once(
    routing_backend: str,
    routing_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    make_engine: Engines,
    logged_errors: list[logging.LogRecord],
) -> None:
    clock = clock_at()
    service = service_on(
        unreachable(routing_backend, tmp_path, request),
        routing_url,
        make_engine,
        StateTracker(),
        clock,
        budget_ms=300,
        lookup_timeout_ms=None,
    )
    started = time.monotonic()
    assert await service.route(query("call-1")) == DEFAULT
    assert time.monotonic() - started < BUDGET
    for n in range(2, 12):  # the next ones do not even wait for the database
        deferred = service.route(query(f"call-{n}"))
        assert deferred.called
        assert await deferred == DEFAULT
    assert service.fallbacks == 11 and service.failing

    assert len(logged_errors) == 1, [r.getMessage() for r in logged_errors]
    message = logged_errors[0].getMessage()
    assert message.startswith("routing: the customer database ")
    assert message.endswith(
        "; answering the default route (queue:support) until a lookup succeeds again"
    )
    assert ("unable to open database file" if routing_backend == "sqlite" else "refused") in message

    assert service.audit is not None
    await service.audit.flush()
    (row,) = stored_decisions(routing_url, "call-5")
    assert row["fallback"] is True and row["rule"] == "fallback"
    assert row["decision"] == {"queue": "support", "agent": None, "priority": 0}
    assert row["steps"] == [
        {"strategy": "database", "outcome": "unavailable", "detail": "database unavailable"}
    ]
    (first,) = stored_decisions(routing_url, "call-1")
    assert first["steps"][0]["detail"].startswith("OperationalError: ")
    await service.audit.close()


@pytest_twisted.ensureDeferred
async def test_an_outage_then_recovery_probes_with_backoff(
    pg_routing_url: str,
    routing_pg_database: str,
    make_engine: Engines,
    logged_errors: list[logging.LogRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    routing_url = pg_routing_url
    standard_directory(routing_url)
    forwarder = Forwarder(routing_pg_database)
    try:
        clock = clock_at()
        tracker = StateTracker()
        live_agent(tracker, "6001")
        service = service_on(forwarder.url, routing_url, make_engine, tracker, clock)
        assert (await service.route(query("call-1"))).rule == "longest_idle"

        await forwarder.down()
        assert await service.route(query("call-2", calling="5559876543")) == DEFAULT
        assert service.route(query("call-3", calling="5559876543")).called  # breaker open
        clock.advance(0.5)  # the first probe: still down
        assert await service.route(query("call-4", calling="5559876543")) == DEFAULT
        clock.advance(0.5)  # backoff doubled: not yet
        assert service.route(query("call-5", calling="5559876543")).called
        assert len(logged_errors) == 1

        await forwarder.up()
        clock.advance(0.5)
        with caplog.at_level(logging.WARNING, logger="ctilink.routing.service"):
            decision = await service.route(query("call-6", calling="5559876543"))
        assert decision == RouteDecision("support", "6001", 0, "longest_idle")
        assert not service.failing and service.fallbacks == 4
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            "routing: the customer database answers again after 1.5 s; 4 calls got the"
            " default route meanwhile"
        ]
        assert len(logged_errors) == 1
        # Write what the advanced clock started, before the next test empties the tables.
        assert service.audit is not None
        await service.audit.close()
    finally:
        await forwarder.close()


@pytest_twisted.ensureDeferred
async def test_a_hung_database_times_out_within_the_budget(
    pg_routing_url: str,
    routing_pg_database: str,
    make_engine: Engines,
    logged_errors: list[logging.LogRecord],
) -> None:
    routing_url = pg_routing_url
    hole = BlackHole(routing_pg_database)
    try:
        service = service_on(
            hole.url, routing_url, make_engine, StateTracker(), clock_at(), lookup_timeout_ms=100
        )
        started = time.monotonic()
        assert await service.route(query()) == DEFAULT
        elapsed = time.monotonic() - started
        assert 0.09 < elapsed < BUDGET, elapsed
        assert "no answer within 0.1 s" in logged_errors[0].getMessage()
        # One slow lookup is no outage: the next ones still try, until breaker_after (3)
        # timeouts in a row open the breaker.
        for n in (2, 3):
            deferred = service.route(query(f"call-{n}"))
            assert not deferred.called
            assert await deferred == DEFAULT
        assert service.route(query("call-4")).called
        assert service.fallbacks == 4
        assert len(logged_errors) == 1
        assert service.audit is not None
        await service.audit.close()
    finally:
        await hole.close()


@pytest_twisted.ensureDeferred
async def test_fastagi_gets_the_default_route_from_the_router_within_the_budget(
    routing_backend: str,
    routing_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    make_engine: Engines,
    logged_errors: list[logging.LogRecord],
) -> None:
    service = service_on(
        unreachable(routing_backend, tmp_path, request),
        routing_url,
        make_engine,
        StateTracker(),
        reactor,
        budget_ms=300,  # the defaults: lookups may take half of it
        lookup_timeout_ms=None,
    )
    hub = Hub()
    events: list[object] = []
    hub.subscribe(events.append)
    factory = FastAgiFactory(
        SWITCH,
        service,
        hub.publish,
        lambda uniqueid, channel: f"call-{uniqueid}",
        reactor,
        fallback=RouteDecision("other", None, 0, "default"),
        budget=BUDGET,
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        env = read_trace(TRACES / "fastagi-route.jsonl").sessions[0].records[0].data
        started = time.monotonic()
        commands = await _agi_session(port.getHost().port, env)  # type: ignore[attr-defined]
        elapsed = time.monotonic() - started
    finally:
        await port.stopListening()
    assert commands == [
        b'SET VARIABLE ROUTE_QUEUE "support"\n',
        b'SET VARIABLE ROUTE_PRIORITY "0"\n',
    ]
    assert elapsed < BUDGET
    assert factory.fallbacks == 0  # the router answered in time, the server did not step in
    assert service.fallbacks == 1
    (selected,) = [e for e in events if isinstance(e, RouteSelected)]
    assert (selected.destination, selected.rule) == ("queue:support", "fallback")
    assert len(logged_errors) == 1


async def _agi_session(port: int, env: bytes) -> list[bytes]:
    from ctilink.reactor import deferred

    async def talk() -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(env)
        commands = []
        while line := await asyncio.wait_for(reader.readline(), 5):
            commands.append(line)
            writer.write(b"200 result=1\n")
        writer.close()
        return commands

    return await deferred(talk())


@pytest_twisted.ensureDeferred
async def test_the_forwarder_alone_changes_nothing(
    pg_routing_url: str, routing_pg_database: str, make_engine: Engines
) -> None:
    """A sanity check of the happy path through the forwarder (no outage, no log)."""
    routing_url = pg_routing_url
    standard_directory(routing_url)
    forwarder = Forwarder(routing_pg_database)
    try:
        service = service_on(forwarder.url, routing_url, make_engine, StateTracker(), clock_at())
        for n in range(5):
            assert (await service.route(query(f"call-{n}"))).rule == "queue"
        await until(lambda: service.decisions == 5, "five decisions")
        assert service.audit is not None
        await service.audit.close()
    finally:
        await forwarder.close()
