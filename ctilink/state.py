"""The state tracker: the single owner of live call, agent, queue and link state.

Theory of operation
-------------------
The hub hands the tracker every model event, numbered, before any consumer sees it, so
the tracker's view always includes the event a consumer is handling, and a snapshot taken
at any moment is exactly "everything up to ``last_seq``".

The tracker trusts the adapter for what a switch means: each call event names a device and
that device's CSTA local connection state after the event; the tracker records it
(``null`` removes the connection). On top of that it applies the few implications CSTA
gives events, each in one handler below:

* ``queued`` puts the call in the queue's waiting list (leaving any other queue) and
  releases the routing device named as ``last_redirection_device`` if it was only alerting;
* ``delivered`` likewise releases an alerting ``last_redirection_device`` (a route point
  that passed the call on);
* ``established`` takes the call out of its queue (answered calls stop waiting);
* ``diverted`` takes the call away from ``device`` (and out of that queue);
* ``transferred`` / ``conferenced`` merge the secondary call into the surviving one;
* ``call_cleared`` forgets the call.

Agents carry the overall state the adapter reported and one membership per queue. Waiting
positions are derived from join order when a snapshot is taken, never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctilink.model import events as ev
from ctilink.model.records import (
    AgentRecord,
    CallRecord,
    LinkRecord,
    Membership,
    QueueRecord,
    Waiting,
)
from ctilink.model.states import AgentState, LinkState, LocalConnectionState
from ctilink.model.wire import snapshot_to_wire


class StateTracker:
    def __init__(self) -> None:
        self.last_seq = 0
        self.calls: dict[str, CallRecord] = {}
        self.agents: dict[tuple[str, str], AgentRecord] = {}
        self.queues: dict[tuple[str, str], QueueRecord] = {}
        self.links: dict[str, LinkRecord] = {}
        self._handlers: dict[type[ev.Event], Callable[..., None]] = {
            ev.Queued: self._on_queued,
            ev.Delivered: self._on_delivered,
            ev.Established: self._on_established,
            ev.Diverted: self._on_diverted,
            ev.Transferred: self._on_merged,
            ev.Conferenced: self._on_merged,
            ev.CallCleared: self._on_call_cleared,
            ev.AgentLoggedOn: self._on_logged_on,
            ev.AgentLoggedOff: self._on_logged_off,
            ev.AgentReady: self._on_ready,
            ev.AgentNotReady: self._on_not_ready,
        }

    # -- applying events -------------------------------------------------------------------
    def apply(self, event: ev.Event) -> None:
        self.last_seq = max(self.last_seq, event.seq)
        if isinstance(event, ev.CallEvent):
            self._apply_call(event)
        elif isinstance(event, ev.AgentEvent):
            self._apply_agent(event)
        elif isinstance(event, ev.LinkEvent):
            state = LinkState.DOWN if isinstance(event, ev.LinkDown) else LinkState.UP
            self.links[event.switch] = LinkRecord(event.switch, state, event.time, event.detail)
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _apply_call(self, event: ev.CallEvent) -> None:
        call = self.calls.get(event.call_id)
        if call is None:
            # A call exists once the switch reports it; ctilink's own remarks about a call
            # (route requests answered, screen pops) do not create one.
            if isinstance(
                event, ev.CallCleared | ev.RouteRequest | ev.RouteSelected | ev.ScreenPop
            ):
                return
            call = CallRecord(event.call_id, event.switch, event.time, first_seq=event.seq)
            self.calls[event.call_id] = call
        for name in ("calling_number", "called_number", "queue", "agent", "switch_call_id"):
            value = getattr(event, name)
            if value is not None:
                setattr(call, name, value)
        call.data.update(event.data)
        if event.device is not None and event.connection_state is not None:
            if event.connection_state is LocalConnectionState.NULL:
                call.connections.pop(event.device, None)
            else:
                call.connections[event.device] = event.connection_state

    def _queue(self, switch: str, name: str) -> QueueRecord:
        queue = self.queues.get((switch, name))
        if queue is None:
            queue = self.queues[(switch, name)] = QueueRecord(switch, name)
        return queue

    def _leave_queues(self, call_id: str, switch: str) -> None:
        for queue in self.queues.values():
            if queue.switch == switch:
                queue.remove(call_id)

    def _release_router(self, call_id: str, device: str | None) -> None:
        call = self.calls.get(call_id)
        if call is None or device is None:
            return
        if call.connections.get(device) is LocalConnectionState.ALERTING:
            del call.connections[device]

    def _on_queued(self, event: ev.Queued) -> None:
        self._leave_queues(event.call_id, event.switch)
        name = event.queue or event.device
        if name is not None:
            self._queue(event.switch, name).waiting.append(Waiting(event.call_id, event.time))
        self._release_router(event.call_id, event.last_redirection_device)

    def _on_delivered(self, event: ev.Delivered) -> None:
        self._release_router(event.call_id, event.last_redirection_device)
        call = self.calls[event.call_id]
        caller = event.calling_number
        if event.seq == call.first_seq and caller and caller not in call.connections:
            # A call arriving at the switch: the caller is connected to it from the start
            # (ECMA-269 Delivered: the calling device's connection is connected).
            call.connections = {caller: LocalConnectionState.CONNECTED, **call.connections}

    def _on_established(self, event: ev.Established) -> None:
        call = self.calls[event.call_id]
        if call.answered is None:
            call.answered = event.time
        self._leave_queues(event.call_id, event.switch)
        for device, state in list(call.connections.items()):
            if state is LocalConnectionState.QUEUED:
                del call.connections[device]

    def _on_diverted(self, event: ev.Diverted) -> None:
        call = self.calls[event.call_id]
        if event.device is not None:
            call.connections.pop(event.device, None)
        name = event.queue or event.device
        queue = self.queues.get((event.switch, name)) if name is not None else None
        if queue is not None:
            queue.remove(event.call_id)

    def _on_merged(self, event: ev.Transferred | ev.Conferenced) -> None:
        secondary = self.calls.pop(event.secondary_call_id or "", None)
        if secondary is None:
            return
        call = self.calls[event.call_id]
        for device, state in secondary.connections.items():
            # The transferring device left both calls; everyone else joins the survivor.
            if not (isinstance(event, ev.Transferred) and device == event.device):
                call.connections.setdefault(device, state)
        for key, value in secondary.data.items():
            call.data.setdefault(key, value)
        self._leave_queues(secondary.call_id, secondary.switch)

    def _on_call_cleared(self, event: ev.CallCleared) -> None:
        self.calls.pop(event.call_id, None)
        self._leave_queues(event.call_id, event.switch)

    # -- agents ----------------------------------------------------------------------------
    def _apply_agent(self, event: ev.AgentEvent) -> None:
        key = (event.switch, event.agent)
        agent = self.agents.get(key)
        if agent is None:
            agent = self.agents[key] = AgentRecord(event.switch, event.agent, since=event.time)
        if agent.state is not event.state:
            agent.since = event.time
        agent.state = event.state
        agent.reason = event.reason if event.state is AgentState.NOT_READY else None
        if event.agent_name is not None:
            agent.agent_name = event.agent_name
        if event.device is not None:
            agent.device = event.device

    def _membership(self, event: ev.AgentEvent) -> Membership | None:
        """The queue membership a per-queue agent event changes (None: overall state only)."""
        if event.queue is None:
            return None
        agent = self.agents[(event.switch, event.agent)]
        member = agent.queues.get(event.queue)
        if member is None:
            member = agent.queues[event.queue] = Membership(event.queue)
            self._queue(event.switch, event.queue)
        return member

    def _on_logged_on(self, event: ev.AgentLoggedOn) -> None:
        member = self._membership(event)
        if member is not None:
            member.paused = event.state is AgentState.NOT_READY
            member.reason = event.reason if member.paused else None

    def _on_logged_off(self, event: ev.AgentLoggedOff) -> None:
        agent = self.agents[(event.switch, event.agent)]
        if event.queue is None:
            agent.queues.clear()
        else:
            agent.queues.pop(event.queue, None)

    def _on_ready(self, event: ev.AgentReady) -> None:
        member = self._membership(event)
        if member is not None:
            member.paused, member.reason = False, None

    def _on_not_ready(self, event: ev.AgentNotReady) -> None:
        member = self._membership(event)
        if member is not None:
            member.paused, member.reason = True, event.reason

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything live up to ``last_seq``, as the JSON object clients receive first."""
        return snapshot_to_wire(
            self.last_seq,
            now,
            self.calls.values(),
            self.agents.values(),
            self.queues.values(),
            self.links.values(),
        )
