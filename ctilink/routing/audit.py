"""The routing audit: every decision stored with its reasons, and read back for people.

Theory of operation
-------------------
The routing service hands each decision (fallbacks included) to ``DecisionAudit.add`` as a
plain dict (``decision_row``), after the decision is made: storing it never delays an
answer. ``DecisionAudit`` is a ``BatchWriter``: rows are written in batches off the hot
path; during an outage they wait in memory (bounded; the oldest dropped beyond it) and are
written when the database returns.

A stored decision holds the request (who called, what was dialled, the route data), the
decision (queue, agent, priority) or null when nothing could be answered, the rule that
decided, the steps (each strategy's outcome and why), the candidates (agents weighed, with
their scores), the latency and whether it was a fallback. ``decisions_for`` reads a call's
decisions and ``format_decision`` prints one for ``ctilink route explain``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ctilink.model.wire import iso_time
from ctilink.routing.batching import BatchWriter
from ctilink.routing.schema import routing_decisions
from ctilink.routing.static import RouteDecision, RouteQuery


def decision_row(
    query: RouteQuery,
    tenant: str,
    time: float,
    decision: RouteDecision | None,
    *,
    rule: str,
    steps: list[dict[str, Any]],
    candidates: list[dict[str, Any]],
    latency: float,
    fallback: bool,
) -> dict[str, Any]:
    return {
        "call_id": query.call_id,
        "switch": query.switch,
        "tenant": tenant,
        "time": time,
        "request": {
            "calling_number": query.calling_number,
            "called_number": query.called_number,
            "route_point": query.route_point,
            "data": dict(query.data),
        },
        "decision": (
            None
            if decision is None
            else {"queue": decision.queue, "agent": decision.agent, "priority": decision.priority}
        ),
        "rule": rule,
        "steps": steps,
        "candidates": candidates,
        "latency_ms": round(latency * 1000, 3),
        "fallback": fallback,
    }


class DecisionAudit(BatchWriter[dict[str, Any]]):
    what = "routing decisions"

    async def write_batch(self, batch: list[dict[str, Any]]) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(routing_decisions.insert(), batch)


def decisions_for(connection: sa.Connection, call_id: str) -> list[dict[str, Any]]:
    """The stored decisions of ``call_id``, oldest first (a call may be routed again)."""
    query = (
        sa.select(routing_decisions)
        .where(routing_decisions.c.call_id == call_id)
        .order_by(routing_decisions.c.time, routing_decisions.c.id)
    )
    return [dict(row._mapping) for row in connection.execute(query)]


def describe_decision(decision: Mapping[str, Any] | None) -> str:
    if decision is None:
        return "no decision (nothing to answer)"
    parts = []
    if decision.get("agent"):
        parts.append(f"agent {decision['agent']}")
    if decision.get("queue"):
        parts.append(f"queue {decision['queue']}")
    return " in ".join(parts) + f", priority {decision.get('priority', 0)}"


def _request(request: Mapping[str, Any]) -> str:
    text = f"from {request.get('calling_number') or 'unknown'}"
    text += f" to {request.get('called_number') or '?'}"
    if request.get("route_point"):
        text += f" at route point {request['route_point']}"
    data = request.get("data") or {}
    if data:
        text += "; data " + ", ".join(f"{k}={v}" for k, v in sorted(data.items()))
    return text


def _candidate(entry: Mapping[str, Any]) -> str:
    mark = "yes" if entry.get("available") else "no"
    extra = f" idle {entry['idle']:g} s" if "idle" in entry else ""
    return (
        f"    {entry.get('strategy', '?'):<16} {entry.get('agent', '?'):<10}"
        f" score {entry.get('score', 0)!s:<8} available {mark:<3} {entry.get('why', '')}{extra}"
    )


def format_decision(row: Mapping[str, Any]) -> str:
    """One stored decision as text for people (``ctilink route explain``)."""
    fallback = " (fallback: the default route)" if row["fallback"] else ""
    lines = [
        f"call {row['call_id']} on switch {row['switch']} (tenant {row['tenant']}),"
        f" {iso_time(row['time'])}",
        f"  request:  {_request(row['request'])}",
        f"  decision: {describe_decision(row['decision'])} by rule {row['rule']}"
        f" in {row['latency_ms']:.1f} ms{fallback}",
        "  steps:",
    ]
    steps: Sequence[Mapping[str, Any]] = row["steps"] or []
    lines.extend(
        f"    {s.get('strategy', '?'):<16} {s.get('outcome', '?'):<11} {s.get('detail', '')}"
        for s in steps
    )
    candidates: Sequence[Mapping[str, Any]] = row["candidates"] or []
    lines.append("  candidates:" if candidates else "  candidates: none")
    lines.extend(_candidate(c) for c in candidates)
    return "\n".join(lines)
