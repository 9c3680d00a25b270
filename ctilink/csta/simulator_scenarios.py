"""Scripted scenarios for the CSTA simulator: the stories a call centre's switch tells.

The switch is populated like the Asterisk 22 traces of ``tests/fixtures/pbx-traces``
(``populate``): ACD group ``support`` (agents 6001, 6002), ``sales`` (6003), the pilot
number 800 that queues to ``support``, the route point 803, callers from outside.
Each scenario is a coroutine over a ``Director`` that pauses on the simulator's clock
(scaled by its ``pace``); ``SCENARIOS`` names them all:

    inbound_answered   5551234567 (call data CUSTOMER_ACCOUNT=ACME-001) calls 800, waits in
                       support, agent 6001 rings, answers, talks, hangs up
    inbound_abandoned  the support agents are not ready; 5559876543 waits and hangs up
    transferred        6001 answers, consults 6002, transfers the caller to 6002
    conferenced        6001 answers, consults 6002, makes a three-party conference
    held_retrieved     6001 answers, holds the caller, retrieves, hangs up
    agent_states       agent 6004 logs on to sales, not ready, ready, after call work, off
    route_request      5554446666 calls route point 803: the routeing server chooses where
                       (no answer within the routeing timer: support)
    silent             the switch stops reading and sending (sockets stay open)
    drop               every connection is reset
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from ctilink.csta.simulator import CstaSimulator
from ctilink.csta.simulator_switch import SimCall, Switch

log = logging.getLogger(__name__)

CALLER: Final = "5551234567"
PILOT: Final = "800"
ROUTE_POINT: Final = "803"
SUPPORT: Final = "support"
SALES: Final = "sales"
START_DELAY: Final = 1.0
BETWEEN: Final = 2.0


def populate(switch: Switch) -> None:
    """The agents of the Asterisk fixture traces, logged on and ready."""
    for device, group in (("6001", SUPPORT), ("6002", SUPPORT), ("6003", SALES)):
        switch.log_on(device, group)


class Director:
    def __init__(self, simulator: CstaSimulator) -> None:
        self.sim = simulator
        self.switch = simulator.switch
        self.played: list[str] = []

    def pause(self, seconds: float) -> Deferred[None]:
        return deferLater(self.sim.clock, seconds * self.sim.pace, lambda: None)

    async def play(self, name: str) -> None:
        await SCENARIOS[name](self)
        self.played.append(name)

    def play_when_monitored(self, names: Sequence[str], *, loop: bool) -> None:
        """Once a CTI application monitors something, play ``names`` (again and again)."""

        def wait() -> None:
            if self.sim.monitored:
                Deferred.fromCoroutine(self._run(list(names), loop))
            else:
                self.sim.clock.callLater(0.5, wait)

        self.sim.clock.callLater(START_DELAY, wait)

    async def _run(self, names: list[str], loop: bool) -> None:
        while True:
            for name in names:
                try:
                    await self.play(name)
                except Exception:
                    log.exception("simulator: scenario %s failed", name)
                await self.pause(BETWEEN)
            if not loop:
                return

    async def answered_by(self, caller: str, agent: str | None = None) -> tuple[SimCall, str]:
        """A call to the pilot, queued in support, answered by ``agent`` (an idle one)."""
        sw = self.switch
        call = sw.arrive(caller, PILOT, {"CUSTOMER_ACCOUNT": "ACME-001"})
        await self.pause(0.5)
        sw.queue(call, SUPPORT)
        await self.pause(0.5)
        device = agent or sw.idle_agent(SUPPORT) or "6001"
        sw.deliver(call, device)
        await self.pause(1.0)
        sw.answer(call, device)
        return call, device


async def inbound_answered(d: Director) -> None:
    call, agent = await d.answered_by(CALLER, "6001")
    await d.pause(4.5)
    d.switch.clear_connection(call, agent)


async def inbound_abandoned(d: Director) -> None:
    sw = d.switch
    for agent in sw.members(SUPPORT):
        sw.agent_state(agent, "agentNotReady")
    call = sw.arrive("5559876543", PILOT)
    await d.pause(0.5)
    sw.queue(call, SUPPORT)
    await d.pause(3.0)
    sw.clear_connection(call, "5559876543")
    await d.pause(1.0)
    for agent in sw.members(SUPPORT):
        sw.agent_state(agent, "agentReady")


async def _consulted(d: Director, caller: str) -> tuple[SimCall, SimCall, str]:
    """A support call answered by 6001, who then consults 6002 (answered)."""
    call, agent = await d.answered_by(caller, "6001")
    await d.pause(2.0)
    consultation = d.switch.consult(call, agent, "6002")
    await d.pause(1.0)
    d.switch.answer(consultation, "6002")
    await d.pause(2.0)
    return call, consultation, agent


async def transferred(d: Director) -> None:
    call, consultation, agent = await _consulted(d, "5557770001")
    joined = d.switch.transfer(call, consultation, agent)
    await d.pause(3.0)
    d.switch.clear_connection(joined, "6002")


async def conferenced(d: Director) -> None:
    call, consultation, agent = await _consulted(d, "5557770002")
    joined = d.switch.conference(call, consultation, agent)
    await d.pause(3.0)
    d.switch.clear_connection(joined, "6002")
    await d.pause(1.0)
    d.switch.clear_connection(joined, agent)


async def held_retrieved(d: Director) -> None:
    sw = d.switch
    call, agent = await d.answered_by("5557770003", "6001")
    await d.pause(1.0)
    sw.hold(call, agent)
    await d.pause(2.0)
    sw.retrieve(call, agent)
    await d.pause(1.0)
    sw.clear_connection(call, agent)


async def agent_states(d: Director) -> None:
    sw = d.switch
    sw.log_on("6004", SALES)
    for state, cause in (("agentNotReady", "forcedPause"), ("agentReady", None),
                         ("agentWorkingAfterCall", None), ("agentReady", None)):  # fmt: skip
        await d.pause(1.0)
        sw.agent_state("6004", state, cause)
    await d.pause(1.0)
    sw.log_off("6004", SALES)


async def route_request(d: Director) -> None:
    sw = d.switch
    call = sw.arrive("5554446666", ROUTE_POINT)
    destination = await d.sim.route(call, ROUTE_POINT) or SUPPORT
    if destination in sw.groups:
        sw.queue(call, destination)
        await d.pause(0.5)
        agent = sw.idle_agent(destination)
        if agent is None:
            await d.pause(2.0)
            sw.clear_connection(call, call.calling)
            return
        destination = agent
    sw.deliver(call, destination)
    await d.pause(1.0)
    sw.answer(call, destination)
    await d.pause(3.0)
    sw.clear_connection(call, destination)


async def silent(d: Director) -> None:
    d.sim.go_silent()


async def drop(d: Director) -> None:
    d.sim.drop()


Scenario = Callable[[Director], Awaitable[None]]
SCENARIOS: Final[dict[str, Scenario]] = {
    "inbound_answered": inbound_answered,
    "inbound_abandoned": inbound_abandoned,
    "transferred": transferred,
    "conferenced": conferenced,
    "held_retrieved": held_retrieved,
    "agent_states": agent_states,
    "route_request": route_request,
    "silent": silent,
    "drop": drop,
}
CALL_SCENARIOS: Final = tuple(name for name in SCENARIOS if name not in ("silent", "drop"))
