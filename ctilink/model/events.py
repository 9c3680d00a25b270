"""Model events: what every switch adapter produces and every consumer receives.

Theory of operation
-------------------
An adapter turns its switch's protocol into these frozen dataclasses, one class per CSTA
event type (ECMA-269 names in snake_case, see ``TYPE``). Adapters leave ``seq`` at 0; the
hub (``ctilink.hub``) numbers each event once, in the order the daemon publishes it, and
then hands it to the state tracker and to consumers. Nothing mutates an event after that.

Three families share a small base:

* call events (``CallEvent``) name the ctilink ``call_id`` (stable for the life of the call),
  the ``device`` the event is about (the alerting device of ``delivered``, the answering
  device of ``established``, the releasing device of ``connection_cleared``...), the call's
  calling and called numbers, and ``connection_state``: the CSTA local connection state of
  ``device`` after the event;
* agent events (``AgentEvent``) name the agent, the ACD group (queue) the change applies to
  when the switch reports it per group, the not-ready reason, and the agent's overall state
  after the event;
* link events (``LinkEvent``) report ctilink's own link to a switch.

``ctilink.model.wire`` turns an event into the JSON object clients receive; ``schemas/``
holds the JSON Schema of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ctilink.model.states import AgentState, LocalConnectionState


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event has. ``time`` is POSIX seconds (UTC) when the switch reported it."""

    TYPE: ClassVar[str] = ""

    switch: str
    time: float
    seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent(Event):
    call_id: str
    device: str | None
    calling_number: str | None
    called_number: str | None
    connection_state: LocalConnectionState | None
    queue: str | None = None
    agent: str | None = None
    cause: str | None = None
    cause_code: int | None = None
    switch_call_id: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInitiated(CallEvent):
    """A device went off-hook or was prompted to make a call (make call, click-to-dial)."""

    TYPE = "service_initiated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Originated(CallEvent):
    """The calling device's call has been placed towards ``called_number``."""

    TYPE = "originated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered(CallEvent):
    """The call is alerting (offered) at ``device``."""

    TYPE = "delivered"
    last_redirection_device: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Established(CallEvent):
    """``device`` answered the call."""

    TYPE = "established"


@dataclass(frozen=True, slots=True, kw_only=True)
class Held(CallEvent):
    TYPE = "held"


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrieved(CallEvent):
    TYPE = "retrieved"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionCleared(CallEvent):
    """``device`` left the call; the call goes on if other parties remain."""

    TYPE = "connection_cleared"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallCleared(CallEvent):
    """The call has ended; its ``call_id`` is never used again."""

    TYPE = "call_cleared"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transferred(CallEvent):
    """``device`` (the transferring device) transferred the call to ``transferred_to``.

    The call named by ``call_id`` survives; ``secondary_call_id`` (the consultation call of
    an attended transfer) has been merged into it and ends without a ``call_cleared``.
    """

    TYPE = "transferred"
    transferred_to: str | None = None
    secondary_call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Conferenced(CallEvent):
    """``added_device`` joined the call; ``secondary_call_id`` was merged into it."""

    TYPE = "conferenced"
    added_device: str | None = None
    secondary_call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Diverted(CallEvent):
    """The call left ``device`` (a queue or routing device) without being answered there."""

    TYPE = "diverted"
    new_destination: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Queued(CallEvent):
    """The call waits in the queue (ACD group) ``device`` at ``position`` (1 = next)."""

    TYPE = "queued"
    position: int
    queue_count: int | None = None
    last_redirection_device: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed(CallEvent):
    """The call could not reach ``device`` (busy, unavailable, congestion)."""

    TYPE = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkReached(CallEvent):
    """The call left the switch towards an external network (trunk seized)."""

    TYPE = "network_reached"


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRequest(CallEvent):
    """The switch asks where to send the call (route point ``device``)."""

    TYPE = "route_request"
    route_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteSelected(CallEvent):
    """ctilink answered a route request with ``destination`` at ``priority``."""

    TYPE = "route_selected"
    destination: str
    priority: int = 0
    rule: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenPop(CallEvent):
    """The customer record for the call, pushed to the agent at ``device``."""

    TYPE = "screen_pop"
    customer: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEvent(Event):
    agent: str
    state: AgentState
    agent_name: str | None = None
    device: str | None = None
    queue: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedOn(AgentEvent):
    TYPE = "agent_logged_on"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedOff(AgentEvent):
    TYPE = "agent_logged_off"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentReady(AgentEvent):
    TYPE = "agent_ready"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentNotReady(AgentEvent):
    TYPE = "agent_not_ready"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentWorkingAfterCall(AgentEvent):
    TYPE = "agent_working_after_call"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentBusy(AgentEvent):
    TYPE = "agent_busy"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkEvent(Event):
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkUp(LinkEvent):
    TYPE = "link_up"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkDown(LinkEvent):
    TYPE = "link_down"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkResynced(LinkEvent):
    TYPE = "link_resynced"


CALL_EVENT_TYPES: tuple[type[CallEvent], ...] = (
    ServiceInitiated,
    Originated,
    Delivered,
    Established,
    Held,
    Retrieved,
    ConnectionCleared,
    CallCleared,
    Transferred,
    Conferenced,
    Diverted,
    Queued,
    Failed,
    NetworkReached,
    RouteRequest,
    RouteSelected,
    ScreenPop,
)
AGENT_EVENT_TYPES: tuple[type[AgentEvent], ...] = (
    AgentLoggedOn,
    AgentLoggedOff,
    AgentReady,
    AgentNotReady,
    AgentWorkingAfterCall,
    AgentBusy,
)
LINK_EVENT_TYPES: tuple[type[LinkEvent], ...] = (LinkUp, LinkDown, LinkResynced)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls for cls in (*CALL_EVENT_TYPES, *AGENT_EVENT_TYPES, *LINK_EVENT_TYPES)
}


# -- ctilink's own statistics and callback events ----------------------------------------------
# Published by consumers (``ctilink.screenpop.stats``, ``ctilink.screenpop.callbacks``), never
# by adapters; ``time`` is ctilink's clock when the figures were taken or the callback changed.
# Optional fields are absent on the wire when None, like every non-call, non-agent event.


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats(Event):
    """Real-time figures of one queue (ACD group), published when they change."""

    TYPE = "queue_stats"
    queue: str
    calls_waiting: int
    longest_wait_seconds: float
    agents_ready: int
    agents_busy: int
    agents_not_ready: int
    agents_working_after_call: int
    calls_offered: int
    calls_answered: int
    calls_abandoned: int
    answered_within_target: int
    service_level_target_seconds: float
    counters_since: str
    service_level_percent: float | None = None
    average_speed_of_answer_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStats(Event):
    """Real-time figures of one agent, published when they change."""

    TYPE = "agent_stats"
    agent: str
    state: AgentState
    state_since: str
    seconds_in_state: float
    calls_handled: int
    queues: tuple[str, ...] = ()
    reason: str | None = None
    agent_name: str | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackChanged(Event):
    """A web callback request was made or changed status (queued, dialling, connected,
    completed, failed, cancelled)."""

    TYPE = "callback"
    callback_id: str
    queue: str
    number: str
    status: str
    attempts: int
    requested: str
    name: str | None = None
    not_before: str | None = None
    agent: str | None = None
    device: str | None = None
    call_id: str | None = None
    error: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)


CTILINK_EVENT_TYPES: tuple[type[Event], ...] = (QueueStats, AgentStats, CallbackChanged)
EVENT_TYPES.update({cls.TYPE: cls for cls in CTILINK_EVENT_TYPES})
