"""The simulated switch: calls, agents and the CSTA event reports they produce.

Theory of operation
-------------------
``Switch`` is a small call model with no I/O. Each method is one thing that happens on a
real switch (a call arrives at a pilot number, joins an ACD group, rings an agent, is
answered, held, transferred, cleared; an agent logs on, goes not ready...) and reports it
the way ECMA-285 words it: the event's value (as the codecs' Python values, the fields an
ACD switch fills in) and the devices involved. ``report(event_class, event, value,
involved)`` is given by the server, which sends the report on every monitor whose device
is involved, so a call at an agent of a monitored group is reported twice, as on a real
switch. A device is involved in a call from the event that brings it in, to the end of
the call.

CallIDs are ASCII digits from a counter (ECMA-323 carries octets as text); a transfer or
conference gives the resulting call a new callID (``transferredConnections`` names the new
connection of each party), so the client has to keep its own call id. ``snapshot`` and
``agent_info`` answer snapshotDevice and getAgentState from the same state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ctilink.adapters.csta_values import (
    connection,
    device_id,
    encode_user_data,
    named,
    redirection,
)

Report = Callable[[str, str, dict[str, Any], frozenset[str]], None]

CALL: Final = "callControlEvents"
AGENT: Final = "logicalDeviceFeatureEvents"
MAINTENANCE: Final = "deviceMaintenanceEvents"


@dataclass(eq=False)
class SimCall:
    call_id: bytes
    calling: str
    called: str
    connections: dict[str, str] = field(default_factory=dict)  # device -> LocalConnectionState
    involved: set[str] = field(default_factory=set)
    data: dict[str, str] = field(default_factory=dict)
    position: str | None = None  # the pilot or group the call was last at

    def others(self, device: str) -> list[str]:
        return [d for d, state in self.connections.items() if d != device and state != "queued"]


@dataclass
class SimAgent:
    device: str
    groups: set[str] = field(default_factory=set)
    state: str = "agentNull"  # AgentState: agentReady, agentNotReady, agentBusy...


class Switch:
    def __init__(self, report: Report, *, user_data: bool = True) -> None:
        self._report = report
        self.user_data = user_data  # ctilink's ECMA-323 codec cannot send userData
        self.calls: dict[bytes, SimCall] = {}
        self.agents: dict[str, SimAgent] = {}
        self.groups: dict[str, list[str]] = {}  # ACD group -> member devices
        self._ids = itertools.count(0x1001)

    # -- helpers ---------------------------------------------------------------------------
    def _new_id(self) -> bytes:
        return b"%d" % next(self._ids)  # printable: XML carries octets as text

    def conn(self, call: SimCall, device: str | None) -> tuple[str, Any]:
        return connection(call.call_id, device)

    def _call_event(self, call: SimCall, event: str, value: dict[str, Any]) -> None:
        self._report(CALL, event, value, frozenset(call.involved))

    def _parties(self, call: SimCall) -> dict[str, Any]:
        return {
            "callingDevice": named(call.calling),
            "calledDevice": named(call.called),
            "lastRedirectionDevice": redirection(call.position),
        }

    def find(self, call_id: bytes | None) -> SimCall | None:
        return self.calls.get(call_id) if call_id is not None else None

    def members(self, group: str) -> list[str]:
        return self.groups.get(group, [])

    def idle_agent(self, group: str) -> str | None:
        busy = {d for call in self.calls.values() for d in call.connections}
        for device in self.members(group):
            agent = self.agents.get(device)
            if agent and agent.state == "agentReady" and device not in busy:
                return device
        return None

    # -- calls -----------------------------------------------------------------------------
    def arrive(self, calling: str, called: str, data: dict[str, str] | None = None) -> SimCall:
        """A call from outside reaches ``called`` (a pilot, route point or extension)."""
        call = SimCall(self._new_id(), calling, called, data=dict(data or {}))
        self.calls[call.call_id] = call
        call.connections = {calling: "connected", called: "alerting"}
        call.involved.add(called)
        value = {
            "connection": self.conn(call, called),
            "alertingDevice": named(called),
            **self._parties(call),
            "localConnectionInfo": "alerting",
            "cause": "newCall",
        }
        if call.data and self.user_data:
            value["userData"] = encode_user_data(call.data)
        call.position = called
        self._call_event(call, "delivered", value)
        return call

    def queue(self, call: SimCall, group: str) -> None:
        prior = call.position
        if prior is not None and call.connections.get(prior) == "alerting":
            del call.connections[prior]
        call.connections[group] = "queued"
        call.involved.add(group)
        waiting = sum(1 for c in self.calls.values() if c.connections.get(group) == "queued")
        self._call_event(call, "queued", {
            "queuedConnection": self.conn(call, group), "queue": named(group),
            **self._parties(call), "numberQueued": waiting, "callsInFront": waiting - 1,
            "cause": "enteringDistribution",
        })  # fmt: skip
        call.position = group

    def deliver(self, call: SimCall, device: str) -> None:
        """``device`` rings (distributed by the group the call waits in, or dialled)."""
        call.connections[device] = "alerting"
        call.involved.add(device)
        from_group = call.position in self.groups
        self._call_event(call, "delivered", {
            "connection": self.conn(call, device), "alertingDevice": named(device),
            **self._parties(call), "localConnectionInfo": "alerting",
            "cause": "distributed" if from_group else "newCall",
        })  # fmt: skip

    def answer(self, call: SimCall, device: str) -> None:
        for queued in [d for d, state in call.connections.items() if state == "queued"]:
            del call.connections[queued]
        call.connections[device] = "connected"
        call.involved.add(device)
        self._call_event(call, "established", {
            "establishedConnection": self.conn(call, device), "answeringDevice": named(device),
            **self._parties(call), "localConnectionInfo": "connected", "cause": "newCall",
        })  # fmt: skip
        call.position = None
        if device in self.agents:
            self.agent_state(device, "agentBusy")

    def hold(self, call: SimCall, device: str) -> None:
        call.connections[device] = "hold"
        self._call_event(call, "held", {
            "heldConnection": self.conn(call, device), "holdingDevice": named(device),
            "localConnectionInfo": "hold", "cause": "newCall",
        })  # fmt: skip

    def retrieve(self, call: SimCall, device: str) -> None:
        call.connections[device] = "connected"
        self._call_event(call, "retrieved", {
            "retrievedConnection": self.conn(call, device), "retrievingDevice": named(device),
            "localConnectionInfo": "connected", "cause": "newCall",
        })  # fmt: skip

    def originate(self, calling: str, called: str, data: dict[str, str] | None = None) -> SimCall:
        """``calling`` makes a call (off-hook, then dialled): serviceInitiated, originated."""
        call = SimCall(self._new_id(), calling, called, data=dict(data or {}))
        self.calls[call.call_id] = call
        call.connections[calling] = "initiated"
        call.involved.add(calling)
        self._call_event(call, "serviceInitiated", {
            "initiatedConnection": self.conn(call, calling), "initiatingDevice": named(calling),
            "localConnectionInfo": "initiated", "cause": "makeCall",
        })  # fmt: skip
        call.connections[calling] = "connected"
        self._call_event(call, "originated", {
            "originatedConnection": self.conn(call, calling), "callingDevice": named(calling),
            "calledDevice": named(called), "localConnectionInfo": "connected",
            "cause": "newCall",
        })  # fmt: skip
        return call

    def reach_network(self, call: SimCall, trunk: str) -> None:
        """The call leaves on ``trunk``; the far end (its called number) rings."""
        call.connections[call.called] = "alerting"
        self._call_event(call, "networkReached", {
            "outboundConnection": self.conn(call, call.called),
            "networkInterfaceUsed": named(trunk), **self._parties(call), "cause": "normal",
        })  # fmt: skip

    def fail(self, call: SimCall, device: str, cause: str = "busy") -> None:
        call.connections[device] = "fail"
        call.involved.add(device)
        self._call_event(call, "failed", {
            "failedConnection": self.conn(call, device), "failingDevice": named(device),
            **self._parties(call), "cause": cause,
        })  # fmt: skip

    def divert(self, call: SimCall, device: str, destination: str) -> None:
        call.connections.pop(device, None)
        self._call_event(call, "diverted", {
            "connection": self.conn(call, device), "divertingDevice": named(device),
            "newDestination": named(destination), **self._parties(call), "cause": "redirected",
        })  # fmt: skip
        call.position = device

    def clear_connection(self, call: SimCall, device: str, cause: str = "normalClearing") -> None:
        """``device`` hangs up; a call left with one person in it is cleared."""
        if call.connections.pop(device, None) is None:
            return
        self._call_event(call, "connectionCleared", {
            "droppedConnection": self.conn(call, device), "releasingDevice": named(device),
            "localConnectionInfo": "null", "cause": cause,
        })  # fmt: skip
        self._after_call(device)
        if len([d for d, s in call.connections.items() if s != "queued"]) <= 1:
            self.clear_call(call, cause)

    def clear_call(self, call: SimCall, cause: str = "normalClearing") -> None:
        self._call_event(
            call, "callCleared", {"clearedCall": self.conn(call, None), "cause": cause}
        )
        self.calls.pop(call.call_id, None)
        for device in list(call.connections):
            self._after_call(device)
        call.connections.clear()

    def _after_call(self, device: str) -> None:
        agent = self.agents.get(device)
        if agent is not None and agent.state == "agentBusy":
            self.agent_state(device, "agentReady")

    # -- calls joined ----------------------------------------------------------------------
    def consult(self, call: SimCall, device: str, destination: str) -> SimCall:
        """``device`` holds ``call`` and calls ``destination``; it rings there."""
        self.hold(call, device)
        consultation = self.originate(device, destination)
        self.deliver(consultation, destination)
        return consultation

    def _join(self, held: SimCall, active: SimCall, leaving: str | None) -> tuple[SimCall, Any]:
        joined = SimCall(
            self._new_id(), held.calling, held.called, data={**active.data, **held.data}
        )
        listing = []
        for old in (held, active):
            for device in old.connections:
                if device == leaving or device in joined.connections:
                    continue
                joined.connections[device] = "connected"
                listing.append({
                    "newConnection": self.conn(joined, device),
                    "oldConnection": self.conn(old, device),
                    "endpoint": ("deviceID", device_id(device)),
                })  # fmt: skip
        joined.involved = held.involved | active.involved
        for old in (held, active):
            self.calls.pop(old.call_id, None)
        self.calls[joined.call_id] = joined
        return joined, listing

    def transfer(self, held: SimCall, active: SimCall, device: str) -> SimCall:
        target = next(iter(active.others(device)), None)
        joined, listing = self._join(held, active, device)
        self._report(CALL, "transferred", {
            "primaryOldCall": self.conn(held, device),
            "secondaryOldCall": self.conn(active, device),
            "transferringDevice": named(device), "transferredToDevice": named(target),
            "transferredConnections": listing, "cause": "transfer",
        }, frozenset(joined.involved))  # fmt: skip
        self._after_call(device)
        return joined

    def conference(self, held: SimCall, active: SimCall, device: str) -> SimCall:
        added = next(iter(active.others(device)), None)
        joined, listing = self._join(held, active, None)
        self._report(CALL, "conferenced", {
            "primaryOldCall": self.conn(held, device),
            "secondaryOldCall": self.conn(active, device),
            "conferencingDevice": named(device), "addedParty": named(added),
            "conferenceConnections": listing, "localConnectionInfo": "connected",
            "cause": "conference",
        }, frozenset(joined.involved))  # fmt: skip
        return joined

    def single_step(self, call: SimCall, device: str, destination: str) -> None:
        """``device`` hands its call to ``destination`` at once (blind transfer)."""
        call.connections.pop(device, None)
        listing = [{"newConnection": self.conn(call, d), "endpoint": ("deviceID", device_id(d))}
                   for d in call.connections]  # fmt: skip
        self._call_event(call, "transferred", {
            "primaryOldCall": self.conn(call, device), "transferringDevice": named(device),
            "transferredToDevice": named(destination), "transferredConnections": listing,
            "cause": "singleStepTransfer",
        })  # fmt: skip
        self._after_call(device)
        call.position = device
        self.deliver(call, destination)

    # -- agents and devices ----------------------------------------------------------------
    def _agent_event(self, event: str, device: str, group: str | None, **extra: Any) -> None:
        value: dict[str, Any] = {"agentDevice": named(device), **extra}
        if group is not None:
            value["acdGroup"] = device_id(group)
        groups = self.agents[device].groups if device in self.agents else set()
        self._report(AGENT, event, value, frozenset({device, *groups}))

    def log_on(self, device: str, group: str) -> None:
        agent = self.agents.setdefault(device, SimAgent(device))
        agent.groups.add(group)
        if device not in self.groups.setdefault(group, []):
            self.groups[group].append(device)
        agent.state = "agentReady"
        self._agent_event("agentLoggedOn", device, group)

    def log_off(self, device: str, group: str) -> None:
        agent = self.agents.get(device)
        if agent is None or group not in agent.groups:
            return
        self._agent_event("agentLoggedOff", device, group)
        agent.groups.discard(group)
        self.groups[group].remove(device)
        if not agent.groups:
            agent.state = "agentNull"

    def agent_state(self, device: str, state: str, cause: str | None = None) -> None:
        """``state``: agentReady, agentNotReady, agentBusy, agentWorkingAfterCall."""
        agent = self.agents.get(device)
        if agent is None or not agent.groups or agent.state == state:
            return
        agent.state = state
        self._agent_event(state, device, None, **({"cause": cause} if cause else {}))

    def maintenance(self, device: str, in_service: bool) -> None:
        event = "backInService" if in_service else "outOfService"
        self._report(MAINTENANCE, event, {"device": named(device)}, frozenset({device}))

    # -- queries ---------------------------------------------------------------------------
    def snapshot(self, device: str) -> list[dict[str, Any]]:
        """SnapshotDeviceData: the calls at ``device``, its own state first."""
        out = []
        for call in self.calls.values():
            own = call.connections.get(device)
            if own is not None:
                rest = [s for d, s in call.connections.items() if d != device]
                out.append({"connectionIdentifier": self.conn(call, device),
                            "localCallState": ("compoundCallState", [own, *rest])})  # fmt: skip
        return out

    def agent_info(self, device: str) -> dict[str, Any] | None:
        """GetAgentStateResult for ``device`` (None: not an agent's device)."""
        agent = self.agents.get(device)
        if agent is None:
            return None
        logged_on = bool(agent.groups)
        entry: dict[str, Any] = {"loggedOn": logged_on}
        if logged_on:
            entry["agentInfo"] = [
                {"acdGroup": device_id(group), "agentState": agent.state}
                for group in sorted(agent.groups)
            ]
        return {"agentStateList": [entry]}

    def involving(self, devices: Iterable[str]) -> list[SimCall]:
        wanted = set(devices)
        return [call for call in self.calls.values() if wanted & set(call.connections)]
