"""Route decisions, the router interface, and the static router.

A switch's route request becomes a ``RouteQuery`` (which call, who calls, what was dialled,
at which route point, plus whatever the switch sent along). A ``Router`` answers it, later,
with a ``RouteDecision``: a queue, an agent, or both, and the priority the call waits at.
``rule`` names what decided, for the ``route_selected`` event and for people reading logs.

Routers answer with a Deferred so that one may ask a database or a remote service; the
caller (the FastAGI server) owns the time budget and the fallback when a router is slow or
fails, so a router never needs its own timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import Deferred, fail, succeed


@dataclass(frozen=True, slots=True)
class RouteQuery:
    switch: str
    call_id: str
    calling_number: str | None
    called_number: str | None
    route_point: str | None
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where the call goes. At least one of ``queue`` and ``agent`` is set."""

    queue: str | None
    agent: str | None
    priority: int
    rule: str

    def __post_init__(self) -> None:
        if not self.queue and not self.agent:
            raise ValueError("a route decision names a queue, an agent, or both")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"route priority must be an integer, not {self.priority!r}")

    @property
    def destination(self) -> str:
        """``agent:<id>`` when an agent is chosen, else ``queue:<name>``."""
        return f"agent:{self.agent}" if self.agent else f"queue:{self.queue}"


class Router(Protocol):
    def route(self, query: RouteQuery) -> Deferred[RouteDecision]: ...


class StaticRouter:
    """Every call to the same configured queue/agent and priority (rule ``static``)."""

    def __init__(
        self,
        default_queue: str | None = None,
        default_priority: int = 0,
        default_agent: str | None = None,
    ) -> None:
        self.decision = RouteDecision(default_queue, default_agent, default_priority, "static")

    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        return succeed(self.decision)


class Routes:
    """The router in force and the default route, for everything that answers route
    requests (FastAGI, CSTA routeRequest). It is itself a ``Router``: the daemon starts it
    on the static route, puts the routing service in when that has started, and swaps
    the default route on reload, without rebuilding a link."""

    def __init__(self, router: Router | None, fallback: RouteDecision | None) -> None:
        self.router = router  # None: no route configured (nor a routing service yet)
        self.fallback = fallback  # None: no default route is configured

    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        if self.router is None:
            return fail(LookupError("no router and no default route are configured"))
        return self.router.route(query)
