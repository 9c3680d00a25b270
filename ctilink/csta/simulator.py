"""A CSTA switch simulator: a real TCP server speaking the bytes a switch speaks.

    ctilink simulate csta --listen PORT [--xml]        (``main``; ``run_simulator``)

Theory of operation
-------------------
``CstaSimulator`` listens; each TCP connection is a ``SimulatorProtocol`` holding the
server side of ctilink's own sans-I/O session (``CstaConnection`` for ECMA-285 BER with
ACSE, optionally the Alcatel ``B``/``P`` start; ``CstaXmlConnection`` for ECMA-323 XML),
so the simulator speaks exactly what the codecs define, heartbeats included. It answers
the services a CTI application sends, from one switch model (``simulator_switch``):

    monitorStart/Stop, snapshotDevice, routeRegister, makeCall, answerCall,
    clearConnection, clearCall, holdCall, retrieveCall, consultationCall, transferCall,
    conferenceCall, singleStepTrans, deflectCall, alternateCall, reconnectCall,
    setAgentState, getAgentState; routeSelectRequest / routeEndRequest in a routeing
    dialogue. Anything else: universalFailure ``serviceNotSupported``.

Event reports go to every monitor of every connection whose device the event involves.
Called devices answer by themselves after ``answer_delay`` (makeCall, consultation,
transfers); scripted scenarios (``simulator_scenarios``) drive the inbound calls. A test
can make the next request of an operation fail (``fail_next``), the switch go silent
(``go_silent``: sockets stay open, nothing is read or sent), drop every connection
(``drop``) or send bytes of its own (``send_raw``). ``frames_in`` / ``frames_out`` keep
every whole frame received and sent. Delays run on the injected clock; ``pace`` scales
the scenarios' pauses (0: as fast as the reactor turns).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure

from ctilink.adapters.csta import CstaSession, CstaSettings, make_session
from ctilink.adapters.csta_taps import FrameSplitter
from ctilink.adapters.csta_values import named
from ctilink.csta import CstaMessage, operations
from ctilink.csta import connection as link
from ctilink.csta.simulator_services import SERVICES, Failure_, ServiceError
from ctilink.csta.simulator_switch import SimCall, Switch
from ctilink.errors import RemoteProtocolError

log = logging.getLogger(__name__)

ROUTE_TIMER: Final = 5  # seconds the switch waits for a route select


class SimulatorProtocol(Protocol):
    def __init__(self, simulator: CstaSimulator) -> None:
        self.sim = simulator
        self.monitors: dict[bytes, str] = {}
        self.session: CstaSession | None = None
        self._frames = FrameSplitter(xml=simulator.settings.xml, role="server",
                                     alcatel=simulator.settings.alcatel_handshake)  # fmt: skip

    def connectionMade(self) -> None:
        self.sim.connections.append(self)
        self.session = make_session(
            self.sim.settings, "server", self.sim.clock, self.send, self.on_event
        )
        if self.sim.settings.xml and not self.sim.application_session:
            self.session.initiate()  # no ACSE: the TCP connection is the association

    def dataReceived(self, data: bytes) -> None:
        if self.sim.silent or self.session is None:
            return
        with contextlib.suppress(RemoteProtocolError):  # the session says why, and closes
            self.sim.frames_in.extend(self._frames.frames(data))
        self.session.receive_data(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self in self.sim.connections:
            self.sim.connections.remove(self)
        if self.session is not None:
            self.session.connection_lost(reason.getErrorMessage())

    def send(self, data: bytes) -> None:
        if self.sim.silent or self.transport is None:
            return
        self.sim.frames_out.append(data)
        self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- the session -----------------------------------------------------------------------
    def on_event(self, event: link.ConnectionEvent) -> None:
        if isinstance(event, link.AssociationRequested):
            password = self.sim.password
            if password is not None and event.request.password != password:
                log.info("simulator: refusing an association (wrong password)")
                self._session().refuse("authentication-failure")
            else:
                self._session().accept()
        elif isinstance(event, link.Invoked) and not event.answered:
            self._serve(event.message)
        elif isinstance(event, link.Released) and self.transport is not None:
            self.transport.loseConnection()  # after the RLRE is written
        elif isinstance(event, link.LinkDown):
            self.abort()

    def _session(self) -> CstaSession:
        assert self.session is not None
        return self.session

    def _serve(self, message: CstaMessage) -> None:
        self.sim.requests.append(message)
        operation = message.operation or ""
        invoke_id = message.invoke_id
        assert invoke_id is not None
        op = operations.BY_NAME[operation]
        try:
            injected = self.sim.fail_next.pop(operation, None)
            if injected is not None:
                raise ServiceError(injected)
            handler = SERVICES.get(operation)
            if handler is None:
                raise ServiceError(("operation", "serviceNotSupported"))
            result = handler(self, message.argument)
        except ServiceError as exc:
            if op.result is not None:
                self._session().send_error(invoke_id, exc.failure)
            return
        if op.result is not None:
            self._session().send_result(invoke_id, operation, result)

    def report(
        self, event_class: str, event: str, value: dict[str, Any], involved: frozenset[str]
    ) -> None:
        for cross_ref, device in self.monitors.items():
            if device in involved:
                argument = {"crossRefIdentifier": cross_ref,
                            "eventSpecificInfo": (event_class, (event, value))}  # fmt: skip
                self.sim.invoke(self, "cSTAEventReport", argument)


class CstaSimulator(ServerFactory):
    """The switch: its model, its connections, what crossed the wire (see the module doc)."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        xml: bool = False,
        alcatel: bool = False,
        application_session: bool = False,
        password: str | None = None,
        heartbeat_interval: float = 30.0,
        answer_delay: float = 1.0,
        route_timer: int = ROUTE_TIMER,
        pace: float = 1.0,
    ) -> None:
        self.clock = clock
        self.settings = CstaSettings(
            host="", port=0, xml=xml, alcatel_handshake=alcatel,
            heartbeat_interval=heartbeat_interval, heartbeat_timeout=2 * heartbeat_interval,
        )  # fmt: skip
        self.password = password
        self.application_session = application_session  # XML: expect ECMA-354 first
        self.answer_delay = answer_delay
        self.route_timer = route_timer
        self.pace = pace
        self.switch = Switch(self._report, user_data=not xml)
        self.connections: list[SimulatorProtocol] = []
        self.cross_refs = itertools.count(1)
        self.registrations: dict[str, tuple[SimulatorProtocol, bytes]] = {}
        self._routes: dict[bytes, tuple[Deferred[str | None], IDelayedCall, SimulatorProtocol]] = {}
        self.fail_next: dict[str, Failure_] = {}
        self.requests: list[CstaMessage] = []
        self.frames_in: list[bytes] = []
        self.frames_out: list[bytes] = []
        self.silent = False
        self.port: Any = None

    def buildProtocol(self, addr: IAddress | None) -> SimulatorProtocol:
        return SimulatorProtocol(self)

    def listen(self, reactor: Any, port: int = 0, interface: str = "127.0.0.1") -> int:
        self.port = reactor.listenTCP(port, self, interface=interface)
        return int(self.port.getHost().port)

    def stop(self) -> Deferred[None]:
        self.drop()
        return succeed(None) if self.port is None else self.port.stopListening()

    # -- what tests and scenarios do -------------------------------------------------------
    def go_silent(self) -> None:
        """Keep every socket open but read and send nothing (a hung switch)."""
        self.silent = True

    def drop(self) -> None:
        """Reset every connection (the switch restarted, a cable was pulled)."""
        self.silent = False
        for proto in list(self.connections):
            proto.abort()

    def send_raw(self, data: bytes) -> None:
        for proto in self.connections:
            proto.send(data)

    @property
    def monitored(self) -> set[str]:
        return {device for proto in self.connections for device in proto.monitors.values()}

    def invoke(self, proto: SimulatorProtocol, operation: str, argument: Any) -> None:
        done = proto._session().send_invoke(operation, argument, timeout=5.0)
        done.addErrback(lambda _failure: None)  # event reports are not answered

    def _report(
        self, event_class: str, event: str, value: dict[str, Any], involved: frozenset[str]
    ) -> None:
        for proto in list(self.connections):
            proto.report(event_class, event, value, involved)

    def later(self, delay: float, action: Callable[[], object]) -> None:
        self.clock.callLater(delay * self.pace, action)

    def reachable(self, destination: str) -> bool:
        """Whether a route can go to ``destination``: an ACD group or a dialling number."""
        return destination in self.switch.groups or destination.isdigit()

    def ring(self, call: SimCall, device: str) -> None:
        """``call`` reaches ``device``: an extension rings and answers; others are outside."""
        if device.isdigit() and len(device) <= 5:
            self.switch.deliver(call, device)
        else:
            self.switch.reach_network(call, "trunk1")
        self.answer_later(call, device)

    def answer_later(self, call: SimCall, device: str) -> None:
        def answer() -> None:
            if call.call_id in self.switch.calls and call.connections.get(device) == "alerting":
                self.switch.answer(call, device)

        self.later(self.answer_delay, answer)

    # -- routeing --------------------------------------------------------------------------
    def route(self, call: SimCall, point: str) -> Deferred[str | None]:
        """Ask the registered routeing server where ``call`` at ``point`` goes; None when
        it ends the dialogue or does not answer within the routeing timer."""
        registered = self.registrations.get(point)
        if registered is None or registered[0] not in self.connections:
            return succeed(None)
        proto, register_id = registered
        cross_ref = b"RT%d" % next(self.cross_refs)
        answer: Deferred[str | None] = Deferred()
        timer = self.clock.callLater(self.route_timer, self._route_expired, cross_ref)
        self._routes[cross_ref] = (answer, timer, proto)
        self.invoke(proto, "routeRequest", {
            "crossRefIdentifier": cross_ref, "routeRegisterReqID": register_id,
            "currentRoute": named(point), "callingDevice": named(call.calling),
            "routeingDevice": named(point), "routedCall": self.switch.conn(call, point),
            "replyTimeout": self.route_timer,
        })  # fmt: skip
        return answer

    def route_answered(self, cross_ref: bytes, destination: str | None) -> None:
        entry = self._routes.get(cross_ref)
        if entry is None:
            return
        answer, timer, proto = entry
        if destination is not None and not self.reachable(destination):
            self.invoke(proto, "reRouteRequest", {"crossRefIdentifier": cross_ref})
            return  # the routeing timer runs on
        del self._routes[cross_ref]
        timer.cancel()
        if destination is not None:  # the switch ends the dialogue once the route is used
            self.invoke(proto, "routeEndRequest", {"crossRefIdentifier": cross_ref})
        answer.callback(destination)

    def _route_expired(self, cross_ref: bytes) -> None:
        entry = self._routes.pop(cross_ref, None)
        if entry is not None:
            answer, _timer, proto = entry
            end = {"crossRefIdentifier": cross_ref,
                   "errorValue": ("operation", "routeingTimerExpired")}  # fmt: skip
            self.invoke(proto, "routeEndRequest", end)
            answer.callback(None)


