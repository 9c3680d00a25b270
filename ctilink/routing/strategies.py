"""Routing strategies: from a route request and what is known to a decision, with reasons.

Theory of operation
-------------------
Everything here is pure and synchronous: ``evaluate`` reads an ``Evaluation`` (the request,
the target queue's configuration, the caller as the directory found them, agents' skills,
the live state of agents and queues, the time) and runs the configured strategies in order
until one decides. Every strategy appends one *step* (what it looked at and what came of
it) and the agents it weighed as *candidates* with their scores; ``rule`` is the name of
the strategy that decided. Those three are what ``ctilink route explain`` prints.

The target queue is, in order: the queue named by route data (``queue_keys``), the queue
serving the route point or dialled number (``queue_numbers``), ``default_queue``.

Strategies (``STRATEGIES``; the configuration orders them):

* ``business_hours``: a target queue that is closed now (weekly hours, holidays) sends the
  call to its closed destination (or ``closed_destination``);
* ``identify``: records who the caller is (the lookup itself is the service's job);
* ``vip``: the customer's tier raises the priority (``tier_priority``); decides nothing
  alone, but a call that ends in its queue at that priority is reported as rule ``vip``;
* ``last_agent``: the agent who answered the customer's most recent answered call within
  ``last_agent_days``, if available now;
* ``preferred_agent``: the customer's preferred agent, if available now;
* ``skills``: when the queue requires skills, the available agent meeting every minimum
  level with the highest sum of levels on them (ties: longest idle); agents not meeting
  them are never chosen by ``longest_idle`` either;
* ``longest_idle``: the available agent whose ``since`` (in ready state) is the oldest;
* ``overflow``: the overflow queue when the estimated wait, (calls waiting + 1) x
  handle time / staffed agents, exceeds the threshold (no staffed agent: unbounded).

*Available* means, in the state tracker: the agent's state is ``ready``, and, if the switch
reports queue memberships for it, it is an unpaused member of the target queue. When no
strategy decides, the call goes to the target queue at the priority found (rule ``queue``,
or ``vip``), or else to ``default_agent``; with neither, there is no decision (None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ctilink.config import ROUTING_STRATEGIES, RoutingConfig
from ctilink.model.records import AgentRecord, CallRecord, QueueRecord
from ctilink.model.states import AgentState
from ctilink.routing.directory import Caller
from ctilink.routing.reference import QueueInfo, Reference
from ctilink.routing.static import RouteDecision, RouteQuery

MAX_CANDIDATES: Final = 10  # per strategy, in the audit: the best ones
DAY: Final = 86400.0


class LiveView(Protocol):
    """What routing reads of the state tracker (``ctilink.state.StateTracker`` is one)."""

    @property
    def agents(self) -> Mapping[tuple[str, str], AgentRecord]: ...

    @property
    def queues(self) -> Mapping[tuple[str, str], QueueRecord]: ...

    @property
    def calls(self) -> Mapping[str, CallRecord]: ...


@dataclass
class Evaluation:
    query: RouteQuery
    tenant: str
    now: float
    settings: RoutingConfig
    reference: Reference
    live: LiveView
    caller: Caller | None  # None: not looked up (no strategy asked for it yet)
    queue: QueueInfo | None = None  # the target queue
    priority: int = 0
    priority_rule: str | None = None
    qualified: set[str] | None = None  # agents meeting the queue's skills; None: no skills
    agents: list[AgentRecord] | None = None  # the switch's agents (computed once)
    ready: list[AgentRecord] | None = None  # those available for the target queue
    steps: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def step(self, strategy: str, outcome: str, detail: str) -> None:
        self.steps.append({"strategy": strategy, "outcome": outcome, "detail": detail})

    def consider(self, strategy: str, scored: list[dict[str, Any]]) -> None:
        """Record ``scored`` candidates (best first), at most MAX_CANDIDATES of them."""
        for entry in scored[:MAX_CANDIDATES]:
            self.candidates.append({"strategy": strategy, **entry})

    def route(self, agent: str | None, rule: str) -> RouteDecision:
        queue = self.queue.name if self.queue is not None else None
        return RouteDecision(queue, agent, self.priority, rule)


class NeedCaller(Exception):
    """A strategy needs the caller and it has not been looked up yet."""


def available(agent: AgentRecord | None, queue: str | None) -> tuple[bool, str]:
    """Whether the tracker shows ``agent`` able to take a call of ``queue`` now, and why."""
    if agent is None:
        return False, "unknown to the switch"
    if agent.state is not AgentState.READY:
        return False, agent.state.value
    if agent.queues and queue is not None:
        member = agent.queues.get(queue)
        if member is None:
            return False, f"not in queue {queue}"
        if member.paused:
            return False, f"paused in {queue}" + (f" ({member.reason})" if member.reason else "")
    return True, "ready"


def _switch_agents(ev: Evaluation) -> list[AgentRecord]:
    if ev.agents is None:
        switch = ev.query.switch
        ev.agents = [record for (sw, _), record in ev.live.agents.items() if sw == switch]
    return ev.agents


def _ready(ev: Evaluation) -> list[AgentRecord]:
    if ev.ready is None:
        queue = ev.queue.name if ev.queue is not None else None
        ev.ready = [a for a in _switch_agents(ev) if available(a, queue)[0]]
    return ev.ready


def _idle(ev: Evaluation, agent: AgentRecord) -> float:
    return round(max(0.0, ev.now - agent.since), 3)


def _customer_needed(ev: Evaluation) -> Caller:
    if ev.caller is None:
        raise NeedCaller
    return ev.caller


# -- the strategies ------------------------------------------------------------------------
def business_hours(ev: Evaluation) -> RouteDecision | None:
    queue = ev.queue
    if queue is None:
        ev.step("business_hours", "passed", "no target queue")
        return None
    is_open, why = queue.is_open(ev.now)
    if is_open:
        ev.step("business_hours", "open", f"{queue.name}: {why}")
        return None
    destination = queue.closed_destination or ev.settings.closed_destination
    if destination is None:
        ev.step("business_hours", "closed", f"{queue.name}: {why}; no closed destination")
        return None
    ev.step("business_hours", "decided", f"{queue.name}: {why}: to {destination}")
    return RouteDecision(destination, None, ev.priority, "closed")


def identify(ev: Evaluation) -> RouteDecision | None:
    caller = _customer_needed(ev)
    key = caller.key
    customer = caller.customer
    if customer is None:
        looked = " or ".join(
            f"{what} {value}"
            for what, value in (("account", key.account), ("number", key.number))
            if value
        )
        ev.step("identify", "unknown", f"no customer with {looked}" if looked else "no number")
        return None
    via = key.account if caller.identified_by == "account" else key.number
    ev.step(
        "identify",
        "found",
        f"customer {customer.id} {customer.name} (account {customer.account})"
        f" by {caller.identified_by} {via}",
    )
    return None


def vip(ev: Evaluation) -> RouteDecision | None:
    customer = _customer_needed(ev).customer
    tier = customer.tier if customer is not None else None
    if not tier:
        ev.step("vip", "passed", "no tier" if customer else "unknown caller")
        return None
    priority = ev.settings.tier_priorities.get(tier.lower())
    if priority is None or priority <= ev.priority:
        ev.step("vip", "passed", f"tier {tier}: priority stays {ev.priority}")
        return None
    ev.priority, ev.priority_rule = priority, "vip"
    ev.step("vip", "raised", f"tier {tier}: priority {priority}")
    return None


def _offer(ev: Evaluation, strategy: str, agent_id: str, score: float, why: str) -> bool:
    queue = ev.queue.name if ev.queue is not None else None
    ok, state = available(ev.live.agents.get((ev.query.switch, agent_id)), queue)
    ev.consider(strategy, [{"agent": agent_id, "score": score, "available": ok, "why": state}])
    ev.step(strategy, "decided" if ok else "unavailable", f"{agent_id} {why}: {state}")
    return ok


def last_agent(ev: Evaluation) -> RouteDecision | None:
    caller = _customer_needed(ev)
    days = ev.settings.last_agent_days
    if caller.customer is None or days <= 0:
        ev.step("last_agent", "passed", "unknown caller" if days > 0 else "disabled")
        return None
    served = next((h for h in caller.history if h.agent and h.answered is not None), None)
    if served is None or served.agent is None:
        ev.step("last_agent", "passed", "no answered call in the recent history")
        return None
    age = (ev.now - served.started) / DAY
    if age > days:
        ev.step("last_agent", "passed", f"{served.agent} served {age:.1f} days ago (> {days})")
        return None
    score = round(age, 3)
    if _offer(ev, "last_agent", served.agent, score, f"served {age:.1f} days ago"):
        return ev.route(served.agent, "last_agent")
    return None


def preferred_agent(ev: Evaluation) -> RouteDecision | None:
    customer = _customer_needed(ev).customer
    if customer is None or not customer.preferred_agent:
        ev.step("preferred_agent", "passed", "no preferred agent" if customer else "unknown")
        return None
    if _offer(ev, "preferred_agent", customer.preferred_agent, 1.0, "is preferred"):
        return ev.route(customer.preferred_agent, "preferred_agent")
    return None


def skills(ev: Evaluation) -> RouteDecision | None:
    queue = ev.queue
    if queue is None or not queue.skills:
        ev.step("skills", "passed", "no skills required")
        return None
    required = ", ".join(f"{s}>={level}" for s, level in sorted(queue.skills.items()))
    ranked: list[tuple[bool, int, float, AgentRecord, list[str]]] = []
    ev.qualified = set()
    for agent in _ready(ev):
        info = ev.reference.agent(ev.tenant, agent.agent)
        levels = info.skills if info is not None else {}
        missing = [s for s, low in queue.skills.items() if levels.get(s, 0) < low]
        if not missing:
            ev.qualified.add(agent.agent)
        score = sum(levels.get(s, 0) for s in queue.skills)
        ranked.append((not missing, score, -agent.since, agent, missing))
    ranked.sort(key=lambda item: item[:3], reverse=True)
    ev.consider(
        "skills",
        [
            {
                "agent": agent.agent,
                "score": score,
                "idle": _idle(ev, agent),
                "available": ok,
                "why": "meets " + required if ok else "lacks " + ", ".join(sorted(missing)),
            }
            for ok, score, _, agent, missing in ranked[:MAX_CANDIDATES]
        ],
    )
    if not ev.qualified:
        ev.step("skills", "none", f"no available agent meets {required}")
        return None
    best = ranked[0][3].agent
    ev.step("skills", "decided", f"{best} scores {ranked[0][1]} on {required}")
    return ev.route(best, "skills")


def longest_idle(ev: Evaluation) -> RouteDecision | None:
    pool = [a for a in _ready(ev) if ev.qualified is None or a.agent in ev.qualified]
    if not pool:
        ev.step("longest_idle", "none", "no available agent")
        return None
    pool.sort(key=lambda a: a.since)
    ev.consider(
        "longest_idle",
        [
            {"agent": a.agent, "score": _idle(ev, a), "available": True, "why": "idle"}
            for a in pool[:MAX_CANDIDATES]
        ],
    )
    best = pool[0]
    ev.step("longest_idle", "decided", f"{best.agent} idle {_idle(ev, best):.0f} s")
    return ev.route(best.agent, "longest_idle")


def estimated_wait(ev: Evaluation, queue: QueueInfo) -> tuple[float, int, int]:
    """(estimated wait in seconds, calls waiting, staffed agents) for a new call."""
    record = ev.live.queues.get((ev.query.switch, queue.name))
    waiting = len(record.waiting) if record is not None else 0
    staffed = 0
    for agent in _switch_agents(ev):
        member = agent.queues.get(queue.name)
        if member is not None and not member.paused and agent.state is not AgentState.LOGGED_OFF:
            staffed += 1
    handle = queue.handle_seconds or ev.settings.handle_seconds
    wait = (waiting + 1) * handle / staffed if staffed else math.inf
    return wait, waiting, staffed


def overflow(ev: Evaluation) -> RouteDecision | None:
    queue = ev.queue
    if queue is None:
        ev.step("overflow", "passed", "no target queue")
        return None
    target = queue.overflow_queue or ev.settings.overflow_queue
    threshold = queue.overflow_wait_seconds
    if threshold is None:
        threshold = ev.settings.overflow_wait_seconds
    if not target or threshold <= 0:
        ev.step("overflow", "passed", f"{queue.name}: no overflow configured")
        return None
    wait, waiting, staffed = estimated_wait(ev, queue)
    shown = "unbounded" if math.isinf(wait) else f"{wait:.0f} s"
    detail = f"{queue.name}: {waiting} waiting, {staffed} staffed: estimated wait {shown}"
    if wait <= threshold:
        ev.step("overflow", "passed", f"{detail} <= {threshold} s")
        return None
    ev.step("overflow", "decided", f"{detail} > {threshold} s: to {target}")
    return RouteDecision(target, None, ev.priority, "overflow")


Strategy = Callable[[Evaluation], RouteDecision | None]
STRATEGIES: Final[Mapping[str, Strategy]] = {
    "business_hours": business_hours,
    "identify": identify,
    "vip": vip,
    "last_agent": last_agent,
    "preferred_agent": preferred_agent,
    "skills": skills,
    "longest_idle": longest_idle,
    "overflow": overflow,
}
assert tuple(STRATEGIES) == ROUTING_STRATEGIES, "the configuration's names are these"


# -- running them --------------------------------------------------------------------------
def target_queue(ev: Evaluation) -> str | None:
    """The queue the call is for (see the module docstring); records a step."""
    query, settings = ev.query, ev.settings
    for key in settings.queue_keys:
        name = query.data.get(key)
        if name:
            ev.step("target", "queue", f"{name} (route data {key})")
            return name
    for number in (query.route_point, query.called_number):
        name = ev.reference.queue_for_number(ev.tenant, number)
        if name is not None:
            ev.step("target", "queue", f"{name} (serves {number})")
            return name
    if settings.default_queue is not None:
        ev.step("target", "queue", f"{settings.default_queue} (default_queue)")
        return settings.default_queue
    ev.step("target", "none", "no queue serves this call")
    return None


def evaluate(ev: Evaluation) -> RouteDecision | None:
    """Run the strategies; raises NeedCaller when one needs a lookup not done yet."""
    ev.priority = ev.settings.default_priority
    name = target_queue(ev)
    ev.queue = ev.reference.queue(ev.tenant, name) if name is not None else None
    for strategy in ev.settings.strategies:
        decision = STRATEGIES[strategy](ev)
        if decision is not None:
            return decision
    if ev.queue is not None:
        return ev.route(None, ev.priority_rule or "queue")
    if ev.settings.default_agent is not None:
        return RouteDecision(None, ev.settings.default_agent, ev.priority, "default")
    return None
