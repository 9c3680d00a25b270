"""The CSTA association, sans-I/O: state machine, invokeID correlation, heartbeats.

Theory of operation
-------------------
``CstaConnection`` is one end of a CSTA link (``role="client"`` for the CTI application,
``"server"`` for a switch or the simulator). It owns no socket and no reactor: bytes from
the peer go in through ``receive_data``; bytes for the peer and events for the caller go
out through the two callables it was given (``send``, ``on_event``), because timers (the
injected ``clock``) produce output too, as in twisted.names' protocol.

States (every transition is in ``_STATES`` at the bottom)::

    IDLE --initiate()/AARQ received--> ASSOCIATING --AARE accept--> ASSOCIATED
    ASSOCIATED --release()/RLRQ received--> RELEASING --RLRE--> CLOSED
    any --AARE reject, ABRT, protocol error, heartbeat loss, EOF--> CLOSED

Requests (``send_invoke``) get an invokeID from 1..32767 (skipping those still pending)
and a Deferred that fires once: with the result ``CstaMessage``; with a ``CstaError``
when the switch answers universalFailure or rejects the request (``operations``), when
``timeout`` expires (``timeout``) or when the link goes (``link_down``). Operations that
never return a result (event reports, routeing requests) fire ``None`` once their timeout
passed without an error. A late answer to a timed-out request is dropped; an answer to an
invokeID never used is rejected (ROSE ``unrecognizedInvocation``), as is an invoke that
does not decode (``unrecognizedOperation``, ``mistypedArgument``).

Incoming invokes (event reports, routeRequest, systemStatus) become ``Invoked`` events.
systemStatus is answered here (``noData``) and flagged ``answered``; the caller answers
the others that expect a result with ``send_result``/``send_error``.

Heartbeats: once associated, each side sends systemStatus(normal) every
``heartbeat_interval`` seconds; an answer (result, error or reject: the peer is alive)
resets the count; ``heartbeat_misses`` unanswered in a row declare the link down
(``LinkDown("heartbeat")``). Alcatel's documented default is the same scheme (every 30 s,
down after two unanswered).

Everything above but ACSE and ROSE (states, requests, timers, feeding the framer) is
``BaseConnection``, which ``xml_connection.CstaXmlConnection`` shares.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Final

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ctilink.csta import CstaMessage, acse, operations, rose
from ctilink.csta.framing import CLOSED as FRAMER_CLOSED
from ctilink.csta.framing import HANDSHAKE, NEED_DATA, Framer, Role, StreamFramer
from ctilink.csta.operations import CstaError
from ctilink.errors import LocalProtocolError, RemoteProtocolError

log = logging.getLogger(__name__)

_MAX_INVOKE_ID: Final = 32767
_EXPIRED_MEMORY: Final = 256


class State(Enum):
    IDLE = "idle"
    ASSOCIATING = "associating"
    ASSOCIATED = "associated"
    RELEASING = "releasing"
    CLOSED = "closed"


# -- events for the caller -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AssociationRequested:
    """Server: the peer asks for an association; answer with ``accept()`` or ``refuse()``."""

    request: acse.AssociateRequest


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """The association is up; ``csta_version`` is the one agreed."""

    response: acse.AssociateResponse
    csta_version: str | None


@dataclass(frozen=True, slots=True)
class AssociationRefused:
    response: acse.AssociateResponse


@dataclass(frozen=True, slots=True)
class Invoked:
    """The peer invoked an operation; ``answered`` when the connection already replied."""

    message: CstaMessage
    answered: bool = False


@dataclass(frozen=True, slots=True)
class PeerRejected:
    """The peer rejected a PDU of ours that no pending request accounts for."""

    message: CstaMessage


@dataclass(frozen=True, slots=True)
class Released:
    """The association ended by an orderly release."""


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The link is unusable: ``reason`` ``heartbeat``, ``timeout``, ``protocol_error``,
    ``aborted`` or ``closed``; the caller closes the transport."""

    reason: str
    detail: str


ConnectionEvent = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRefused
    | Invoked
    | PeerRejected
    | Released
    | LinkDown
)


@dataclass
class _Pending:
    operation: str
    deferred: Deferred[CstaMessage | None]
    timer: IDelayedCall


