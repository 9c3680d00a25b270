"""The CSTA-aligned call model: states, events and their wire form."""

from ctilink.model.events import EVENT_TYPES, AgentEvent, CallEvent, Event, LinkEvent
from ctilink.model.states import AgentState, LinkState, LocalConnectionState

__all__ = [
    "EVENT_TYPES",
    "AgentEvent",
    "AgentState",
    "CallEvent",
    "Event",
    "LinkEvent",
    "LinkState",
    "LocalConnectionState",
]
