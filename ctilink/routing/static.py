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

from twisted.internet.defer import Deferred, succeed


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
