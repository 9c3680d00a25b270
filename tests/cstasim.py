"""Test rigs for the CSTA adapter: ctilink's switch simulator and a ``CstaAdapter`` wired to
a real ``Hub`` (and so to the state tracker), over real TCP or in memory.

``Rig`` runs them over real TCP on 127.0.0.1 with the reactor; ``await rig.up()`` waits
for ``link_resynced``; ``rig.director`` plays the simulator's scenarios; ``rig.events`` is
everything the hub published, in order; ``rig.frames`` every whole frame the adapter's tap
saw (time, direction, bytes).

``ClockRig`` is the same on a ``task.Clock`` with no sockets: each connection the adapter
makes is joined to a new simulator connection through Twisted's in-memory transports
(``iosim``), and ``pump()`` moves the bytes until nothing moves. Timers (heartbeats,
timeouts, reconnect backoff, scenario pauses) run only when the test advances the clock.

Run as a script, it records the simulator's inbound-answered scenario into a hex JSON
Lines trace (how ``tests/fixtures/csta/inbound-answered.jsonl`` was made)::

    python -m tests.cstasim tests/fixtures/csta/inbound-answered.jsonl
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.test import iosim
from zope.interface import implementer

from ctilink.adapters.csta import CstaAdapter, CstaSettings
from ctilink.csta.simulator import CstaSimulator
from ctilink.csta.simulator_scenarios import Director, populate
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.routing.static import RouteDecision, Router
from ctilink.traces import TraceRecord
from tests.aio import deferred_result, until

DEVICES = ("6001", "6002", "6003", "6004")
GROUPS = ("support", "sales")
ROUTE_POINTS = ("800", "803")


def monitoring(**settings: Any) -> dict[str, Any]:
    """CstaSettings keywords: the simulator's devices, groups and route points, and more."""
    return {"devices": DEVICES, "acd_groups": GROUPS, "route_points": ROUTE_POINTS, **settings}


class Rig:
    def __init__(
        self,
        reactor: Any,
        *,
        xml: bool = False,
        pace: float = 0.0,
        router: Router | None = None,
        fallback: RouteDecision | None = None,
        hub: Hub | None = None,
        **settings: Any,
    ) -> None:
        self.reactor = reactor
        self.simulator = CstaSimulator(reactor, xml=xml, pace=pace, answer_delay=0.05)
        populate(self.simulator.switch)
        port = self.simulator.listen(reactor)
        self.director = Director(self.simulator)
        self.hub = hub or Hub()
        self.events: list[ev.Event] = []
        self.hub.subscribe(self.events.append)
        options = monitoring(reconnect_initial_delay=0.05, reconnect_max_delay=0.2, **settings)
        self.settings = CstaSettings(host="127.0.0.1", port=port, xml=xml, **options)
        self.adapter = CstaAdapter(
            "pbx", self.settings, self.hub.publish, reactor, router=router, fallback=fallback
        )
        self.frames: list[tuple[float, str, bytes]] = []
        self.adapter.taps.append(lambda at, way, data: self.frames.append((at, way, data)))

    def types(self, since: int = 0) -> list[str]:
        return [event.TYPE for event in self.events[since:]]

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if kind == event.TYPE)

    async def up(self, resyncs: int = 1) -> None:
        """Start (if needed) and wait for the ``resyncs``-th ``link_resynced``."""
        if self.adapter.connections == 0:
            self.adapter.start()
        await until(lambda: self.count("link_resynced") >= resyncs, timeout=10)

    async def play(self, name: str) -> None:
        await deferred_result(Deferred.fromCoroutine(self.director.play(name)))

    async def settle(self, kind: str = "call_cleared", count: int = 1) -> None:
        await until(lambda: self.count(kind) >= count, timeout=10)

    async def stop(self) -> None:
        await deferred_result(self.adapter.stop())
        await deferred_result(self.simulator.stop())


