"""The sans-I/O CSTA XML link: the link without and with an ECMA-354 session, invoke id
correlation, timeouts on a task.Clock, errors, heartbeats, what cannot be read, the server."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ctilink.csta import CstaMessage, acse, xml, xml_session
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
from ctilink.csta.operations import CstaError
from ctilink.csta.xml_connection import CstaXmlConnection
from ctilink.csta.xml_framing import NEED_DATA, XmlFrame, XmlFramer
from ctilink.csta.xml_session import ApplicationSession
from ctilink.errors import LocalProtocolError
from tests.fixtures.csta import services, xml_events
from tests.fixtures.csta.xml_common import ED3, ED4, doc

MAKE_CALL = {
    "callingDevice": services.dialing("6001"),
    "calledDirectoryNumber": services.dialing("5551234"),
}
CONN = ("both", {"callID": b"42", "deviceID": ("dynamicID", b"1")})


class Link:
    """A link under test and what it sent and reported."""

    def __init__(self, role: str = "client", **options: Any) -> None:
        self.clock = Clock()
        self.sent: list[bytes] = []
        self.events: list[ConnectionEvent] = []
        self.conn = CstaXmlConnection(
            role,  # type: ignore[arg-type]
            self.clock,
            send=self.sent.append,
            on_event=self.events.append,
            **options,
        )
        self._out = XmlFramer()
        self._framer = XmlFramer()

    def feed(self, item: CstaMessage | tuple[int, bytes | str]) -> None:
        if isinstance(item, CstaMessage):
            assert item.invoke_id is not None
            invoke_id, document = item.invoke_id, xml.encode(item)
        else:
            invoke_id, text = item
            document = text.encode() if isinstance(text, str) else text
        self.conn.receive_data(self._framer.frame(invoke_id, document))

    def frames(self) -> list[XmlFrame]:
        data = b"".join(self.sent)
        self.sent.clear()
        if data:
            self._out.receive_data(data)
        frames: list[XmlFrame] = []
        while (frame := self._out.next_frame()) is not NEED_DATA:
            assert isinstance(frame, XmlFrame)
            frames.append(frame)
        return frames

    def written(self) -> list[CstaMessage]:
        """Everything the link sent since last asked, decoded."""
        return [xml.decode(frame.document, frame.invoke_id) for frame in self.frames()]

    def associate(self) -> None:
        self.conn.initiate()


def outcome(deferred: Any) -> Any:
    box: list[Any] = []
    deferred.addBoth(box.append)
    return box[0] if box else None


def accepted(namespace: str = ED4) -> AssociationAccepted:
    response = acse.AssociateResponse(csta_versions=(), application_context=namespace)
    return AssociationAccepted(response, xml.edition(namespace))


# -- the link without a session ----------------------------------------------------------
def test_without_a_session_the_connection_is_the_association() -> None:
    for role in ("client", "server"):
        link = Link(role)
        link.conn.initiate()
        assert link.conn.state is State.ASSOCIATED
        assert link.events == [accepted()]
        assert link.conn.csta_version == "ed4"
        assert link.sent == []


def test_namespace_is_configurable_and_checked() -> None:
    link = Link(namespace=ED3, heartbeat_interval=None)
    link.associate()
    link.conn.send_invoke("makeCall", MAKE_CALL)
    (frame,) = link.frames()
    assert xml.namespace_of(xml.parse(frame.document)) == ED3
    with pytest.raises(LocalProtocolError):
        Link(namespace="urn:example")


def test_a_message_before_the_link_started_takes_it_down() -> None:
    link = Link()
    link.feed(CstaMessage("invoke", 1, "systemStatus", {"systemStatus": "normal"}))
    assert isinstance(link.events[-1], LinkDown)
    assert link.events[-1].reason == "protocol_error"


# -- requests ----------------------------------------------------------------------------
def test_results_are_matched_by_invoke_id_and_service() -> None:
    link = Link()
    link.associate()
    first = link.conn.send_invoke("makeCall", MAKE_CALL)
    second = link.conn.send_invoke("monitorStop", {"crossRefIdentifier": b"1"})
    assert [(f.invoke_id, xml.parse(f.document).tag.split("}")[1]) for f in link.frames()] == [
        (1, "MakeCall"),
        (2, "MonitorStop"),
    ]
    link.feed((2, doc("MonitorStopResponse")))
    link.feed(CstaMessage("result", 1, "makeCall", {"callingDevice": CONN}))
    assert outcome(first) == CstaMessage("result", 1, "makeCall", {"callingDevice": CONN})
    assert outcome(second).argument == ("noData", None)
    assert link.conn.pending == 0


def test_a_response_for_another_service_fails_the_request() -> None:
    link = Link()
    link.associate()
    deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.feed((1, doc("AnswerCallResponse")))
    error = outcome(deferred)
    assert isinstance(error, Failure) and isinstance(error.value, CstaError)
    assert error.value.code == "error" and "answerCall response" in str(error.value)


@pytest.mark.parametrize(
    ("body", "code", "failure"),
    [
        ("<operation>invalidCalledDeviceID</operation>", "invalid",
         ("operation", "invalidCalledDeviceID")),
        ("<stateIncompatibility>noCallToAnswer</stateIncompatibility>", "not_allowed",
         ("stateIncompatibility", "noCallToAnswer")),
        ("<systemResourceAvailibility>resourceBusy</systemResourceAvailibility>", "error",
         ("systemResourceAvailability", "resourceBusy")),
        ("<privateErrorCode>URM Denied</privateErrorCode>", "error",
         ("privateErrorCode", "URM Denied")),
    ],
)  # fmt: skip
def test_csta_error_code_becomes_a_command_error(body: str, code: str, failure: Any) -> None:
    link = Link()
    link.associate()
    deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.feed((1, doc("CSTAErrorCode", body)))
    error = outcome(deferred)
    assert isinstance(error.value, CstaError)
    assert (error.value.code, error.value.failure) == (code, failure)


def test_timeout_then_the_late_answer_is_dropped() -> None:
    link = Link(invoke_timeout=4, heartbeat_interval=None)
    link.associate()
    deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.frames()
    link.clock.advance(4)
    assert str(outcome(deferred).value) == "makeCall: no answer within 4 s"
    link.feed(CstaMessage("result", 1, "makeCall", {"callingDevice": CONN}))
    link.feed(CstaMessage("result", 77, "makeCall", {"callingDevice": CONN}))  # never asked
    assert link.frames() == []  # nothing answers an answer
    assert link.conn.state is State.ASSOCIATED


def test_a_malformed_answer_fails_the_request_at_once() -> None:
    for document in (doc("MakeCallResponse"), "<MakeCallResponse><callingDevice>"):
        link = Link()
        link.associate()
        deferred = link.conn.send_invoke("makeCall", MAKE_CALL)
        link.feed((1, document))
        error = outcome(deferred)
        assert error.value.code == "error" and "malformed answer" in str(error.value)
        assert link.conn.state is State.ASSOCIATED


def test_operations_without_a_result_succeed_when_no_error_came() -> None:
    link = Link(heartbeat_interval=None)
    link.associate()
    argument = {"crossRefIdentifier": b"5", "routeSelected": services.dialing("6001")}
    selected = link.conn.send_invoke("routeSelectRequest", argument, timeout=2)
    failed = link.conn.send_invoke("routeSelectRequest", argument, timeout=2)
    link.feed((2, doc("CSTAErrorCode", "<operation>invalidDestination</operation>")))
    link.clock.advance(2)
    assert outcome(selected) is None
    assert outcome(failed).value.code == "invalid"


def test_invoke_ids_are_four_digits_and_skip_the_pending() -> None:
    link = Link(heartbeat_interval=None, invoke_timeout=1000)
    link.associate()
    link.conn._last_id = 9997  # the allocator's position (testing the wrap)
    for _ in range(3):
        link.conn.send_invoke("makeCall", MAKE_CALL)
    assert [frame.invoke_id for frame in link.frames()] == [9998, 1, 2]


def test_invoke_when_not_started_fails_at_once() -> None:
    assert outcome(Link().conn.send_invoke("makeCall", MAKE_CALL)).value.code == "link_down"
    with pytest.raises(LocalProtocolError):
        Link().conn.send_invoke("jumpCall", {})


# -- what the peer sends -------------------------------------------------------------------
def test_event_reports_become_events_and_are_not_answered() -> None:
    link = Link()
    link.associate()
    goldens = xml_events.GOLDEN + xml_events.SWITCH_SPELLINGS
    for golden in goldens:
        link.feed((golden.invoke_id, golden.document))
    invoked = [event.message for event in link.events if isinstance(event, Invoked)]
    assert invoked == [golden.value for golden in goldens]
    assert link.frames() == []


def test_event_reports_fed_one_byte_at_a_time() -> None:
    link = Link()
    link.associate()
    framer = XmlFramer()
    data = b"".join(framer.frame(g.invoke_id, g.data) for g in xml_events.GOLDEN)
    for byte in data:
        link.conn.receive_data(bytes([byte]))
    invoked = [event.message for event in link.events if isinstance(event, Invoked)]
    assert invoked == [golden.value for golden in xml_events.GOLDEN]


def test_system_status_is_answered_and_reported() -> None:
    link = Link()
    link.associate()
    link.feed((9999, doc("SystemStatus", "<systemStatus>messagesLost</systemStatus>")))
    (frame,) = link.frames()
    assert (frame.invoke_id, frame.document) == (9999, xml.encode(
        CstaMessage("result", 9999, "systemStatus", ("noData", None))))  # fmt: skip
    message = CstaMessage("invoke", 9999, "systemStatus", {"systemStatus": "messagesLost"})
    assert link.events[-1] == Invoked(message, True)


def test_requests_that_cannot_be_served_are_answered_with_an_error_and_the_link_stays() -> None:
    link = Link()
    link.associate()
    link.feed((5, doc("JumpCall")))
    link.feed((6, doc("AnswerCall", "<callToBeAnswered/>")))
    link.feed((7, "<not-closed>"))
    link.feed((8, doc("DeliveredEvent", "<cause>newCall</cause>")))  # an event: never answered
    assert link.written() == [
        CstaMessage("error", 5, argument=("operation", "serviceNotSupported"),
                    error="universalFailure"),
        CstaMessage("error", 6, argument=("operation", "invalidParameterValue"),
                    error="universalFailure"),
    ]  # fmt: skip
    assert link.conn.state is State.ASSOCIATED


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE x [<!ENTITY a "b">]><SystemStatus/>',
        b'<?xml version="1.0" encoding="UTF-16"?><SystemStatus/>',
    ],
)
def test_an_unsafe_document_takes_the_link_down(data: bytes) -> None:
    link = Link()
    link.associate()
    pending = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.feed((3, data))
    assert isinstance(link.events[-1], LinkDown) and link.events[-1].reason == "protocol_error"
    assert outcome(pending).value.code == "link_down"


def test_eof_and_broken_framing() -> None:
    for data, reason in [(b"", "closed"), (b"\x00\x01\x00\x20", "protocol_error"),
                         (b"\x00\x00\x00\x04", "protocol_error")]:  # fmt: skip
        link = Link()
        link.associate()
        pending = link.conn.send_invoke("makeCall", MAKE_CALL)
        link.conn.receive_data(data)
        assert isinstance(link.events[-1], LinkDown) and link.events[-1].reason == reason
        assert outcome(pending).value.code == "link_down"
        assert link.clock.getDelayedCalls() == []


# -- heartbeats ------------------------------------------------------------------------------
def test_heartbeats_answered_keep_the_link() -> None:
    link = Link(heartbeat_interval=30, heartbeat_misses=2)
    link.associate()
    for _ in range(5):
        link.clock.advance(30)
        (beat,) = link.written()
        assert beat == CstaMessage(
            "invoke", beat.invoke_id, "systemStatus", {"systemStatus": "normal"}
        )
        link.feed((beat.invoke_id or 0, doc("SystemStatusResponse")))
    assert link.conn.state is State.ASSOCIATED


def test_heartbeat_loss_takes_the_link_down_and_fails_pending_requests() -> None:
    link = Link(heartbeat_interval=30, heartbeat_misses=2, invoke_timeout=300)
    link.associate()
    link.clock.advance(30)
    pending = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.clock.advance(30)
    assert link.conn.state is State.ASSOCIATED
    link.clock.advance(30)
    assert link.events[-1] == LinkDown("heartbeat", "2 heartbeats unanswered")
    assert outcome(pending).value.code == "link_down"
    assert link.clock.getDelayedCalls() == []


def test_an_error_answer_to_a_heartbeat_still_proves_the_peer_alive() -> None:
    link = Link(heartbeat_interval=10, heartbeat_misses=1)
    link.associate()
    link.clock.advance(10)
    (beat,) = link.frames()
    link.feed((beat.invoke_id, doc("CSTAErrorCode", "<operation>serviceNotSupported</operation>")))
    link.clock.advance(10)
    assert link.conn.state is State.ASSOCIATED


# -- release ---------------------------------------------------------------------------------
def test_release_without_a_session_is_immediate() -> None:
    link = Link()
    link.associate()
    pending = link.conn.send_invoke("makeCall", MAKE_CALL)
    link.conn.release()
    assert link.events[-1] == Released()
    assert link.conn.closed and outcome(pending).value.code == "link_down"
    assert link.clock.getDelayedCalls() == []


# -- an ECMA-354 application session ---------------------------------------------------------
SESSION = ApplicationSession("ctilink-test", (ED4, ED3), 60)


def started(duration: int = 60, version: str = ED3) -> bytes:
    return xml_session.started("S-1", version, duration)


def test_client_starts_an_application_session() -> None:
    link = Link(session=SESSION, heartbeat_interval=None)
    link.conn.initiate()
    (frame,) = link.frames()
    assert frame.document == (
        b'<?xml version="1.0" encoding="UTF-8"?><StartApplicationSession xmlns="'
        + xml_session.NAMESPACE.encode()
        + b'"><applicationInfo><applicationID>ctilink-test</applicationID></applicationInfo>'
        b"<requestedProtocolVersions><protocolVersion>" + ED4.encode() + b"</protocolVersion>"
        b"<protocolVersion>" + ED3.encode() + b"</protocolVersion></requestedProtocolVersions>"
        b"<requestedSessionDuration>60</requestedSessionDuration></StartApplicationSession>"
    )
    assert link.conn.state is State.ASSOCIATING
    link.feed((frame.invoke_id, started()))
    assert link.events == [accepted(ED3)]
    assert (link.conn.session_id, link.conn.namespace) == ("S-1", ED3)


def test_a_positive_response_without_a_namespace_as_a_switch_sent_it() -> None:
    link = Link(session=SESSION, heartbeat_interval=None)
    link.conn.initiate()
    (frame,) = link.frames()
    link.feed((frame.invoke_id, "<StartApplicationSessionPosResponse><sessionID>009968951"
                                 f"</sessionID><actualProtocolVersion>{ED4}</actualProtocolVersion>"
                                 "<actualSessionDuration>600</actualSessionDuration>"
                                 "<extensions><actualHBT>0</actualHBT></extensions>"
                                 "</StartApplicationSessionPosResponse>"))  # fmt: skip
    assert link.conn.state is State.ASSOCIATED and link.conn.session_id == "009968951"


def test_the_session_is_kept_alive_at_half_its_duration() -> None:
    link = Link(session=SESSION, heartbeat_interval=None)
    link.conn.initiate()
    (frame,) = link.frames()
    link.feed((frame.invoke_id, started(60)))
    link.clock.advance(30)
    (reset,) = link.frames()
    assert reset.document == xml_session.reset("S-1", 60)
    link.feed((reset.invoke_id, xml_session.reset_done(60)))
    link.clock.advance(30)
    assert len(link.frames()) == 1
    link.feed((9, f'<ApplicationSessionTerminated xmlns="{xml_session.NAMESPACE}"/>'))
    assert link.events[-1] == LinkDown("aborted", "the switch terminated the application session")
    assert link.clock.getDelayedCalls() == []


def test_session_refused_or_not_answered() -> None:
    link = Link(session=SESSION)
    link.conn.initiate()
    link.feed((1, xml_session.start_refused()))
    assert isinstance(link.events[-1], AssociationRefused) and link.conn.closed

    silent = Link(session=SESSION, association_timeout=5)
    silent.conn.initiate()
    silent.clock.advance(5)
    assert silent.events == [LinkDown("timeout", "no application session response within 5 s")]


def test_client_stops_the_session() -> None:
    link = Link(session=SESSION, heartbeat_interval=None)
    link.conn.initiate()
    link.feed((link.frames()[0].invoke_id, started()))
    link.conn.release()
    (stop,) = link.frames()
    assert stop.document == xml_session.stop("S-1")
    link.feed((stop.invoke_id, xml_session.stopped()))
    assert link.events[-1] == Released() and link.conn.closed


def test_an_unexpected_session_document_is_a_protocol_error() -> None:
    link = Link()
    link.associate()
    link.feed((1, started()))
    assert isinstance(link.events[-1], LinkDown) and link.events[-1].reason == "protocol_error"


# -- the server side (the simulator) ---------------------------------------------------------
def test_server_answers_a_session_in_the_first_version_offered() -> None:
    link = Link("server", heartbeat_interval=None)
    link.feed((12, xml_session.start(SESSION, (ED3, ED4))))
    request = acse.AssociateRequest(csta_versions=(), application_context=ED3)
    assert link.events == [AssociationRequested(request)]
    link.conn.accept()
    (frame,) = link.frames()
    assert frame.invoke_id == 12
    answer = xml_session.decode(xml.parse(frame.document))
    assert answer.name == xml_session.STARTED
    assert answer.fields["actualProtocolVersion"] == ED3
    assert answer.fields["actualSessionDuration"] == "60"
    assert link.conn.state is State.ASSOCIATED and link.conn.csta_version == "ed3"
    link.feed((13, xml_session.reset(answer.fields["sessionID"], 60)))
    assert link.frames()[0].document == xml_session.reset_done(60)
    link.feed((14, xml_session.stop(answer.fields["sessionID"])))
    assert link.frames()[0].document == xml_session.stopped()
    assert link.events[-1] == Released()


def test_server_refuses_a_session() -> None:
    link = Link("server")
    link.feed((3, xml_session.start(SESSION, (ED4,))))
    link.conn.refuse()
    (frame,) = link.frames()
    assert (frame.invoke_id, frame.document) == (3, xml_session.start_refused())
    assert link.conn.closed


def test_server_with_a_session_does_not_initiate() -> None:
    with pytest.raises(LocalProtocolError):
        Link("server", session=SESSION).conn.initiate()
