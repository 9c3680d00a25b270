"""What the state tracker keeps about calls, agents, queues and links (plain records).

Owned and changed only by ``ctilink.state.StateTracker``; ``ctilink.model.wire`` turns them
into the snapshot clients receive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ctilink.model.states import AgentState, LinkState, LocalConnectionState


@dataclass
class CallRecord:
    call_id: str
    switch: str
    started: float
    first_seq: int = 0
    calling_number: str | None = None
    called_number: str | None = None
    queue: str | None = None
    agent: str | None = None
    switch_call_id: str | None = None
    answered: float | None = None
    connections: dict[str, LocalConnectionState] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)


@dataclass
class Membership:
    queue: str
    paused: bool = False
    reason: str | None = None


@dataclass
class AgentRecord:
    switch: str
    agent: str
    since: float
    state: AgentState = AgentState.LOGGED_OFF
    agent_name: str | None = None
    device: str | None = None
    reason: str | None = None
    queues: dict[str, Membership] = field(default_factory=dict)


@dataclass
class Waiting:
    call_id: str
    since: float


@dataclass
class QueueRecord:
    switch: str
    queue: str
    waiting: list[Waiting] = field(default_factory=list)

    def remove(self, call_id: str) -> None:
        self.waiting = [w for w in self.waiting if w.call_id != call_id]


@dataclass
class LinkRecord:
    switch: str
    state: LinkState
    since: float
    detail: str | None = None
