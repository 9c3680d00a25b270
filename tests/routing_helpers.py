"""Helpers of the routing tests: settings, directory data, live agents, a service, audits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.task import Clock

from ctilink import db
from ctilink.config import RoutingConfig, default_config
from ctilink.model.records import AgentRecord, CallRecord, Membership, QueueRecord, Waiting
from ctilink.model.states import AgentState
from ctilink.routing import admin
from ctilink.routing.audit import DecisionAudit, decisions_for
from ctilink.routing.directory import CustomerDirectory
from ctilink.routing.schema import interactions
from ctilink.routing.service import RoutingService
from ctilink.routing.static import RouteQuery
from ctilink.state import StateTracker

MONDAY_10 = 1_795_428_000.0  # 2026-11-23T10:00:00Z, a Monday
DAY = 86400.0
SWITCH = "pbx1"
TENANT = "acme"


def settings(**changes: Any) -> RoutingConfig:
    """The defaults with default queue "support" and, unless a test is about time, a
    generous lookup timeout (a loaded CI machine must not turn a test into a fallback)."""
    base = default_config(Path("/nonexistent")).routing
    generous = {"default_queue": "support", "budget_ms": 5000, "lookup_timeout_ms": 4000}
    return replace(base, **{**generous, **changes})


def write(url: str, *actions: Callable[[sa.Connection], object]) -> None:
    """Run admin functions in one transaction (blocking, like the CLI)."""
    engine = db.create_sync_engine(url)
    try:
        with engine.begin() as connection:
            for action in actions:
                action(connection)
    finally:
        engine.dispose()


def standard_directory(url: str, **queue: Any) -> None:
    """Tenant acme: queues support (800) and sales (803), four agents, three customers."""
    write(
        url,
        lambda c: admin.upsert_queue(
            c, TENANT, "support", numbers=["800"], handle_seconds=120, **queue
        ),
        lambda c: admin.upsert_queue(c, TENANT, "sales", numbers=["803"], skills={"sales": 3}),
        lambda c: admin.upsert_agent(c, TENANT, "6001", name="Alice", skills={"support": 5}),
        lambda c: admin.upsert_agent(c, TENANT, "6002", name="Bob", skills={"sales": 2}),
        lambda c: admin.upsert_agent(c, TENANT, "6003", name="Carol", skills={"sales": 5}),
        lambda c: admin.upsert_agent(c, TENANT, "6004", name="Dave", skills={"sales": 4}),
        lambda c: admin.upsert_customer(
            c, TENANT, ["ACME-001"], "Alice Customer", phones=["5551234567"], tier="gold"
        ),
        lambda c: admin.upsert_customer(
            c, TENANT, ["VIP-003", "VIP-003-B"], "Dana Vip", phones=["+1 555 444 6666"], tier="VIP"
        ),
        lambda c: admin.upsert_customer(
            c, TENANT, ["BOB-002"], "Bob Caller", phones=["5559876543"], preferred_agent="6002"
        ),
    )


def past_call(
    url: str, call_id: str, customer_account: str, agent: str | None, started: float
) -> None:
    """An answered (agent set) or abandoned interaction of a customer, stored."""

    def insert(connection: sa.Connection) -> None:
        from ctilink.routing.schema import customers

        customer = connection.execute(
            sa.select(customers.c.id).where(customers.c.account == customer_account)
        ).scalar_one()
        connection.execute(
            interactions.insert().values(
                call_id=call_id,
                switch=SWITCH,
                tenant=TENANT,
                customer_id=customer,
                direction="inbound",
                started=started,
                answered=started + 5 if agent else None,
                ended=started + 60,
                calling_number="+15551234567",
                called_number="800",
                queue="support",
                agent=agent,
                outcome="answered" if agent else "abandoned",
                data={},
            )
        )

    write(url, insert)


def live_agent(
    tracker: StateTracker,
    agent: str,
    state: AgentState = AgentState.READY,
    since: float = MONDAY_10 - 60,
    queues: Iterable[str] = ("support", "sales"),
    paused: Iterable[str] = (),
) -> AgentRecord:
    record = AgentRecord(SWITCH, agent, since, state, device=agent)
    record.queues = {q: Membership(q, paused=q in paused) for q in queues}
    tracker.agents[(SWITCH, agent)] = record
    return record


def waiting_calls(tracker: StateTracker, queue: str, count: int) -> None:
    record = tracker.queues.setdefault((SWITCH, queue), QueueRecord(SWITCH, queue))
    record.waiting = [Waiting(f"w{i}", MONDAY_10 - 30) for i in range(count)]


def live_call(tracker: StateTracker, call_id: str, **data: str) -> None:
    tracker.calls[call_id] = CallRecord(call_id, SWITCH, MONDAY_10, data=dict(data))


def query(
    call_id: str = "call-1",
    calling: str | None = "5551234567",
    called: str = "800",
    **data: str,
) -> RouteQuery:
    return RouteQuery(SWITCH, call_id, calling, called, called, data)


def make_service(
    url: str,
    make_engine: Callable[..., AsyncEngine],
    tracker: StateTracker,
    clock: Clock,
    config: RoutingConfig | None = None,
) -> tuple[RoutingService, DecisionAudit]:
    engine = make_engine(url)
    audit = DecisionAudit(make_engine(url), clock)
    directory = CustomerDirectory(engine, now=clock.seconds)
    service = RoutingService(
        config or settings(),
        engine,
        directory,
        tracker,
        clock,
        tenants={SWITCH: TENANT},
        audit=audit,
    )
    return service, audit


def clock_at(when: float = MONDAY_10) -> Clock:
    clock = Clock()
    clock.advance(when)
    return clock


def stored_decisions(url: str, call_id: str = "call-1") -> list[dict[str, Any]]:
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return decisions_for(connection, call_id)
    finally:
        engine.dispose()
