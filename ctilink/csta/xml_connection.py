"""A CSTA XML (ECMA-323) link, sans-I/O, with the interface of ``CstaConnection``.

Theory of operation
-------------------
``CstaXmlConnection`` is to CSTA XML what ``connection.CstaConnection`` is to BER: one end
of a link (``role="client"`` for the CTI application, ``"server"`` for a switch or the
simulator) that owns no socket and no reactor. Bytes from the peer go in through
``receive_data``; bytes for the peer and events for the caller go out through ``send`` and
``on_event``; timers run on the injected ``clock``. It takes the same calls and emits the
same event classes (``connection.Invoked``, ``LinkDown``...), so the CSTA adapter drives
either without knowing the encoding.

What differs from BER, and how it is bridged:

* **No ACSE.** With ``session=None`` (the default) the TCP connection is the association:
  ``initiate()`` (either role) makes the link ``ASSOCIATED`` at once. With an
  ``ApplicationSession`` a client runs ECMA-354's dialogue (``xml_session``):
  ``StartApplicationSession``, then ``ResetApplicationSessionTimer`` every half session
  duration, ``StopApplicationSession`` on ``release()``; a server answers it
  (``AssociationRequested``, then ``accept()``/``refuse()``). ``AssociationAccepted``,
  ``AssociationRequested`` and ``AssociationRefused`` carry ``acse`` values as stand-ins:
  no ACSE versions, the ECMA-323 namespace as ``application_context``;
  ``csta_version`` is the namespace's edition (``"ed4"``).
* **Invoke ids** are the frame header's four digits: requests use 1..9998 (9999 is what
  OpenScape Voice stamps on events); an answer is matched by id *and* by its document
  (``MakeCallResponse`` answers only a ``makeCall``).
* **No ROSE reject.** A request that cannot be read is answered with ``CSTAErrorCode``
  (``serviceNotSupported``, ``invalidParameterValue``); an answer that cannot be read fails
  the request it answers (``CstaError`` ``error``, ``malformed``); anything else unreadable
  is logged and dropped. The link goes down (``LinkDown("protocol_error")``) only when the
  byte stream itself is broken (framing) or unsafe (a DTD, an encoding that could hide
  one).

Requests, timeouts and heartbeats behave as in ``CstaConnection``: a Deferred per request
that fires once (result, ``CstaError`` from ``operations.command_error``, ``timeout``,
``link_down``; ``None`` for the operations that never answer), systemStatus(normal) every
``heartbeat_interval`` with ``heartbeat_misses`` unanswered ones taking the link down, and
the peer's systemStatus answered here (``Invoked(answered=True)``).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ctilink.csta import CstaMessage, acse, operations, xml, xml_session
from ctilink.csta.connection import (
    AssociationAccepted,
    AssociationRefused,
    AssociationRequested,
    ConnectionEvent,
    Invoked,
    LinkDown,
    Released,
    State,
)
from ctilink.csta.framing import Role
from ctilink.csta.operations import CstaError
from ctilink.csta.xml_framing import CLOSED, MAX_FRAME_SIZE, NEED_DATA, XmlFrame, XmlFramer
from ctilink.csta.xml_session import ApplicationSession, SessionMessage
from ctilink.errors import LocalProtocolError, RemoteProtocolError

log = logging.getLogger(__name__)

_MAX_INVOKE_ID: Final = 9998
_EXPIRED_MEMORY: Final = 256


@dataclass
class _Pending:
    operation: str
    deferred: Deferred[CstaMessage | None]
    timer: IDelayedCall


class CstaXmlConnection:
    def __init__(
        self,
        role: Role,
        clock: IReactorTime,
        *,
        send: Callable[[bytes], None],
        on_event: Callable[[ConnectionEvent], None],
        session: ApplicationSession | None = None,
        namespace: str = xml.ED4,
        invoke_timeout: float = 10.0,
        association_timeout: float = 10.0,
        heartbeat_interval: float | None = 30.0,
        heartbeat_misses: int = 2,
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        if xml.edition(namespace) is None:
            raise LocalProtocolError(f"{namespace!r} is not an ECMA-323 namespace")
        if heartbeat_misses < 1:
            raise LocalProtocolError("heartbeat_misses must be at least 1")
        self.role = role
        self.state = State.IDLE
        self.namespace = namespace
        self.csta_version: str | None = None
        self.session_id: str | None = None
        self._clock = clock
        self._send = send
        self._on_event = on_event
        self._session = session
        self._framer = XmlFramer(max_frame_size=max_frame_size)
        self._invoke_timeout = invoke_timeout
        self._association_timeout = association_timeout
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_misses = heartbeat_misses
        self._last_id = 0
        self._pending: dict[int, _Pending] = {}
        self._expired: OrderedDict[int, None] = OrderedDict()
        self._timer: IDelayedCall | None = None  # association/release guard, heartbeat
        self._keepalive: IDelayedCall | None = None  # the application session's timer
        self._session_duration = 0
        self._heartbeat_id: int | None = None
        self._missed = 0
        self._peer_session: SessionMessage | None = None
        self._peer_session_id = 0  # the invoke id of its StartApplicationSession

    # -- the caller's side ---------------------------------------------------------------
    def initiate(self) -> None:
        """Start the link: at once without a session, else (client) StartApplicationSession."""
        self._require(State.IDLE, "initiate")
        if self._session is None:
            self._transition(State.ASSOCIATING)
            self._associated()
            return
        if self.role != "client":
            raise LocalProtocolError("a server waits for the client's StartApplicationSession")
        self._transition(State.ASSOCIATING)
        self._arm_guard("no application session response")
        versions = self._session.protocol_versions or (self.namespace,)
        self._send_document(self._next_id(), xml_session.start(self._session, versions))

    def accept(self, csta_version: str | None = None) -> None:
        """Server: accept the requested session in ``csta_version`` (a namespace), or the
        first ECMA-323 namespace the client offered, or ours."""
        self._require(State.ASSOCIATING, "accept")
        if csta_version is not None and xml.edition(csta_version) is None:
            raise LocalProtocolError(f"{csta_version!r} is not an ECMA-323 namespace")
        offered = self._peer_session.protocol_versions if self._peer_session else ()
        known = [version for version in offered if xml.edition(version)]
        self.namespace = csta_version or (known[0] if known else self.namespace)
        peer = self._peer_session
        requested = peer.number("requestedSessionDuration", 180) if peer else 180
        self._session_duration = requested
        self.session_id = secrets.token_hex(8)
        document = xml_session.started(self.session_id, self.namespace, requested)
        self._send_document(self._peer_session_id, document)
        self._associated()

    def refuse(self, reason: str = "no-reason-given") -> None:
        """Server: refuse the requested session."""
        self._require(State.ASSOCIATING, "refuse")
        log.info("CSTA XML: refusing the application session (%s)", reason)
        self._send_document(self._peer_session_id, xml_session.start_refused())
        self._close()

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
        """Answer the peer's request ``invoke_id`` of ``operation`` with ``result``."""
        self._send_message(CstaMessage("result", invoke_id, operation, result))

    def send_error(self, invoke_id: int, failure: tuple[str, Any]) -> None:
        """Answer the peer's request with ``CSTAErrorCode`` ``failure``."""
        self._send_message(
            CstaMessage("error", invoke_id, argument=failure, error="universalFailure")
        )

    def release(self) -> None:
        """End the link: StopApplicationSession with a session, else at once."""
        self._require(State.ASSOCIATED, "release")
        self._transition(State.RELEASING)
        if self.session_id is None or self.role != "client":
            self._close()
            self._on_event(Released())
            return
        self._send_document(self._next_id(), xml_session.stop(self.session_id))
        self._arm_guard("no response to StopApplicationSession")

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
                item = self._framer.next_frame()
                if item is NEED_DATA:
                    return
                if item is CLOSED:
                    self._down("closed", "the peer closed the connection")
                    return
                assert isinstance(item, XmlFrame)
                self._on_frame(item)
        except RemoteProtocolError as exc:
            self._down("protocol_error", str(exc))

    def _on_frame(self, frame: XmlFrame) -> None:
        try:
            root = xml.parse(frame.document, frame.invoke_id)
            if xml_session.is_session(root):
                self._on_session(frame.invoke_id, xml_session.decode(root))
                return
            if self.state not in (State.ASSOCIATED, State.RELEASING):
                raise RemoteProtocolError(
                    f"CSTA XML message before the link was up ({self.state.value})"
                )
            message = xml.decode_element(root, frame.invoke_id)
        except xml.XmlProblem as problem:
            self._on_problem(problem)
            return
        if message.kind == "invoke":
            self._on_invoke(message)
        else:
            self._on_answer(message)

    def _on_problem(self, problem: xml.XmlProblem) -> None:
        invoke_id = problem.invoke_id
        if problem.kind == "invoke" and self.state is State.ASSOCIATED:
            log.info("CSTA XML: answering an unusable request with an error: %s", problem)
            self.send_error(invoke_id, problem.failure)
        elif problem.kind in ("result", "error", "unknown") and invoke_id in self._pending:
            self._settle(invoke_id, failure=("malformed", str(problem)))
        else:
            log.info("CSTA XML: dropped: %s", problem)

    def _on_invoke(self, message: CstaMessage) -> None:
        answered = message.operation == "systemStatus"
        if answered:
            assert message.invoke_id is not None
            self.send_result(message.invoke_id, "systemStatus", ("noData", None))
        self._on_event(Invoked(message, answered))

    def _on_answer(self, message: CstaMessage) -> None:
        invoke_id = message.invoke_id
        assert invoke_id is not None
        pending = self._pending.get(invoke_id)
        if pending is None:
            level = logging.DEBUG if invoke_id in self._expired else logging.INFO
            log.log(level, "CSTA XML: %s for invoke id %s dropped", message.kind, invoke_id)
        elif message.kind == "error":
            self._settle(invoke_id, failure=message.argument)
        elif message.operation != pending.operation:
            detail = f"{message.operation} response to a {pending.operation} request"
            self._settle(invoke_id, failure=("malformed", detail))
        else:
            self._settle(invoke_id, result=message)

    # -- the application session (ECMA-354) ----------------------------------------------
    def _on_session(self, invoke_id: int, message: SessionMessage) -> None:
        handler = _SESSION_HANDLERS.get((self.role, self.state, message.name))
        if handler is not None:
            handler(self, invoke_id, message)
        elif message.name == xml_session.TERMINATED:
            self._down("aborted", "the switch terminated the application session")
        elif message.name == xml_session.RESET_REFUSED:
            self._down("aborted", "the switch refused to extend the application session")
        else:
            raise RemoteProtocolError(f"unexpected {message.name} in {self.state.value}")

    def _on_session_started(self, _invoke_id: int, message: SessionMessage) -> None:
        version = message.fields.get("actualProtocolVersion", "").strip()
        if xml.edition(version):
            self.namespace = version
        self.session_id = message.fields.get("sessionID", "")
        self._session_duration = message.number("actualSessionDuration", 0)
        self._associated()

    def _on_session_refused(self, _invoke_id: int, _message: SessionMessage) -> None:
        self._close()
        refusal = acse.AssociateResponse(
            result="rejected-permanent",
            csta_versions=(),
            diagnostic=("acse-service-user", "no-reason-given"),
            application_context=self.namespace,
        )
        self._on_event(AssociationRefused(refusal))

    def _on_session_requested(self, invoke_id: int, message: SessionMessage) -> None:
        self._peer_session = message
        self._peer_session_id = invoke_id
        self._transition(State.ASSOCIATING)
        self._arm_guard("application session request not answered")
        versions = message.protocol_versions
        request = acse.AssociateRequest(
            csta_versions=(), application_context=versions[0] if versions else ""
        )
        self._on_event(AssociationRequested(request))

    def _on_stop(self, invoke_id: int, _message: SessionMessage) -> None:
        self._send_document(invoke_id, xml_session.stopped())
        self._close()
        self._on_event(Released())

    def _on_stopped(self, _invoke_id: int, _message: SessionMessage) -> None:
        self._close()
        self._on_event(Released())

    def _on_reset(self, invoke_id: int, message: SessionMessage) -> None:
        duration = message.number("requestedSessionDuration", self._session_duration)
        self._send_document(invoke_id, xml_session.reset_done(duration))

    def _on_reset_done(self, _invoke_id: int, _message: SessionMessage) -> None:
        pass

    def _keep_session(self) -> None:
        self._keepalive = None
        if self.state is State.ASSOCIATED and self.session_id is not None:
            duration = self._session_duration
            self._send_document(self._next_id(), xml_session.reset(self.session_id, duration))
            self._keepalive = self._clock.callLater(duration / 2, self._keep_session)

    # -- pending requests ----------------------------------------------------------------
    def _next_id(self) -> int:
        for _ in range(_MAX_INVOKE_ID):
            self._last_id = self._last_id % _MAX_INVOKE_ID + 1
            if self._last_id not in self._pending:
                return self._last_id
        raise LocalProtocolError(f"{_MAX_INVOKE_ID} CSTA XML requests pending")

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
            log.info(
                "CSTA XML: heartbeat %d of %d unanswered", self._missed, self._heartbeat_misses
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

    def _cancel_timer(self) -> None:
        for timer in (self._timer, self._keepalive):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._keepalive = None

    # -- transitions ---------------------------------------------------------------------
    def _associated(self) -> None:
        self._transition(State.ASSOCIATED)
        self.csta_version = xml.edition(self.namespace)
        self._cancel_timer()
        if self._heartbeat_interval is not None:
            self._timer = self._clock.callLater(self._heartbeat_interval, self._heartbeat)
        if self.role == "client" and self.session_id is not None and self._session_duration >= 2:
            self._keepalive = self._clock.callLater(self._session_duration / 2, self._keep_session)
        response = acse.AssociateResponse(csta_versions=(), application_context=self.namespace)
        self._on_event(AssociationAccepted(response, self.csta_version))

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
        log.info("CSTA XML: link down (%s): %s", reason, detail)
        self._close()
        self._on_event(LinkDown(reason, detail))

    def _transition(self, new: State) -> None:
        if new not in _STATES[self.state]:
            raise LocalProtocolError(f"CSTA XML link: {self.state.value} -> {new.value}")
        self.state = new

    def _require(self, state: State, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {action} in state {self.state.value}")

    def _send_message(self, message: CstaMessage) -> None:
        assert message.invoke_id is not None
        self._send_document(message.invoke_id, xml.encode(message, self.namespace))

    def _send_document(self, invoke_id: int, document: bytes) -> None:
        self._send(self._framer.frame(invoke_id, document))


# Every transition of the link (h11's _state.py): state -> states it may go to.
_STATES: Final = {
    State.IDLE: {State.ASSOCIATING, State.CLOSED},
    State.ASSOCIATING: {State.ASSOCIATED, State.CLOSED},
    State.ASSOCIATED: {State.RELEASING, State.CLOSED},
    State.RELEASING: {State.CLOSED},
    State.CLOSED: {State.CLOSED},
}

_Handler = Callable[[CstaXmlConnection, int, SessionMessage], None]
# What each session document does, by (role, state): anything else is a protocol error
# (the switch's ApplicationSessionTerminated and refused timer resets take the link down).
_SESSION_HANDLERS: Final[dict[tuple[str, State, str], _Handler]] = {
    ("client", State.ASSOCIATING, xml_session.STARTED): CstaXmlConnection._on_session_started,
    ("client", State.ASSOCIATING, xml_session.START_REFUSED): CstaXmlConnection._on_session_refused,
    ("server", State.IDLE, xml_session.START): CstaXmlConnection._on_session_requested,
    ("server", State.ASSOCIATED, xml_session.STOP): CstaXmlConnection._on_stop,
    ("client", State.ASSOCIATED, xml_session.STOP): CstaXmlConnection._on_stop,
    ("client", State.RELEASING, xml_session.STOPPED): CstaXmlConnection._on_stopped,
    ("server", State.ASSOCIATED, xml_session.RESET): CstaXmlConnection._on_reset,
    ("client", State.ASSOCIATED, xml_session.RESET_DONE): CstaXmlConnection._on_reset_done,
    ("client", State.RELEASING, xml_session.RESET_DONE): CstaXmlConnection._on_reset_done,
}