def run_simulator(
    reactor: Any,
    port: int,
    *,
    xml: bool = False,
    interface: str = "127.0.0.1",
    scenarios: Sequence[str] | None = None,
    loop: bool = True,
    pace: float = 1.0,
    alcatel: bool = False,
) -> CstaSimulator:
    """Listen on ``port`` and play ``scenarios`` (default: every call scenario) in turn,
    ``loop``-ing, once a CTI application has started its monitors."""
    from ctilink.csta.simulator_scenarios import CALL_SCENARIOS, Director, populate

    simulator = CstaSimulator(reactor, xml=xml, alcatel=alcatel, pace=pace)
    populate(simulator.switch)
    simulator.listen(reactor, port, interface)
    Director(simulator).play_when_monitored(scenarios or CALL_SCENARIOS, loop=loop)
    return simulator


def main(argv: Sequence[str] | None = None) -> int:
    """``ctilink simulate csta``: run the simulator until Ctrl-C."""
    from ctilink.csta.simulator_scenarios import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="ctilink simulate csta", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", type=int, required=True, metavar="PORT")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--xml", action="store_true", help="ECMA-323 XML instead of BER")
    parser.add_argument("--alcatel", action="store_true", help="expect Alcatel's B/P start")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--once", action="store_true", help="play the scenarios once")
    parser.add_argument("--pace", type=float, default=1.0, help="pause multiplier (0: no pauses)")
    args = parser.parse_args(argv)

    from ctilink.reactor import install_asyncio_reactor

    install_asyncio_reactor()
    from twisted.internet import reactor

    simulator = run_simulator(
        reactor, args.listen, xml=args.xml, interface=args.interface, scenarios=args.scenario,
        loop=not args.once, pace=args.pace, alcatel=args.alcatel,
    )  # fmt: skip
    encoding = "XML" if args.xml else "BER"
    print(f"CSTA simulator ({encoding}) listening on {args.interface}:{args.listen}", flush=True)
    del simulator
    reactor.run()
    return 0