@implementer(IStreamClientEndpoint)
class SimulatorEndpoint:
    """Each connect() joins a new client protocol to a new simulator protocol in memory."""

    def __init__(self, simulator: CstaSimulator, clock: Clock) -> None:
        self.simulator = simulator
        self.clock = clock
        self.pumps: list[Any] = []
        self.refuse = False

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        if self.refuse:
            from twisted.internet.error import ConnectionRefusedError

            return Deferred.fromCoroutine(_raise(ConnectionRefusedError()))
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        server = self.simulator.buildProtocol(None)
        pump = iosim.connect(
            server,
            iosim.makeFakeServer(server),
            client,
            iosim.makeFakeClient(client),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        return succeed(client)

    def pump(self) -> None:
        for _ in range(100):
            if not any(pump.flush() for pump in list(self.pumps)):
                return


async def _raise(exc: Exception) -> Any:
    raise exc


class ClockRig:
    """The adapter and the simulator on a ``Clock``, joined in memory (see the module doc)."""

    def __init__(
        self,
        *,
        router: Router | None = None,
        fallback: RouteDecision | None = None,
        switch_password: str | None = None,
        xml: bool = False,
        alcatel: bool = False,
        **settings: Any,
    ) -> None:
        self.clock = Clock()
        session = bool(settings.get("xml_application_session"))
        self.simulator = CstaSimulator(
            self.clock, xml=xml, alcatel=alcatel, pace=0.0, password=switch_password,
            application_session=session,
            heartbeat_interval=5.0,
        )  # fmt: skip
        populate(self.simulator.switch)
        self.director = Director(self.simulator)
        self.endpoint = SimulatorEndpoint(self.simulator, self.clock)
        self.hub = Hub()
        self.events: list[ev.Event] = []
        self.hub.subscribe(self.events.append)
        options = monitoring(heartbeat_interval=5.0, heartbeat_timeout=10.0, **settings)
        self.settings = CstaSettings(
            host="switch", port=1, xml=xml, alcatel_handshake=alcatel, **options
        )
        self.adapter = CstaAdapter(
            "pbx",
            self.settings,
            self.hub.publish,
            self.clock,
            endpoint=self.endpoint,
            retry_policy=lambda attempt: 1.0,
            router=router,
            fallback=fallback,
        )

    def start(self) -> None:
        self.adapter.start()
        self.pump()

    def pump(self) -> None:
        self.clock.advance(0)
        self.endpoint.pump()

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Let ``seconds`` pass, moving bytes after every ``step``."""
        left = seconds
        while left > 1e-9:
            self.clock.advance(min(step, left))
            left -= step
            self.pump()

    def play(self, name: str) -> None:
        """Play a scenario to its end (its pauses take no time: pace 0)."""
        done = Deferred.fromCoroutine(self.director.play(name))
        for _ in range(1000):
            self.pump()
            if done.called:
                return
            self.clock.advance(0.1)
        raise AssertionError(f"scenario {name} did not finish")

    def types(self, since: int = 0) -> list[str]:
        return [event.TYPE for event in self.events[since:]]

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if kind == event.TYPE)

    def of(self, kind: str) -> list[Any]:
        return [event for event in self.events if kind == event.TYPE]


async def record(path: str, scenario: str = "inbound_answered", pace: float = 1.0) -> None:
    from twisted.internet import reactor

    from ctilink.adapters.csta_trace import write_csta_jsonl

    rig = Rig(reactor, pace=pace)
    await rig.up()
    await rig.play(scenario)
    await rig.settle()
    await asyncio.sleep(0.2)
    await rig.stop()
    start = rig.frames[0][0]
    records = [
        TraceRecord(round(at - start, 6), way, data, f"frame {index}")  # type: ignore[arg-type]
        for index, (at, way, data) in enumerate(rig.frames, 1)
    ]
    write_csta_jsonl(path, records)


def main(argv: list[str]) -> None:  # pragma: no cover - a maintenance tool
    from ctilink.reactor import install_asyncio_reactor

    install_asyncio_reactor()
    from twisted.internet import reactor

    async def run() -> None:
        try:
            await record(argv[0], *argv[1:2])  # type: ignore[arg-type]
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromFuture(asyncio.ensure_future(run())))
    reactor.run()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
