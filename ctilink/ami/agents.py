"""Asterisk queue members → ctilink agents.

Theory of operation
-------------------
Asterisk has no agent object: an agent is a queue member, identified by its
``Interface`` (``Local/6001@agents/n``, ``PJSIP/6001``), with a pause flag and reason *per
queue* and one device state (``Status``) shared by all its queues. ctilink's agent id is
the device that interface reaches (``6001``), the member name is kept as ``agent_name``.

Per-queue changes (member added, removed, paused, unpaused) become per-queue CSTA agent
events (``agent_logged_on``/``_off``, ``agent_not_ready`` with reason, ``agent_ready``)
carrying ``queue``. Device-state changes become overall events without a queue:
``agent_busy`` when the device is in use, and back to ``agent_ready`` (or
``agent_not_ready`` with the pause reason) when it is idle again. Every event carries the
overall state after it, derived in one place (``_overall``):

    no queues → logged_off; device in use → busy; device unavailable → not_ready
    ("device_unavailable"); paused in every queue → not_ready (latest reason), or
    working_after_call when that reason is ``wrapup``; else ready.

A member first seen in a status or pause event (ctilink connected while it was already
logged on) is recorded without inventing a log-on event; only what the switch reports as
a change is emitted. Asterisk repeats a device-state change once per queue; only the first
changes the overall state, so clients see it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ctilink.ami import names
from ctilink.ami.message import AmiMessage
from ctilink.model import events as ev
from ctilink.model.states import AgentState

# Device states (enum ast_device_state) in QueueMember* Status.
_IN_USE = frozenset({2, 3, 7, 8})  # INUSE, BUSY, RINGINUSE, ONHOLD
_UNAVAILABLE = frozenset({4, 5})  # INVALID, UNAVAILABLE
_IDLE = frozenset({0, 1})  # UNKNOWN, NOT_INUSE (RINGING changes nothing)


# The pause reason that means "working after call": ctilink's own wrap-up pauses members
# with it, and a member paused with it is reported as agent_working_after_call.
WRAPUP_REASON = "wrapup"


def _pause_event(reason: str | None) -> type[ev.AgentEvent]:
    return ev.AgentWorkingAfterCall if reason == WRAPUP_REASON else ev.AgentNotReady


_OVERALL_EVENTS: dict[AgentState, type[ev.AgentEvent]] = {
    AgentState.BUSY: ev.AgentBusy,
    AgentState.READY: ev.AgentReady,
    AgentState.NOT_READY: ev.AgentNotReady,
    AgentState.WORKING_AFTER_CALL: ev.AgentWorkingAfterCall,
}


@dataclass
class Membership:
    paused: bool = False
    reason: str | None = None


@dataclass
class Agent:
    agent: str
    name: str | None = None
    device: str | None = None
    interface: str | None = None  # as Asterisk names the member (QueuePause needs it)
    status: int = 1
    queues: dict[str, Membership] = field(default_factory=dict)
    last_reason: str | None = None
    overall: AgentState | None = None  # None until first derived


class AgentBook:
    def __init__(self, switch: str, emit: Callable[[ev.Event], object]) -> None:
        self.switch = switch
        self._emit = emit
        self.agents: dict[str, Agent] = {}
        self.now = 0.0

    def _agent(self, msg: AmiMessage) -> tuple[Agent, str] | None:
        interface = msg.get("Interface") or msg.get("Location")
        queue = msg.get("Queue")
        agent_id = names.device_of_dialstring(interface)
        if agent_id is None or not queue:
            return None
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = self.agents[agent_id] = Agent(agent_id)
        agent.name = msg.get("MemberName") or msg.get("Name") or agent.name
        agent.interface = interface
        state_interface = msg.get("StateInterface")
        agent.device = names.device_of_dialstring(state_interface) or agent.device or agent_id
        return agent, queue

    @staticmethod
    def _overall(agent: Agent) -> tuple[AgentState, str | None]:
        if not agent.queues:
            return AgentState.LOGGED_OFF, None
        if agent.status in _IN_USE:
            return AgentState.BUSY, None
        if agent.status in _UNAVAILABLE:
            return AgentState.NOT_READY, "device_unavailable"
        if all(member.paused for member in agent.queues.values()):
            if agent.last_reason == WRAPUP_REASON:
                return AgentState.WORKING_AFTER_CALL, WRAPUP_REASON
            return AgentState.NOT_READY, agent.last_reason
        return AgentState.READY, None

    def _send(
        self, cls: type[ev.AgentEvent], agent: Agent, queue: str | None, reason: str | None
    ) -> None:
        state, overall_reason = self._overall(agent)
        agent.overall = state
        self._emit(
            cls(
                switch=self.switch,
                time=self.now,
                agent=agent.agent,
                agent_name=agent.name,
                device=agent.device,
                queue=queue,
                state=state,
                reason=reason if reason is not None else overall_reason,
            )
        )

    @staticmethod
    def _pause_of(msg: AmiMessage) -> tuple[bool, str | None]:
        paused = msg.get("Paused", "0").strip() in ("1", "true", "yes")
        reason = names.known(msg.get("PausedReason") or msg.get("Reason"))
        return paused, reason if paused else None

    @staticmethod
    def _status_of(msg: AmiMessage) -> int | None:
        return names.parse_int(msg.get("Status"))

    # -- changes ---------------------------------------------------------------------------
    def _join(self, agent: Agent, queue: str, paused: bool, reason: str | None) -> None:
        agent.queues[queue] = Membership(paused, reason)
        if paused:
            agent.last_reason = reason
        self._send(ev.AgentLoggedOn, agent, queue, None)
        if paused:
            self._send(_pause_event(reason), agent, queue, reason)

    def _pause(self, agent: Agent, queue: str, paused: bool, reason: str | None) -> None:
        member = agent.queues.get(queue)
        if member is None:  # a member ctilink had not seen: it was in the other state
            member = agent.queues[queue] = Membership(not paused)
        if (member.paused, member.reason) == (paused, reason):
            return
        member.paused, member.reason = paused, reason
        if paused:
            agent.last_reason = reason
            self._send(_pause_event(reason), agent, queue, reason)
        else:
            self._send(ev.AgentReady, agent, queue, None)

    def _status(self, agent: Agent, status: int | None) -> None:
        """A device-state change: an overall event if the overall state changed."""
        if status is None or status == agent.status:
            return
        agent.status = status
        state, _ = self._overall(agent)
        if state is agent.overall or status not in (_IN_USE | _UNAVAILABLE | _IDLE):
            return
        cls = _OVERALL_EVENTS.get(state)
        if cls is not None:
            self._send(cls, agent, None, None)
        else:
            agent.overall = state

    # -- handlers --------------------------------------------------------------------------
    def member_added(self, msg: AmiMessage) -> None:
        found = self._agent(msg)
        if found is None:
            return
        agent, queue = found
        status = self._status_of(msg)
        if status is not None:
            agent.status = status
        self._join(agent, queue, *self._pause_of(msg))

    def member_removed(self, msg: AmiMessage) -> None:
        found = self._agent(msg)
        if found is None:
            return
        agent, queue = found
        if agent.queues.pop(queue, None) is not None:
            self._send(ev.AgentLoggedOff, agent, queue, None)

    def member_pause(self, msg: AmiMessage) -> None:
        found = self._agent(msg)
        if found is not None:
            self._pause(*found, *self._pause_of(msg))

    def member_status(self, msg: AmiMessage) -> None:
        found = self._agent(msg)
        if found is None:
            return
        agent, queue = found
        if queue not in agent.queues:
            agent.queues[queue] = Membership(*self._pause_of(msg))
        self._status(agent, self._status_of(msg))

    def reconcile(self, members: Iterable[AmiMessage]) -> None:
        """Align with a QueueStatus listing (its QueueMember items) after a reconnect:
        members that appeared are logged on, members gone are logged off, pause and device
        state changes are reported; nothing else produces an event."""
        listed: set[tuple[str, str]] = set()
        for msg in members:
            found = self._agent(msg)
            if found is None:
                continue
            agent, queue = found
            listed.add((agent.agent, queue))
            paused, reason = self._pause_of(msg)
            if queue not in agent.queues:
                self._join(agent, queue, paused, reason)
            else:
                self._pause(agent, queue, paused, reason)
            self._status(agent, self._status_of(msg))
        for agent in self.agents.values():
            for queue in [q for q in agent.queues if (agent.agent, q) not in listed]:
                del agent.queues[queue]
                self._send(ev.AgentLoggedOff, agent, queue, None)

    def table(self) -> dict[str, Callable[[AmiMessage], None]]:
        return {
            "QueueMemberAdded": self.member_added,
            "QueueMemberRemoved": self.member_removed,
            "QueueMemberPause": self.member_pause,
            "QueueMemberPaused": self.member_pause,  # Asterisk 11 and older
            "QueueMemberStatus": self.member_status,
        }