class BaseConnection:
    """What ``CstaConnection`` (BER) and ``xml_connection.CstaXmlConnection`` share: the
    states, requests and their invoke ids, timeouts, heartbeats, and feeding the framer.

    A subclass supplies its framer (``_framer``), how a message goes out
    (``_send_message``), what one framed item does (``_on_item``), and its names."""

    _NAME: ClassVar[str]  # in log lines and errors: "CSTA", "CSTA XML"
    _LINK: ClassVar[str]  # in a refused transition: "CSTA association", "CSTA XML link"
    _log: ClassVar[logging.Logger]
    _framer: StreamFramer[Any]

    def __init__(
        self,
        role: Role,
        clock: IReactorTime,
        *,
        send: Callable[[bytes], None],
        on_event: Callable[[ConnectionEvent], None],
        invoke_timeout: float,
        association_timeout: float,
        heartbeat_interval: float | None,
        heartbeat_misses: int,
        max_invoke_id: int,
    ) -> None:
        if heartbeat_misses < 1:
            raise LocalProtocolError("heartbeat_misses must be at least 1")
        self.role = role
        self.state = State.IDLE
        self.csta_version: str | None = None
        self._clock = clock
        self._send = send
        self._on_event = on_event
        self._invoke_timeout = invoke_timeout
        self._association_timeout = association_timeout
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_misses = heartbeat_misses
        self._max_invoke_id = max_invoke_id
        self._last_id = 0  # the invoke id allocator's position
        self._pending: dict[int, _Pending] = {}
        self._expired: OrderedDict[int, None] = OrderedDict()
        self._timer: IDelayedCall | None = None  # association/release guard, heartbeat
        self._heartbeat_id: int | None = None
        self._missed = 0

    # -- what a subclass supplies --------------------------------------------------------
    def _send_message(self, message: CstaMessage) -> None:
        raise NotImplementedError

    def _on_item(self, item: Any) -> None:
        """One item from the framer, neither ``NEED_DATA`` nor ``CLOSED``."""
        raise NotImplementedError

    # -- the caller's side ---------------------------------------------------------------
    def send_invoke(
        self, operation: str, argument: Any, timeout: float | None = None
    ) -> Deferred[CstaMessage | None]:
        """Invoke ``operation``; the Deferred fires once (see the module docstring)."""
        if operation not in operations.BY_NAME:
            raise LocalProtocolError(f"unknown CSTA operation {operation!r}")
        if self.state is not State.ASSOCIATED:
            return fail(CstaError("link_down", operation, f"link is {self.state.value}"))
        return self._invoke(operation, argument, timeout)[1]

    def _invoke(
        self, operation: str, argument: Any, timeout: float | None
    ) -> tuple[int, Deferred[CstaMessage | None]]:
        invoke_id = self._next_id()
        self._send_message(CstaMessage("invoke", invoke_id, operation, argument))
        delay = self._invoke_timeout if timeout is None else timeout
        deferred: Deferred[CstaMessage | None] = Deferred(lambda _d: self._forget(invoke_id))
        timer = self._clock.callLater(delay, self._expire, invoke_id, delay)
        self._pending[invoke_id] = _Pending(operation, deferred, timer)
        return invoke_id, deferred

    def send_result(self, invoke_id: int, operation: str, result: Any) -> None:
        """Answer the peer's invoke ``invoke_id`` of ``operation`` with ``result``."""
        self._send_message(CstaMessage("result", invoke_id, operation, result))

    def send_error(self, invoke_id: int, failure: tuple[str, Any]) -> None:
        """Answer the peer's invoke with universalFailure (XML: ``CSTAErrorCode``) ``failure``."""
        self._send_message(
            CstaMessage("error", invoke_id, argument=failure, error="universalFailure")
        )

    def connection_lost(self, detail: str = "connection lost") -> None:
        """The transport is gone; pending requests fail with ``link_down``."""
        if self.state is not State.CLOSED:
            self._down("closed", detail)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # -- bytes from the peer -------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer (``b""`` at EOF). Never raises for what the peer sent:
        a broken link becomes a ``LinkDown`` event."""
        if self.state is State.CLOSED:
            return
        try:
            self._framer.receive_data(data)
            while not self.closed:
                item = self._framer.next_item()
                if item is NEED_DATA:
                    return
                if item is FRAMER_CLOSED:
                    self._down("closed", "the peer closed the connection")
                    return
                self._on_item(item)
        except RemoteProtocolError as exc:
            self._down("protocol_error", str(exc))

    def _on_invoke(self, message: CstaMessage) -> None:
        answered = message.operation == "systemStatus"
        if answered:
            assert message.invoke_id is not None
            self.send_result(message.invoke_id, "systemStatus", ("noData", None))
        self._on_event(Invoked(message, answered))

    # -- pending requests ----------------------------------------------------------------
    def _next_id(self) -> int:
        """The next invoke id after the last one, from 1..``max_invoke_id``, not pending."""
        limit = self._max_invoke_id
        for _ in range(limit):
            self._last_id = self._last_id % limit + 1
            if self._last_id not in self._pending:
                return self._last_id
        raise LocalProtocolError(f"{limit} {self._NAME} requests pending")

    def _settle(
        self, invoke_id: int, *, result: CstaMessage | None = None, failure: Any = None
    ) -> None:
        pending = self._pending.pop(invoke_id)
        if pending.timer.active():
            pending.timer.cancel()
        if invoke_id == self._heartbeat_id:
            self._heartbeat_id = None
            self._missed = 0
        if isinstance(failure, tuple) and failure[0] == "malformed":
            pending.deferred.errback(
                CstaError("error", pending.operation, f"malformed answer ({failure[1]})", failure)
            )
        elif failure is not None:
            pending.deferred.errback(operations.command_error(pending.operation, failure))
        else:
            pending.deferred.callback(result)

    def _expire(self, invoke_id: int, delay: float) -> None:
        pending = self._pending.pop(invoke_id, None)
        if pending is None:
            return
        self._expired[invoke_id] = None
        while len(self._expired) > _EXPIRED_MEMORY:
            self._expired.popitem(last=False)
        if invoke_id == self._heartbeat_id:
            self._heartbeat_id = None
            self._missed += 1
            self._log.info(
                "%s: heartbeat %d of %d unanswered",
                self._NAME,
                self._missed,
                self._heartbeat_misses,
            )
        if operations.BY_NAME[pending.operation].result is None:
            pending.deferred.callback(None)
        else:
            pending.deferred.errback(
                CstaError("timeout", pending.operation, f"no answer within {delay:g} s")
            )
        if self._missed >= self._heartbeat_misses:
            self._down("heartbeat", f"{self._missed} heartbeats unanswered")

    def _forget(self, invoke_id: int) -> None:
        pending = self._pending.pop(invoke_id, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()

    # -- timers --------------------------------------------------------------------------
    def _arm_guard(self, what: str) -> None:
        self._cancel_timer()
        self._timer = self._clock.callLater(self._association_timeout, self._guard_expired, what)

    def _guard_expired(self, what: str) -> None:
        self._timer = None
        self._down("timeout", f"{what} within {self._association_timeout:g} s")

    def _heartbeat(self) -> None:
        self._timer = None
        interval = self._heartbeat_interval
        if self.state is not State.ASSOCIATED or interval is None:
            return
        if self._heartbeat_id is not None and self._heartbeat_id in self._pending:
            self._expire(self._heartbeat_id, interval)  # counts the miss
            if self.state is not State.ASSOCIATED:
                return
        invoke_id, deferred = self._invoke("systemStatus", {"systemStatus": "normal"}, interval)
        deferred.addErrback(lambda _failure: None)  # counted in _settle and _expire
        self._heartbeat_id = invoke_id
        self._timer = self._clock.callLater(interval, self._heartbeat)

    def _start_timers(self) -> None:
        """Once associated: the heartbeat (and in a subclass, its own keep-alive)."""
        if self._heartbeat_interval is not None:
            self._timer = self._clock.callLater(self._heartbeat_interval, self._heartbeat)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- transitions ---------------------------------------------------------------------
    def _associated(self, response: acse.AssociateResponse, version: str | None) -> None:
        self._transition(State.ASSOCIATED)
        self.csta_version = version
        self._cancel_timer()
        self._start_timers()
        self._on_event(AssociationAccepted(response, version))

    def _close(self) -> None:
        self._transition(State.CLOSED)
        self._cancel_timer()
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.timer.active():
                entry.timer.cancel()
            entry.deferred.errback(CstaError("link_down", entry.operation, "link closed"))

    def _down(self, reason: str, detail: str) -> None:
        if self.state is State.CLOSED:
            return
        self._log.info("%s: link down (%s): %s", self._NAME, reason, detail)
        self._close()
        self._on_event(LinkDown(reason, detail))

    def _transition(self, new: State) -> None:
        if new not in _STATES[self.state]:
            raise LocalProtocolError(f"{self._LINK}: {self.state.value} -> {new.value}")
        self.state = new

    def _require(self, state: State, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {action} in state {self.state.value}")


class CstaConnection(BaseConnection):
    _NAME = "CSTA"
    _LINK = "CSTA association"
    _log = log
    _framer: Framer

    def __init__(
        self,
        role: Role,
        clock: IReactorTime,
        *,
        send: Callable[[bytes], None],
        on_event: Callable[[ConnectionEvent], None],
        request: acse.AssociateRequest | None = None,
        alcatel: bool = False,
        invoke_timeout: float = 10.0,
        association_timeout: float = 10.0,
        heartbeat_interval: float | None = 30.0,
        heartbeat_misses: int = 2,
    ) -> None:
        super().__init__(
            role,
            clock,
            send=send,
            on_event=on_event,
            invoke_timeout=invoke_timeout,
            association_timeout=association_timeout,
            heartbeat_interval=heartbeat_interval,
            heartbeat_misses=heartbeat_misses,
            max_invoke_id=_MAX_INVOKE_ID,
        )
        self._request = request or acse.AssociateRequest()
        self._framer = Framer(role=role, alcatel=alcatel)
        self._peer_request: acse.AssociateRequest | None = None

    # -- the caller's side ---------------------------------------------------------------
    def initiate(self) -> None:
        """Client: start the link (Alcatel ``B``, or the AARQ at once)."""
        self._require(State.IDLE, "initiate")
        if self.role != "client":
            raise LocalProtocolError("only a client initiates a CSTA association")
        self._transition(State.ASSOCIATING)
        self._arm_guard("no association response")
        hello = self._framer.start()  # Alcatel's "B"; the AARQ follows the switch's "P"
        if hello:
            self._send(hello)
        else:
            self._send_acse(self._request)

    def accept(self, csta_version: str | None = None) -> None:
        """Server: accept the requested association (in the first version offered)."""
        self._require(State.ASSOCIATING, "accept")
        offered = self._peer_request.csta_versions if self._peer_request else ()
        version = csta_version or (offered[0] if offered else acse.DEFAULT_CSTA_VERSIONS[0])
        context = self._peer_request.application_context if self._peer_request else None
        response = acse.AssociateResponse(
            csta_versions=(version,),
            application_context=context or acse.CSTA_APPLICATION_CONTEXT,
        )
        self._send_acse(response)
        self._associated(response, version)

    def refuse(self, reason: str = "no-reason-given") -> None:
        """Server: refuse the requested association."""
        self._require(State.ASSOCIATING, "refuse")
        context = self._peer_request.application_context if self._peer_request else None
        self._send_acse(
            acse.AssociateResponse(
                result="rejected-permanent",
                csta_versions=(),
                diagnostic=("acse-service-user", reason),
                application_context=context or acse.CSTA_APPLICATION_CONTEXT,
            )
        )
        self._close()

    def release(self) -> None:
        """Ask for an orderly release (RLRQ); ``Released`` follows the peer's RLRE."""
        self._require(State.ASSOCIATED, "release")
        self._transition(State.RELEASING)
        self._send_acse(acse.ReleaseRequest())
        self._arm_guard("no release response")

    # -- bytes from the peer -------------------------------------------------------------
    def _on_item(self, item: Any) -> None:
        if item is HANDSHAKE:
            self._on_handshake()
        elif isinstance(item, bytes):
            self._on_pdu(item)

    def _on_handshake(self) -> None:
        if self.role == "client":
            self._send_acse(self._request)
        else:
            self._send(self._framer.handshake_reply())

    def _on_pdu(self, pdu: bytes) -> None:
        if acse.is_acse(pdu):
            self._on_acse(acse.decode(pdu))
        elif self.state in (State.ASSOCIATED, State.RELEASING):
            self._on_rose(pdu)
        else:
            raise RemoteProtocolError(f"PDU 0x{pdu[0]:02x} before the association")

    def _on_acse(self, pdu: acse.AcsePdu) -> None:
        handler = _ACSE_HANDLERS.get((self.role, self.state, type(pdu)))
        if handler is None:
            if isinstance(pdu, acse.Abort):
                self._down("aborted", f"the peer aborted the association ({pdu.source})")
                return
            raise RemoteProtocolError(f"unexpected {type(pdu).__name__} in {self.state.value}")
        handler(self, pdu)

    def _on_aarq(self, pdu: acse.AcsePdu) -> None:
        assert isinstance(pdu, acse.AssociateRequest)
        self._peer_request = pdu
        self._transition(State.ASSOCIATING)
        self._arm_guard("association request not answered")
        self._on_event(AssociationRequested(pdu))

    def _on_aare(self, pdu: acse.AcsePdu) -> None:
        assert isinstance(pdu, acse.AssociateResponse)
        if not pdu.accepted:
            self._close()
            self._on_event(AssociationRefused(pdu))
            return
        self._associated(pdu, pdu.csta_versions[0] if pdu.csta_versions else None)

    def _on_rlrq(self, _pdu: acse.AcsePdu) -> None:
        self._send_acse(acse.ReleaseResponse())
        self._close()
        self._on_event(Released())

    def _on_rlre(self, _pdu: acse.AcsePdu) -> None:
        self._close()
        self._on_event(Released())

    def _on_rose(self, pdu: bytes) -> None:
        try:
            message = rose.decode(pdu)
        except rose.RoseProblem as problem:
            log.info("CSTA: rejecting a PDU from the peer: %s", problem)
            self._send_message(rose.reject(problem.invoke_id, problem.problem))
            if problem.kind in ("result", "error") and problem.invoke_id in self._pending:
                self._settle(problem.invoke_id, failure=("malformed", problem.problem))
            return
        if message.kind == "invoke":
            self._on_invoke(message)
            return
        assert message.invoke_id is not None or message.kind == "reject"
        if message.invoke_id is not None and message.invoke_id in self._pending:
            if message.kind == "result":
                self._settle(message.invoke_id, result=message)
            elif message.kind == "error":
                self._settle(message.invoke_id, failure=message.argument)
            else:
                self._settle(message.invoke_id, failure=("reject", message.argument))
        elif message.kind == "reject":
            self._on_event(PeerRejected(message))
        elif message.invoke_id in self._expired:
            log.debug("CSTA: late %s for invokeID %s dropped", message.kind, message.invoke_id)
        else:
            side = "returnResult" if message.kind == "result" else "returnError"
            self._send_message(rose.reject(message.invoke_id, (side, "unrecognizedInvocation")))

    # -- bytes for the peer --------------------------------------------------------------
    def _send_acse(self, pdu: acse.AcsePdu) -> None:
        self._send(self._framer.frame(acse.encode(pdu)))

    def _send_message(self, message: CstaMessage) -> None:
        self._send(self._framer.frame(rose.encode(message)))


# Every transition of the association (h11's _state.py): state -> states it may go to.
_STATES: Final = {
    State.IDLE: {State.ASSOCIATING, State.CLOSED},
    State.ASSOCIATING: {State.ASSOCIATED, State.CLOSED},
    State.ASSOCIATED: {State.RELEASING, State.CLOSED},
    State.RELEASING: {State.CLOSED},
    State.CLOSED: {State.CLOSED},
}

# What each ACSE PDU does, by (role, state): anything else is a protocol error.
_ACSE_HANDLERS: Final[dict[tuple[str, State, type], Callable[[CstaConnection, Any], None]]] = {
    ("server", State.IDLE, acse.AssociateRequest): CstaConnection._on_aarq,
    ("client", State.ASSOCIATING, acse.AssociateResponse): CstaConnection._on_aare,
    ("client", State.ASSOCIATED, acse.ReleaseRequest): CstaConnection._on_rlrq,
    ("server", State.ASSOCIATED, acse.ReleaseRequest): CstaConnection._on_rlrq,
    ("client", State.RELEASING, acse.ReleaseResponse): CstaConnection._on_rlre,
    ("server", State.RELEASING, acse.ReleaseResponse): CstaConnection._on_rlre,
}
