"""The sans-I/O CSTA association: state machine, invokeID correlation, timeouts with a
task.Clock, rejects, incoming invokes, heartbeats, release, and the server side."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ctilink.csta import CstaMessage, acse, connection, rose
from ctilink.csta.connection import (
    AssociationAccepted,
    AssociationRefused,
    AssociationRequested,
    ConnectionEvent,
    CstaConnection,
    Invoked,
    LinkDown,
    PeerRejected,
    Released,
    State,
)
from ctilink.csta.framing import NEED_DATA, Framer
from ctilink.csta.operations import CstaError
from ctilink.errors import LocalProtocolError
from tests.fixtures.csta import acse as acse_fixtures
from tests.fixtures.csta import events, services

MAKE_CALL = {
    "callingDevice": services.dialing("6001"),
    "calledDirectoryNumber": services.dialing("5551234"),
}


class Link:
    """A connection under test and what it sent and reported."""

    def __init__(self, role: str = "client", **options: Any) -> None:
        self.clock = Clock()
        self.sent: list[bytes] = []
        self.events: list[ConnectionEvent] = []
        self.conn = CstaConnection(
            role,  # type: ignore[arg-type]
            self.clock,
            send=self.sent.append,
            on_event=self.events.append,
            **options,
        )
        self._out = Framer(role="server" if role == "client" else "client")
        self._framer = Framer()

    def feed(self, pdu: bytes | CstaMessage | acse.AcsePdu) -> None:
        if isinstance(pdu, CstaMessage):
            pdu = rose.encode(pdu)
        elif not isinstance(pdu, bytes):
            pdu = acse.encode(pdu)
        self.conn.receive_data(self._framer.frame(pdu))

    def written(self) -> list[object]:
        """Everything the connection sent since last asked, decoded."""
        data = b"".join(self.sent)
        self.sent.clear()
        if data:
            self._out.receive_data(data)
        out: list[object] = []
        while (pdu := self._out.next_pdu()) is not NEED_DATA:
            assert isinstance(pdu, bytes)
            out.append(acse.decode(pdu) if acse.is_acse(pdu) else rose.decode(pdu))
        return out

    def associate(self) -> None:
        self.conn.initiate()
        self.written()
        self.feed(acse.AssociateResponse())


def outcome(deferred: Any) -> Any:
    box: list[Any] = []
    deferred.addBoth(box.append)
    return box[0] if box else None


# -- association -----------------------------------------------------------------------
def test_client_associates() -> None:
    link = Link()
    link.conn.initiate()
    assert link.sent == [Framer().frame(acse_fixtures.GOLDEN[0].data)]  # the golden AARQ
    assert link.conn.state is State.ASSOCIATING
    link.sent.clear()
    link.feed(acse_fixtures.GOLDEN[2].data)  # AARE accepted
    assert link.conn.state is State.ASSOCIATED
    assert link.events == [AssociationAccepted(acse.AssociateResponse(), "versionFive")]
    assert link.conn.csta_version == "versionFive"


def test_association_refused() -> None:
    link = Link()
    link.conn.initiate()
    link.feed(acse_fixtures.GOLDEN[3].data)  # AARE rejected
    assert link.conn.state is State.CLOSED
    assert isinstance(link.events[0], AssociationRefused)
    assert link.events[0].response.diagnostic[1] == "application-context-name-not-supported"


def test_no_association_response_within_the_timeout() -> None:
    link = Link(association_timeout=5)
    link.conn.initiate()
    link.clock.advance(5)
    assert link.events == [LinkDown("timeout", "no association response within 5 s")]


def test_alcatel_handshake_before_the_aarq() -> None:
    link = Link(alcatel=True)
    link.conn.initiate()
    assert link.sent == [b"B"]
    link.sent.clear()
    link.conn.receive_data(b"P")
    assert link.written() == [acse.AssociateRequest()]


def test_a_rose_pdu_before_the_association_is_a_protocol_error() -> None:
    link = Link()
    link.conn.initiate()
    link.feed(CstaMessage("invoke", 1, "systemStatus", {"systemStatus": "normal"}))
    assert isinstance(link.events[-1], LinkDown)
    assert link.events[-1].reason == "protocol_error"


# -- requests ----------------------------------------------------------------------------
def test_results_are_matched_by_invoke_id() -> None:
    link = Link()
    link.associate()
    first = link.conn.send_invoke("makeCall", MAKE_CALL)
    second = link.conn.send_invoke("monitorStop", {"crossRefIdentifier": b"\x01"})
    sent = link.written()
    assert [m.invoke_id for m in sent] == [1, 2]  # type: ignore[attr-defined]
    link.feed(CstaMessage("result", 2, "monitorStop", services.NO_DATA))
    link.feed(CstaMessage("result", 1, "makeCall", {"callingDevice": services.CONN}))
    assert outcome(first) == CstaMessage("result", 1, "makeCall", {"callingDevice": services.CONN})
    assert outcome(second).argument == ("noData", None)
    assert link.conn.pending == 0


def test_every_invoke_id_pending_refuses_another_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_MAX_INVOKE_ID", 2)
    link = Link()
    link.associate()
    link.conn.send_invoke("monitorStop", {"crossRefIdentifier": b"\x01"})
    link.conn.send_invoke("monitorStop", {"crossRefIdentifier": b"\x02"})
    with pytest.raises(LocalProtocolError, match="2 CSTA requests pending"):
        link.conn.send_invoke("monitorStop", {"crossRefIdentifier": b"\x03"})
    link.written()
    link.feed(CstaMessage("result", 1, "monitorStop", services.NO_DATA))
    link.conn.send_invoke("monitorStop", {"crossRefIdentifier": b"\x03"})
    assert [m.invoke_id for m in link.written()] == [1]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (("operation", "invalidCalledDeviceID"), "invalid"),
        (("operation", "invalidDeviceID"), "not_found"),
        (("operation", "serviceNotSupported"), "unsupported"),
        (("operation", "privilegeViolationSpecifiedDevice"), "not_allowed"),
        (("stateIncompatibility", "noCallToAnswer"), "not_allowed"),
        (("systemResourceAvailability", "resourceBusy"), "error"),
        (("unspecified", None), "error"),
    ],
)
def test_universal_failure_becomes_a_command_error(failure: tuple[str, Any], code: str) -> None:
    link = Link()
    link.associate()
    deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.feed(CstaMessage("error", 1, argument=failure, error="universalFailure"))
    error = outcome(deferred)
    assert isinstance(error, Failure) and isinstance(error.value, CstaError)
    assert error.value.code == code
    assert error.value.failure == failure
    assert str(error.value).startswith("makeCall: ")


def test_timeout_then_the_late_answer_is_dropped() -> None:
    link = Link(invoke_timeout=4, heartbeat_interval=None)
    link.associate()
    deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.written()
    link.clock.advance(4)
    error = outcome(deferred)
    assert error.value.code == "timeout"
    assert str(error.value) == "makeCall: no answer within 4 s"
    link.feed(CstaMessage("result", 1, "makeCall", {"callingDevice": services.CONN}))
    assert link.written() == []  # no reject for an answer that merely came late


def test_a_result_for_an_unknown_invoke_id_is_rejected() -> None:
    link = Link()
    link.associate()
    link.feed(CstaMessage("result", 42, "makeCall", {"callingDevice": services.CONN}))
    link.feed(CstaMessage("error", 43, argument=("unspecified", None), error="universalFailure"))
    assert link.written() == [
        rose.reject(42, ("returnResult", "unrecognizedInvocation")),
        rose.reject(43, ("returnError", "unrecognizedInvocation")),
    ]
    assert link.conn.state is State.ASSOCIATED


def test_the_peer_rejecting_a_request() -> None:
    link = Link()
    link.associate()
    deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.feed(rose.reject(1, ("invoke", "unrecognizedOperation")))
    assert outcome(deferred).value.code == "unsupported"
    link.feed(rose.reject(None, ("general", "mistypedPDU")))
    assert link.events[-1] == PeerRejected(rose.reject(None, ("general", "mistypedPDU")))


def test_a_malformed_result_fails_the_request_and_is_rejected() -> None:
    link = Link()
    link.associate()
    deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.written()
    link.feed(bytes.fromhex("a20a020101300502010a0500"))  # makeCall "result" NULL
    assert outcome(deferred).value.code == "error"
    assert link.written() == [rose.reject(1, ("returnResult", "mistypedResult"))]


def test_operations_without_a_result_succeed_when_no_error_came() -> None:
    link = Link(heartbeat_interval=None)
    link.associate()
    (golden,) = [g for g in services.GOLDEN if g.name == "routeSelectRequest invoke"]
    assert isinstance(golden.value, CstaMessage)
    argument = golden.value.argument
    selected = link.conn.send_invoke("routeSelectRequest", argument, timeout=2)
    failed = link.conn.send_invoke("routeSelectRequest", argument, timeout=2)
    link.feed(CstaMessage("error", 2, argument=("operation", "invalidDestination"),
                          error="universalFailure"))  # fmt: skip
    link.clock.advance(2)
    assert outcome(selected) is None
    assert outcome(failed).value.code == "invalid"


def test_invoke_when_not_associated_fails_at_once() -> None:
    link = Link()
    assert outcome(link.conn.send_invoke("makeCall", MAKE_CALL)).value.code == "link_down"


# -- what the peer invokes -----------------------------------------------------------------
def test_event_reports_become_events() -> None:
    link = Link()
    link.associate()
    for golden in events.GOLDEN:
        link.feed(golden.data)
    invoked = [e for e in link.events if isinstance(e, Invoked)]
    assert [e.message for e in invoked] == [g.value for g in events.GOLDEN]
    assert link.written() == []  # event reports are never answered


def test_event_reports_fed_one_byte_at_a_time() -> None:
    link = Link()
    link.associate()
    framer = Framer()
    for byte in b"".join(framer.frame(golden.data) for golden in events.GOLDEN):
        link.conn.receive_data(bytes([byte]))
    invoked = [e.message for e in link.events if isinstance(e, Invoked)]
    assert invoked == [g.value for g in events.GOLDEN]


def test_system_status_is_answered_and_reported() -> None:
    link = Link()
    link.associate()
    link.feed(CstaMessage("invoke", 7, "systemStatus", {"systemStatus": "messagesLost"}))
    assert link.written() == [CstaMessage("result", 7, "systemStatus", ("noData", None))]
    assert link.events[-1] == Invoked(
        CstaMessage("invoke", 7, "systemStatus", {"systemStatus": "messagesLost"}), True
    )


def test_unknown_or_mistyped_invokes_are_rejected_and_the_link_stays() -> None:
    link = Link()
    link.associate()
    link.feed(bytes.fromhex("a10c0201050202030930030a0102"))  # opcode 777
    link.feed(bytes.fromhex("a10b020106020102300405020000"))  # answerCall, argument garbage
    assert link.written() == [
        rose.reject(5, ("invoke", "unrecognizedOperation")),
        rose.reject(6, ("invoke", "mistypedArgument")),
    ]
    assert link.conn.state is State.ASSOCIATED


# -- heartbeats ------------------------------------------------------------------------------
def test_heartbeats_answered_keep_the_link() -> None:
    link = Link(heartbeat_interval=30, heartbeat_misses=2)
    link.associate()
    for _ in range(5):
        link.clock.advance(30)
        (beat,) = link.written()
        assert beat.operation == "systemStatus"  # type: ignore[attr-defined]
        link.feed(CstaMessage("result", beat.invoke_id, "systemStatus", ("noData", None)))  # type: ignore[attr-defined]
    assert link.conn.state is State.ASSOCIATED


def test_heartbeat_loss_takes_the_link_down_and_fails_pending_requests() -> None:
    link = Link(heartbeat_interval=30, heartbeat_misses=2, invoke_timeout=300)
    link.associate()
    link.clock.advance(30)  # first beat sent
    pending = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.clock.advance(30)  # first beat missed, second sent
    assert link.conn.state is State.ASSOCIATED
    link.clock.advance(30)  # second missed
    assert link.events[-1] == LinkDown("heartbeat", "2 heartbeats unanswered")
    assert outcome(pending).value.code == "link_down"
    assert link.clock.getDelayedCalls() == []


def test_an_error_answer_to_a_heartbeat_still_proves_the_peer_alive() -> None:
    link = Link(heartbeat_interval=10, heartbeat_misses=1)
    link.associate()
    link.clock.advance(10)
    (beat,) = link.written()
    link.feed(CstaMessage("error", beat.invoke_id, argument=("operation", "serviceNotSupported"),  # type: ignore[attr-defined]
                          error="universalFailure"))  # fmt: skip
    link.clock.advance(10)
    assert link.conn.state is State.ASSOCIATED


# -- release and loss --------------------------------------------------------------------
def test_client_release() -> None:
    link = Link()
    link.associate()
    link.conn.release()
    assert link.written() == [acse.ReleaseRequest()]
    link.feed(acse.ReleaseResponse())
    assert link.events[-1] == Released()
    assert link.conn.state is State.CLOSED


def test_peer_release_is_answered() -> None:
    link = Link()
    link.associate()
    link.feed(acse.ReleaseRequest())
    assert link.written() == [acse.ReleaseResponse()]
    assert link.events[-1] == Released()


def test_eof_abort_and_garbage() -> None:
    for data, reason in [(b"", "closed"), (b"\x00\x05\x64\x03\x80\x01\x00", "aborted"),
                         (b"\x00\x00", "protocol_error")]:  # fmt: skip
        link = Link()
        link.associate()
        pending = link.conn.send_invoke("makeCall", MAKE_CALL)
        link.conn.receive_data(data)
        assert isinstance(link.events[-1], LinkDown) and link.events[-1].reason == reason
        assert outcome(pending).value.code == "link_down"


# -- the server side (the simulator) ---------------------------------------------------------
def test_server_accepts_and_answers_in_the_offered_version() -> None:
    link = Link("server", heartbeat_interval=None)
    link.feed(acse.AssociateRequest(csta_versions=("versionFive",)))
    assert link.events == [AssociationRequested(acse.AssociateRequest())]
    link.conn.accept()
    assert link.sent == [Framer().frame(acse_fixtures.GOLDEN[2].data)]  # golden AARE
    assert link.conn.state is State.ASSOCIATED


def test_server_refuses() -> None:
    link = Link("server")
    link.feed(acse.AssociateRequest())
    link.conn.refuse("application-context-name-not-supported")
    assert link.written() == [acse_fixtures.GOLDEN[3].value]
    assert link.conn.state is State.CLOSED


def test_server_with_alcatel_handshake() -> None:
    link = Link("server", alcatel=True)
    link.conn.receive_data(b"B")
    assert link.sent == [b"P"]
