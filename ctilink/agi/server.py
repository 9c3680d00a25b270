"""The FastAGI routing entry point: Asterisk asks, the router decides, the dialplan reads.

Theory of operation
-------------------
The dialplan runs ``AGI(agi://ctilink:4573/route,<args>)``; Asterisk connects and sends the
environment of the channel. One ``FastAgiProtocol`` serves that one session:

1. wait for the whole environment (``AgiServerConnection`` frames and bounds it);
2. resolve the ctilink ``call_id`` of the channel (``resolve_call(uniqueid, channel)``,
   which the daemon answers from the AMI side of the same call) and publish a
   ``route_request`` event for the route point ``agi_extension``;
3. ask the router, within ``budget`` seconds: a router that fails, answers nonsense or is
   slower gets the configured ``fallback`` answered instead (a WARNING says why, and
   ``FastAgiFactory.fallbacks`` counts it), so a caller never waits on a sick router;
4. publish ``route_selected`` and send ``SET VARIABLE ROUTE_QUEUE``, ``ROUTE_PRIORITY`` and
   (when an agent is chosen) ``ROUTE_AGENT``, one at a time, each after the previous one's
   ``200`` reply; then close, which ends the AGI and lets the dialplan go on.

Every session is bounded in time (``session_timeout``, from connect to the last reply) and
in memory (the codec's bounds); a session that breaks either, sends garbage, gets a
non-200 reply or a ``HANGUP`` is logged at WARNING with its peer and closed. Nothing here
blocks, so one stuck or hostile client never delays another session. The time from a
complete environment to the last reply of each answered session is kept in
``FastAgiFactory.latencies`` (the most recent ``max_latencies``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure

from ctilink.agi.codec import (
    NEED_DATA,
    AgiCommand,
    AgiEnvironment,
    AgiHangup,
    AgiReply,
    AgiServerConnection,
    AgiState,
    set_variable,
)
from ctilink.errors import LocalProtocolError, RemoteProtocolError
from ctilink.model.events import Event, RouteRequest, RouteSelected
from ctilink.routing.static import RouteDecision, RouteQuery, Router

log = logging.getLogger(__name__)

# The agi_* fields a route request carries in route_data, besides the script and its args.
ROUTE_DATA_FIELDS: Final = (
    "channel",
    "uniqueid",
    "context",
    "extension",
    "priority",
    "calleridname",
    "dnid",
    "rdnis",
    "accountcode",
    "language",
)


def route_data(env: AgiEnvironment) -> dict[str, str]:
    """What the switch sent with the request: script, useful agi_* fields, agi_arg_N."""
    data = {"script": env.script} if env.script else {}
    for name in ROUTE_DATA_FIELDS:
        value = env.get(name)
        if value is not None:
            data[name] = value
    data.update((f"arg_{index}", arg) for index, arg in enumerate(env.args, 1))
    return data


def route_commands(decision: RouteDecision) -> list[AgiCommand]:
    """The SET VARIABLE commands the dialplan (asterisk-config/extensions.conf) reads."""
    commands = []
    if decision.queue:
        commands.append(set_variable("ROUTE_QUEUE", decision.queue))
    commands.append(set_variable("ROUTE_PRIORITY", str(decision.priority)))
    if decision.agent:
        commands.append(set_variable("ROUTE_AGENT", decision.agent))
    return commands


def describe_peer(address: IAddress) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


class FastAgiProtocol(Protocol):
    """One FastAGI session: environment → route request → decision → SET VARIABLEs."""

    def __init__(self, factory: FastAgiFactory) -> None:
        self.factory = factory
        self.connection = AgiServerConnection()
        self.peer = "?"
        self._timer: IDelayedCall | None = None
        self._routing: Deferred[Any] | None = None
        self._query: RouteQuery | None = None
        self._env: AgiEnvironment | None = None
        self._pending: list[AgiCommand] = []
        self._sent: AgiCommand | None = None
        self._started = 0.0
        self._received = 0
        self._done = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            AgiEnvironment: self._on_environment,
            AgiReply: self._on_reply,
            AgiHangup: self._on_hangup,
        }

    # -- transport shim --------------------------------------------------------------------
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.peer = describe_peer(self.transport.getPeer())
        self._timer = self.factory.clock.callLater(self.factory.session_timeout, self._expire)

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._received += len(data)
        try:
            self.connection.receive_data(data)
            while not self._done:
                event = self.connection.next_event()
                if event is NEED_DATA:
                    return
                handler = self._handlers.get(type(event))
                if handler is not None:
                    handler(event)
        except RemoteProtocolError as exc:
            self._stop(f"bad FastAGI input: {exc}", abort=True)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done:
            pass
        elif self._received == 0:  # a port probe or health check, not a session
            log.debug("FastAGI %s: closed without sending anything", self.peer)
        else:
            self._warn(f"the peer closed the connection {self._progress()}")
        self._finish()

    # -- session ---------------------------------------------------------------------------
    def _on_environment(self, env: AgiEnvironment) -> None:
        self._env = env
        self._started = self.factory.clock.seconds()
        uniqueid, channel = env.get("uniqueid"), env.get("channel")
        if uniqueid is None or channel is None:
            self._stop("the AGI environment has no agi_uniqueid or agi_channel")
            return
        try:
            call_id = self.factory.resolve_call(uniqueid, channel)
        except Exception as exc:
            self._warn(f"no call for uniqueid {uniqueid}: {exc!r}; answering the fallback")
            self.factory.fallbacks += 1
            self._answer(self.factory.fallback, route_commands(self.factory.fallback))
            return
        extension = env.get("extension")
        self._query = RouteQuery(
            switch=self.factory.switch,
            call_id=call_id,
            calling_number=env.get("callerid"),
            called_number=env.get("dnid") or extension,
            route_point=extension,
            data=route_data(env),
        )
        self._publish_request(self._query)
        routing: Deferred[Any] = maybeDeferred(self.factory.router.route, self._query)
        if not routing.called:  # no timer for a router that answered at once
            routing.addTimeout(self.factory.budget, self.factory.clock)
        self._routing = routing  # before addBoth: a router may answer at once
        routing.addBoth(self._on_routed)

    def _on_routed(self, result: object) -> None:
        self._routing = None
        if self._done:  # closed meanwhile; this also swallows the router's failure
            return
        decision, commands = self._checked(result)
        if self._query is not None:
            self._publish_selected(self._query, decision)
        self._answer(decision, commands)

    def _checked(self, result: object) -> tuple[RouteDecision, list[AgiCommand]]:
        """The router's decision and its commands, or the fallback's and why (logged)."""
        if isinstance(result, RouteDecision):
            try:
                return result, route_commands(result)
            except LocalProtocolError as exc:
                why = f"the router's decision cannot be sent ({exc})"
        elif isinstance(result, Failure) and result.check(TimeoutError):
            why = f"the router did not answer within the {self.factory.budget:g} s budget"
        elif isinstance(result, Failure):
            why = f"the router failed: {type(result.value).__name__}: {result.getErrorMessage()}"
        else:
            why = f"the router answered {result!r}, not a RouteDecision"
        fallback = self.factory.fallback
        self._warn(f"{why}; answering the fallback {fallback.destination}")
        self.factory.fallbacks += 1
        return fallback, route_commands(fallback)

    def _answer(self, decision: RouteDecision, commands: list[AgiCommand]) -> None:
        log.debug("FastAGI %s: answering %s", self.peer, decision)
        self._pending = commands
        self._send_next()

    def _send_next(self) -> None:
        assert self.transport is not None
        self._sent = self._pending.pop(0)
        self.transport.write(self.connection.send(self._sent))

    def _on_reply(self, reply: AgiReply) -> None:
        if reply.code < 200:  # provisional; the final reply follows
            return
        if not reply.ok:
            command = self._sent.line if self._sent else "?"
            self._stop(f"{command!r} was answered {' / '.join(reply.lines)!r}")
        elif self._pending:
            self._send_next()
        else:
            self.factory.latencies.append(self.factory.clock.seconds() - self._started)
            self.factory.answered += 1
            self._stop(None)

    def _on_hangup(self, _event: AgiHangup) -> None:
        self._stop(f"the channel hung up {self._progress()}")

    def _expire(self) -> None:
        self._timer = None
        what = (
            "no complete AGI environment"
            if self.connection.state is AgiState.ENVIRONMENT
            else "the session did not finish"
        )
        self._stop(f"{what} within {self.factory.session_timeout:g} s", abort=True)

    # -- helpers ---------------------------------------------------------------------------
    def _progress(self) -> str:
        if self._env is None:
            return "in the middle of the environment"
        if self._sent is None:
            return "before the route was answered"
        return f"before the reply to {self._sent.line!r}"

    def _publish(self, event: Event) -> None:
        """Publish; a failing consumer chain is a bug to log, never a reason to fail a call."""
        try:
            self.factory.publish(event)
        except Exception:
            log.exception("FastAGI %s: publishing %s failed", self.peer, event.TYPE)

    def _publish_request(self, query: RouteQuery) -> None:
        self._publish(
            RouteRequest(
                switch=query.switch,
                time=self.factory.clock.seconds(),
                call_id=query.call_id,
                device=query.route_point,
                calling_number=query.calling_number,
                called_number=query.called_number,
                connection_state=None,
                route_data=query.data,
            )
        )

    def _publish_selected(self, query: RouteQuery, decision: RouteDecision) -> None:
        self._publish(
            RouteSelected(
                switch=query.switch,
                time=self.factory.clock.seconds(),
                call_id=query.call_id,
                device=query.route_point,
                calling_number=query.calling_number,
                called_number=query.called_number,
                connection_state=None,
                destination=decision.destination,
                priority=decision.priority,
                rule=decision.rule,
            )
        )

    def _warn(self, message: str) -> None:
        channel = self._env.get("channel") if self._env is not None else None
        log.warning("FastAGI %s%s: %s", self.peer, f" ({channel})" if channel else "", message)

    def _stop(self, problem: str | None, *, abort: bool = False) -> None:
        """End the session; ``problem`` (logged at WARNING) is None for a normal end."""
        if self._done:
            return
        if problem is not None:
            self._warn(f"{problem}; closing")
        self._finish()
        if self.transport is not None:
            if abort:
                self.transport.abortConnection()  # type: ignore[attr-defined]
            else:
                self.transport.loseConnection()

    def _finish(self) -> None:
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._routing is not None:
            routing, self._routing = self._routing, None
            routing.cancel()


class FastAgiFactory(ServerFactory):
    """FastAGI sessions for one switch; listen with ``reactor.listenTCP(4573, factory)``."""

    def __init__(
        self,
        switch: str,
        router: Router,
        publish: Callable[[Event], object],
        resolve_call: Callable[[str, str], str],
        clock: IReactorTime,
        *,
        fallback: RouteDecision,
        budget: float = 0.3,
        session_timeout: float = 10.0,
        max_latencies: int = 10_000,
    ) -> None:
        route_commands(fallback)  # refuse (LocalProtocolError) a fallback we could not send
        if not 0 < budget < session_timeout:
            raise ValueError(f"need 0 < budget ({budget}) < session_timeout ({session_timeout})")
        self.switch = switch
        self.router = router
        self.publish = publish
        self.resolve_call = resolve_call
        self.clock = clock
        self.fallback = fallback
        self.budget = budget
        self.session_timeout = session_timeout
        self.fallbacks = 0
        self.answered = 0
        self.latencies: deque[float] = deque(maxlen=max_latencies)

    def buildProtocol(self, addr: IAddress | None) -> FastAgiProtocol:
        return FastAgiProtocol(self)
