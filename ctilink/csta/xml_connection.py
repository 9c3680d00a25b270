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

Requests, timeouts and heartbeats are ``connection.BaseConnection``'s, as for BER: a
Deferred per request that fires once (result, ``CstaError`` from
``operations.command_error``, ``timeout``, ``link_down``; ``None`` for the operations that
never answer), systemStatus(normal) every ``heartbeat_interval`` with ``heartbeat_misses``
unanswered ones taking the link down, and the peer's systemStatus answered here
(``Invoked(answered=True)``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ctilink.csta import CstaMessage, acse, xml, xml_session
from ctilink.csta.connection import (
    AssociationRefused,
    AssociationRequested,
    BaseConnection,
    ConnectionEvent,
    Released,
    State,
)
from ctilink.csta.framing import Role
from ctilink.csta.xml_framing import MAX_FRAME_SIZE, XmlFrame, XmlFramer
from ctilink.csta.xml_session import ApplicationSession, SessionMessage
from ctilink.errors import LocalProtocolError, RemoteProtocolError

log = logging.getLogger(__name__)

_MAX_INVOKE_ID: Final = 9998


class CstaXmlConnection(BaseConnection):
    _NAME = "CSTA XML"
    _LINK = "CSTA XML link"
    _log = log
    _framer: XmlFramer

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
        self.namespace = namespace
        self.session_id: str | None = None
        self._session = session
        self._framer = XmlFramer(max_frame_size=max_frame_size)
        self._keepalive: IDelayedCall | None = None  # the application session's timer
        self._session_duration = 0
        self._peer_session: SessionMessage | None = None
        self._peer_session_id = 0  # the invoke id of its StartApplicationSession

    # -- the caller's side ---------------------------------------------------------------
    def initiate(self) -> None:
        """Start the link: at once without a session, else (client) StartApplicationSession."""
        self._require(State.IDLE, "initiate")
        if self._session is None:
            self._transition(State.ASSOCIATING)
            self._link_up()
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
        self._link_up()

    def refuse(self, reason: str = "no-reason-given") -> None:
        """Server: refuse the requested session."""
        self._require(State.ASSOCIATING, "refuse")
        log.info("CSTA XML: refusing the application session (%s)", reason)
        self._send_document(self._peer_session_id, xml_session.start_refused())
        self._close()

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

    # -- bytes from the peer -------------------------------------------------------------
    def _on_item(self, item: Any) -> None:
        assert isinstance(item, XmlFrame)
        self._on_frame(item)

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
        self._link_up()

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

    # -- timers and transitions ----------------------------------------------------------
    def _start_timers(self) -> None:
        super()._start_timers()
        if self.role == "client" and self.session_id is not None and self._session_duration >= 2:
            self._keepalive = self._clock.callLater(self._session_duration / 2, self._keep_session)

    def _cancel_timer(self) -> None:
        super()._cancel_timer()
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None

    def _link_up(self) -> None:
        response = acse.AssociateResponse(csta_versions=(), application_context=self.namespace)
        self._associated(response, xml.edition(self.namespace))

    # -- bytes for the peer --------------------------------------------------------------
    def _send_message(self, message: CstaMessage) -> None:
        assert message.invoke_id is not None
        self._send_document(message.invoke_id, xml.encode(message, self.namespace))

    def _send_document(self, invoke_id: int, document: bytes) -> None:
        self._send(self._framer.frame(invoke_id, document))


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
