"""Each routing strategy with its decision and its audit record, on SQLite and PostgreSQL.

A real database holds the directory (``tests/routing_helpers.standard_directory``); the
state tracker's agents and queues are set up by hand; the audit is flushed and read back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest_twisted
from sqlalchemy.ext.asyncio import AsyncEngine

from ctilink.model.states import AgentState
from ctilink.routing.static import RouteDecision
from ctilink.state import StateTracker
from tests.routing_helpers import (
    DAY,
    MONDAY_10,
    clock_at,
    live_agent,
    live_call,
    make_service,
    past_call,
    query,
    settings,
    standard_directory,
    stored_decisions,
    waiting_calls,
)
from tests.stores import aio

pytest_plugins = ["tests.routing_fixtures"]

Engines = Callable[..., AsyncEngine]


async def route_and_audit(
    url: str, make_engine: Engines, tracker: StateTracker, q: Any = None, **config: Any
) -> tuple[RouteDecision, dict[str, Any]]:
    service, audit = make_service(url, make_engine, tracker, clock_at(), settings(**config))
    q = q or query()
    decision = await service.route(q)
    await audit.flush()
    (row,) = stored_decisions(url, q.call_id)
    assert row["rule"] == decision.rule
    assert row["decision"] == {
        "queue": decision.queue,
        "agent": decision.agent,
        "priority": decision.priority,
    }
    assert row["fallback"] is False
    assert row["latency_ms"] >= 0
    return decision, row


def step(row: dict[str, Any], strategy: str) -> tuple[str, str]:
    found = [s for s in row["steps"] if s["strategy"] == strategy]
    assert len(found) == 1, row["steps"]
    return found[0]["outcome"], found[0]["detail"]


@pytest_twisted.ensureDeferred
async def test_closed_hours_go_to_the_closed_destination(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(
        routing_url,
        hours={d: [("08:00", "09:30"), ("13:00", "18:00")] for d in range(5)},
        closed_destination="closed-msg",
    )
    tracker = StateTracker()
    live_agent(tracker, "6001")
    decision, row = await route_and_audit(routing_url, make_engine, tracker)
    assert decision == RouteDecision("closed-msg", None, 0, "closed")
    assert step(row, "business_hours") == (
        "decided",
        "support: closed mon 10:00 UTC: to closed-msg",
    )
    assert [s["strategy"] for s in row["steps"]] == ["target", "business_hours"]
    assert row["candidates"] == []
    assert row["request"]["calling_number"] == "5551234567"


@pytest_twisted.ensureDeferred
async def test_holidays_close_an_open_queue_and_hours_in_the_queue_time_zone(
    routing_url: str, make_engine: Engines
) -> None:
    # 10:00 UTC is 11:00 in Paris: inside 10:30-12:00, but 2026-11-23 is a holiday.
    standard_directory(
        routing_url,
        hours={0: [("10:30", "12:00")]},
        timezone="Europe/Paris",
        holidays={date(2026, 11, 23): "Founders' day"},
    )
    decision, row = await route_and_audit(
        routing_url, make_engine, StateTracker(), closed_destination="after-hours"
    )
    assert decision == RouteDecision("after-hours", None, 0, "closed")
    assert step(row, "business_hours")[1] == (
        "support: holiday 2026-11-23 (Founders' day): to after-hours"
    )


@pytest_twisted.ensureDeferred
async def test_open_hours_in_the_queue_time_zone_let_the_call_through(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url, hours={0: [("10:30", "12:00")]}, timezone="Europe/Paris")
    decision, row = await route_and_audit(
        routing_url, make_engine, StateTracker(), closed_destination="after-hours"
    )
    assert decision.queue == "support" and decision.rule == "queue"
    assert step(row, "business_hours") == ("open", "support: open mon 10:30-12:00")


@pytest_twisted.ensureDeferred
async def test_identify_by_account_from_the_ivr_before_the_number(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    tracker = StateTracker()
    # Dana's second account typed into the IVR, calling from Alice's number.
    q = query(calling="5551234567", CUSTOMER_ACCOUNT="VIP-003-B")
    decision, row = await route_and_audit(routing_url, make_engine, tracker, q)
    assert step(row, "identify") == (
        "found",
        "customer 2 Dana Vip (account VIP-003) by account VIP-003-B",
    )
    assert decision == RouteDecision("support", None, 10, "vip")  # Dana's tier


@pytest_twisted.ensureDeferred
async def test_identify_by_the_account_in_the_call_data_then_by_number(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    tracker = StateTracker()
    live_call(tracker, "call-1", CUSTOMER_ACCOUNT="BOB-002")  # the AMI side's channel variable
    _, row = await route_and_audit(routing_url, make_engine, tracker)
    assert step(row, "identify")[1] == "customer 3 Bob Caller (account BOB-002) by account BOB-002"

    q = query("call-2", calling="+1 (555) 123-4567")
    _, row = await route_and_audit(routing_url, make_engine, tracker, q)
    assert step(row, "identify")[1] == (
        "customer 1 Alice Customer (account ACME-001) by number +15551234567"
    )


@pytest_twisted.ensureDeferred
async def test_unknown_and_anonymous_callers(routing_url: str, make_engine: Engines) -> None:
    standard_directory(routing_url)
    decision, row = await route_and_audit(
        routing_url, make_engine, StateTracker(), query(calling="5550000000")
    )
    assert decision == RouteDecision("support", None, 0, "queue")
    assert step(row, "identify") == ("unknown", "no customer with number +15550000000")
    _, row = await route_and_audit(
        routing_url, make_engine, StateTracker(), query("call-2", calling="<unknown>")
    )
    assert step(row, "identify") == ("unknown", "no number")


@pytest_twisted.ensureDeferred
async def test_vip_tier_raises_the_queue_priority(routing_url: str, make_engine: Engines) -> None:
    standard_directory(routing_url)
    decision, row = await route_and_audit(
        routing_url,
        make_engine,
        StateTracker(),
        query(calling="5554446666", called="803"),
        tier_priority=(("gold", 5), ("vip", 20)),
        default_priority=3,
    )
    assert decision == RouteDecision("sales", None, 20, "vip")
    assert step(row, "vip") == ("raised", "tier VIP: priority 20")
    assert step(row, "target") == ("queue", "sales (serves 803)")


@pytest_twisted.ensureDeferred
async def test_last_agent_gets_the_customer_when_ready(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    past_call(routing_url, "old", "ACME-001", "6004", MONDAY_10 - 20 * DAY)
    past_call(routing_url, "recent", "ACME-001", "6002", MONDAY_10 - 3 * DAY)
    past_call(routing_url, "abandoned", "ACME-001", None, MONDAY_10 - DAY)
    tracker = StateTracker()
    live_agent(tracker, "6001", since=MONDAY_10 - 600)  # idle longer
    live_agent(tracker, "6002")
    decision, row = await route_and_audit(routing_url, make_engine, tracker)
    assert decision == RouteDecision("support", "6002", 0, "last_agent")
    assert step(row, "last_agent") == ("decided", "6002 served 3.0 days ago: ready")
    assert row["candidates"] == [
        {"strategy": "last_agent", "agent": "6002", "score": 3.0, "available": True, "why": "ready"}
    ]


@pytest_twisted.ensureDeferred
async def test_last_agent_busy_or_too_long_ago_falls_through(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    past_call(routing_url, "recent", "ACME-001", "6002", MONDAY_10 - 3 * DAY)
    tracker = StateTracker()
    live_agent(tracker, "6001", since=MONDAY_10 - 600)
    live_agent(tracker, "6002", state=AgentState.BUSY)
    decision, row = await route_and_audit(routing_url, make_engine, tracker)
    assert decision == RouteDecision("support", "6001", 0, "longest_idle")
    assert step(row, "last_agent") == ("unavailable", "6002 served 3.0 days ago: busy")

    tracker.agents[("pbx1", "6002")].state = AgentState.READY
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query("call-2"), last_agent_days=2
    )
    assert decision.rule == "longest_idle"
    assert step(row, "last_agent") == ("passed", "6002 served 3.0 days ago (> 2)")


@pytest_twisted.ensureDeferred
async def test_preferred_agent(routing_url: str, make_engine: Engines) -> None:
    standard_directory(routing_url)
    tracker = StateTracker()
    live_agent(tracker, "6001", since=MONDAY_10 - 600)
    live_agent(tracker, "6002")
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query(calling="5559876543")
    )
    assert decision == RouteDecision("support", "6002", 0, "preferred_agent")
    assert step(row, "preferred_agent") == ("decided", "6002 is preferred: ready")

    live_agent(tracker, "6002", paused=["support"])
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query("call-2", calling="5559876543")
    )
    assert decision.agent == "6001"
    assert step(row, "preferred_agent") == ("unavailable", "6002 is preferred: paused in support")


@pytest_twisted.ensureDeferred
async def test_skills_pick_the_best_qualified_agent(routing_url: str, make_engine: Engines) -> None:
    standard_directory(routing_url)
    tracker = StateTracker()
    live_agent(tracker, "6002", since=MONDAY_10 - 900)  # longest idle, but sales 2 < 3
    live_agent(tracker, "6003", since=MONDAY_10 - 10)  # sales 5
    live_agent(tracker, "6004", since=MONDAY_10 - 300)  # sales 4
    live_agent(tracker, "6001", queues=["support"])  # not in sales
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query(calling="5550000000", called="803")
    )
    assert decision == RouteDecision("sales", "6003", 0, "skills")
    assert step(row, "skills") == ("decided", "6003 scores 5 on sales>=3")
    assert [(c["agent"], c["score"], c["available"]) for c in row["candidates"]] == [
        ("6003", 5, True),
        ("6004", 4, True),
        ("6002", 2, False),
    ]
    assert row["candidates"][2]["why"] == "lacks sales"

    tracker.agents[("pbx1", "6003")].state = AgentState.NOT_READY
    tracker.agents[("pbx1", "6004")].state = AgentState.BUSY
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query("call-2", calling="5550000000", called="803")
    )
    # 6002 is ready and idle longest, but unqualified: never picked by longest_idle either.
    assert decision == RouteDecision("sales", None, 0, "queue")
    assert step(row, "skills") == ("none", "no available agent meets sales>=3")
    assert step(row, "longest_idle") == ("none", "no available agent")


@pytest_twisted.ensureDeferred
async def test_longest_idle_ready_agent(routing_url: str, make_engine: Engines) -> None:
    standard_directory(routing_url)
    tracker = StateTracker()
    live_agent(tracker, "6001", since=MONDAY_10 - 30)
    live_agent(tracker, "6002", since=MONDAY_10 - 400)
    live_agent(tracker, "6003", since=MONDAY_10 - 900, paused=["support"])
    live_agent(tracker, "6004", since=MONDAY_10 - 2000, state=AgentState.WORKING_AFTER_CALL)
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query(calling="5550000000")
    )
    assert decision == RouteDecision("support", "6002", 0, "longest_idle")
    assert step(row, "longest_idle") == ("decided", "6002 idle 400 s")
    assert [(c["agent"], c["score"]) for c in row["candidates"]] == [
        ("6002", 400.0),
        ("6001", 30.0),
    ]


@pytest_twisted.ensureDeferred
async def test_overflow_when_the_estimated_wait_is_too_long(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url, overflow_queue="overflow", overflow_wait_seconds=300)
    tracker = StateTracker()
    live_agent(tracker, "6001", state=AgentState.BUSY)
    waiting_calls(tracker, "support", 2)  # (2 + 1) x 120 s / 1 staffed = 360 s > 300 s
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query(calling="5550000000")
    )
    assert decision == RouteDecision("overflow", None, 0, "overflow")
    assert step(row, "overflow") == (
        "decided",
        "support: 2 waiting, 1 staffed: estimated wait 360 s > 300 s: to overflow",
    )

    live_agent(tracker, "6002", state=AgentState.BUSY)  # 180 s: stays
    decision, row = await route_and_audit(
        routing_url, make_engine, tracker, query("call-2", calling="5550000000")
    )
    assert decision == RouteDecision("support", None, 0, "queue")
    assert step(row, "overflow")[0] == "passed"


@pytest_twisted.ensureDeferred
async def test_configured_order_and_a_decision_without_the_database(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url, hours={6: [("08:00", "09:00")]}, closed_destination="closed")
    tracker = StateTracker()
    live_agent(tracker, "6001")
    service, audit = make_service(
        routing_url, make_engine, tracker, clock_at(), settings(strategies=("longest_idle",))
    )
    await aio(service.refresh())  # queues and agents in memory: nothing else is needed
    deferred = service.route(query(calling="5551234567"))
    assert deferred.called  # synchronous: no caller lookup for these strategies
    assert await deferred == RouteDecision("support", "6001", 0, "longest_idle")
    assert service.directory.misses == 0
    await audit.flush()
    (row,) = stored_decisions(routing_url)
    assert [s["strategy"] for s in row["steps"]] == ["target", "longest_idle"]


@pytest_twisted.ensureDeferred
async def test_a_cached_caller_is_decided_synchronously(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    service, audit = make_service(routing_url, make_engine, StateTracker(), clock_at())
    first = service.route(query("call-1"))
    assert not first.called
    assert (await first).rule == "queue"
    second = service.route(query("call-2"))
    assert second.called
    assert (await second).rule == "queue"
    await audit.flush()
    assert stored_decisions(routing_url, "call-2")[0]["steps"][2]["outcome"] == "found"


@pytest_twisted.ensureDeferred
async def test_target_from_route_data_default_queue_and_default_agent(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    _, row = await route_and_audit(
        routing_url, make_engine, StateTracker(), query(called="999", queue="sales")
    )
    assert row["decision"]["queue"] == "sales"
    assert step(row, "target") == ("queue", "sales (route data queue)")
    decision, row = await route_and_audit(
        routing_url, make_engine, StateTracker(), query("call-2", called="999")
    )
    assert decision.queue == "support"
    assert step(row, "target") == ("queue", "support (default_queue)")
    decision, row = await route_and_audit(
        routing_url,
        make_engine,
        StateTracker(),
        query("call-3", called="999"),
        default_queue=None,
        default_agent="7000",
    )
    assert decision == RouteDecision(None, "7000", 0, "default")
    assert step(row, "target") == ("none", "no queue serves this call")


@pytest_twisted.ensureDeferred
async def test_a_reload_changes_the_rules_from_the_next_decision(
    routing_url: str, make_engine: Engines
) -> None:
    standard_directory(routing_url)
    tracker = StateTracker()
    live_agent(tracker, "6001")
    service, audit = make_service(routing_url, make_engine, tracker, clock_at(), settings())
    before = await service.route(query("call-1", calling=None))
    service.reconfigure(settings(strategies=("business_hours",), default_queue="sales"))
    after = await service.route(query("call-2", calling=None))
    assert service.default == RouteDecision("sales", None, 0, "fallback")
    await audit.flush()
    assert (before.agent, before.rule) == ("6001", "longest_idle")
    assert after.agent is None and after.rule != "longest_idle"
    assert [s["strategy"] for s in stored_decisions(routing_url, "call-2")[0]["steps"]] == [
        "target",
        "business_hours",
    ]
