"""CSTA agent (logical device feature) and device maintenance events → ctilink agents.

Theory of operation
-------------------
A CSTA agent is a device (``agentDevice``) with an optional ``agentID`` and, per ACD group
(``acdGroup``) or as a whole, a CSTA agent state. ctilink's agent id is the ``agentID``
when the switch gives one, else the device; call events name agents through
``agent_of(device)``.

Each report becomes the matching ctilink event (``agent_logged_on``, ``agent_ready``,
``agent_not_ready`` with reason, ``agent_busy``, ``agent_working_after_call``,
``agent_logged_off``), with ``queue`` the ACD group when the switch names one and ``state``
the agent's overall state after it. Only changes are reported: a switch sends the same
event to every monitor that covers the agent (its device and its group), and a report
that changes nothing is that duplicate. An agent first heard of through a state report
(ctilink connected while it was logged on) is recorded without inventing a log-on.

ECMA-285 has no not-ready reason code (switches carry it in private data): ``reason`` is
the event's ``cause`` in snake_case when there is one. Device maintenance events have no
model event of their own; as the Asterisk adapter does for an unavailable device, an agent
whose device goes out of service is ``not_ready`` with reason ``device_unavailable``, and
back in service returns to the state it had.

``reconcile`` applies a ``getAgentState`` answer (after a reconnect) through the same
methods, so it too reports only differences.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ctilink.adapters import csta_values as values
from ctilink.model import events as ev
from ctilink.model.states import AgentState

log = logging.getLogger(__name__)

DEVICE_UNAVAILABLE: Final = "device_unavailable"

_STATE_EVENTS: Final[dict[AgentState, type[ev.AgentEvent]]] = {
    AgentState.READY: ev.AgentReady,
    AgentState.NOT_READY: ev.AgentNotReady,
    AgentState.BUSY: ev.AgentBusy,
    AgentState.WORKING_AFTER_CALL: ev.AgentWorkingAfterCall,
    AgentState.LOGGED_OFF: ev.AgentLoggedOff,
}
_REPORTED: Final = {
    "agentReady": AgentState.READY,
    "agentNotReady": AgentState.NOT_READY,
    "agentBusy": AgentState.BUSY,
    "agentWorkingAfterCall": AgentState.WORKING_AFTER_CALL,
}
# getAgentState's AgentState enumeration.
_QUERIED: Final = {**_REPORTED, "agentNull": AgentState.LOGGED_OFF}


@dataclass
class Agent:
    agent: str
    device: str
    logged_on: bool = False
    groups: set[str] = field(default_factory=set)
    state: AgentState = AgentState.LOGGED_OFF
    reason: str | None = None
    last: dict[str | None, tuple[AgentState, str | None]] = field(default_factory=dict)
    out_of_service: tuple[AgentState, str | None] | None = None  # the state before


class AgentBook:
    def __init__(self, switch: str, emit: Callable[[ev.Event], object]) -> None:
        self.switch = switch
        self._emit = emit
        self.agents: dict[str, Agent] = {}
        self._by_device: dict[str, str] = {}
        self.now = 0.0
        self._table: dict[str, Callable[[dict[str, Any]], None]] = {
            "agentLoggedOn": self.logged_on,
            "agentLoggedOff": self.logged_off,
            **{name: self._state_report(name) for name in _REPORTED},
        }

    def handle(self, name: str, value: dict[str, Any]) -> bool:
        """Apply a logical device feature event; False if ctilink does not read it."""
        handler = self._table.get(name)
        if handler is None:
            return False
        handler(value)
        return True

    def agent_of(self, device: str) -> str:
        return self._by_device.get(device, device)

    def device_of(self, agent: str) -> str:
        known = self.agents.get(agent)
        return known.device if known is not None else agent

    # -- reports ---------------------------------------------------------------------------
    def _find(self, value: dict[str, Any]) -> tuple[Agent, str | None] | None:
        device = values.device_of(value.get("agentDevice"))
        if device is None:
            return None
        agent_id = values.octets_text(value.get("agentID")) or self.agent_of(device)
        return self._agent(agent_id, device), values.device_text(value.get("acdGroup"))

    def _agent(self, agent_id: str, device: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = self.agents[agent_id] = Agent(agent_id, device)
        agent.device = device
        self._by_device[device] = agent_id
        return agent

    def logged_on(self, value: dict[str, Any]) -> None:
        found = self._find(value)
        if found is not None:
            self._log_on(*found)

    def _log_on(self, agent: Agent, group: str | None) -> None:
        if (group in agent.groups) if group is not None else agent.logged_on:
            return
        if group is not None:
            agent.groups.add(group)
        if not agent.logged_on:
            agent.logged_on = True
            agent.state, agent.reason = AgentState.READY, None
        agent.last[group] = (agent.state, agent.reason)
        self._send(ev.AgentLoggedOn, agent, group, None)

    def logged_off(self, value: dict[str, Any]) -> None:
        found = self._find(value)
        if found is not None:
            self._log_off(*found)

    def _log_off(self, agent: Agent, group: str | None) -> None:
        if not agent.logged_on or (
            group is not None and agent.groups and group not in agent.groups
        ):
            return
        agent.groups.discard(group) if group is not None else agent.groups.clear()
        if not agent.groups:
            agent.logged_on = False
            agent.state, agent.reason = AgentState.LOGGED_OFF, None
            agent.last.clear()
        self._send(ev.AgentLoggedOff, agent, group, None)

    def _state_report(self, name: str) -> Callable[[dict[str, Any]], None]:
        state = _REPORTED[name]

        def handler(value: dict[str, Any]) -> None:
            found = self._find(value)
            if found is not None:
                reason = (
                    values.cause(value.get("cause"))[0] if state is AgentState.NOT_READY else None
                )
                self.change(*found, state, reason)

        return handler

    def change(
        self, agent: Agent, group: str | None, state: AgentState, reason: str | None
    ) -> None:
        """The agent is now in ``state`` (for ``group``, or as a whole)."""
        if agent.out_of_service is not None:
            agent.out_of_service = (state, reason)  # reported when back in service
            return
        unchanged = (agent.state, agent.reason) == (state, reason)
        if unchanged and agent.last.get(group) == (state, reason):
            return
        if not agent.logged_on:  # logged on before ctilink knew: no log-on invented
            agent.logged_on = True
            if group is not None:
                agent.groups.add(group)
        agent.state, agent.reason = state, reason
        agent.last[group] = (state, reason)
        self._send(_STATE_EVENTS[state], agent, group, reason)

    # -- device maintenance ----------------------------------------------------------------
    def maintenance(self, name: str, value: dict[str, Any]) -> None:
        device = values.device_of(value.get("device"))
        agent = self.agents.get(self.agent_of(device)) if device is not None else None
        log.info("switch %s: device %s %s", self.switch, device, values.snake(name))
        if agent is None or not agent.logged_on:
            return
        if name == "outOfService" and agent.out_of_service is None:
            agent.out_of_service = (agent.state, agent.reason)
            agent.state, agent.reason = AgentState.NOT_READY, DEVICE_UNAVAILABLE
            self._send(ev.AgentNotReady, agent, None, DEVICE_UNAVAILABLE)
        elif name == "backInService" and agent.out_of_service is not None:
            (state, reason), agent.out_of_service = agent.out_of_service, None
            agent.state, agent.reason = state, reason
            self._send(_STATE_EVENTS[state], agent, None, reason)

    # -- resync ----------------------------------------------------------------------------
    def reconcile(self, device: str, result: Any) -> None:
        """Align with a ``GetAgentStateResult`` for ``device``."""
        for entry in (result or {}).get("agentStateList", ()):
            agent_id = values.octets_text(entry.get("agentID")) or self.agent_of(device)
            agent = self._agent(agent_id, device)
            if not entry.get("loggedOn"):
                self._log_off(agent, None)
                continue
            infos = entry.get("agentInfo") or [{}]
            for info in infos:
                group = values.device_text(info.get("acdGroup"))
                self._log_on(agent, group)
                state = _QUERIED.get(info.get("agentState", ""))
                if state is not None and state is not AgentState.LOGGED_OFF:
                    self.change(agent, group, state, agent.reason if state is agent.state else None)

    def _send(
        self, cls: type[ev.AgentEvent], agent: Agent, group: str | None, reason: str | None
    ) -> None:
        self._emit(
            cls(
                switch=self.switch,
                time=self.now,
                agent=agent.agent,
                device=agent.device,
                queue=group,
                state=agent.state,
                reason=reason,
            )
        )
