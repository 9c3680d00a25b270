"""CSTA XML documents <-> CstaMessage: golden documents both ways, the same values as BER,
round trips, namespaces, what is refused, and what a switch may send that is still read."""

from __future__ import annotations

import pytest

from ctilink.csta import CstaMessage, operations, rose, xml
from ctilink.errors import LocalProtocolError, RemoteProtocolError
from tests.fixtures.csta import events, services, xml_events, xml_services
from tests.fixtures.csta.xml_common import ED3, ED4, XmlGolden, doc, xml_ids

EXACT = xml_services.GOLDEN + xml_events.GOLDEN
ALL = EXACT + xml_services.SWITCH_SPELLINGS + xml_events.SWITCH_SPELLINGS
BER = services.GOLDEN + events.GOLDEN


def ids(goldens: list[XmlGolden]) -> list[str]:
    return [golden.name for golden in goldens]


@pytest.mark.parametrize("golden", ALL, ids=ids(ALL))
def test_decode(golden: XmlGolden) -> None:
    assert xml.decode(golden.data, golden.invoke_id) == golden.value


@pytest.mark.parametrize(
    "golden", [g for g in ALL if g.exact], ids=ids([g for g in ALL if g.exact])
)
def test_encode_writes_exactly_the_golden_document(golden: XmlGolden) -> None:
    assert xml.encode(golden.value).decode() == golden.document


def test_every_ber_golden_has_an_xml_counterpart_or_a_reason() -> None:
    paired = {golden.ber for golden in EXACT}
    without = xml_services.WITHOUT_XML | xml_events.WITHOUT_XML
    assert {golden.name for golden in BER} == paired | without
    assert not paired & without


@pytest.mark.parametrize("golden", EXACT, ids=ids(EXACT))
def test_xml_and_ber_decode_to_the_same_message(golden: XmlGolden) -> None:
    """The point of the codec: the adapter cannot tell which encoding the switch spoke."""
    ber = next(g for g in BER if g.name == golden.ber)
    from_ber = rose.decode(ber.data)
    from_xml = xml.decode(golden.data, golden.invoke_id)
    assert from_xml == xml_ids(from_ber)
    assert from_xml.invoke_id == from_ber.invoke_id


@pytest.mark.parametrize("golden", ALL, ids=ids(ALL))
def test_round_trip_through_both_namespaces(golden: XmlGolden) -> None:
    for namespace in (ED3, ED4):
        document = xml.encode(golden.value, namespace)
        assert xml.namespace_of(xml.parse(document)) == namespace or golden.value.kind == "invoke"
        assert xml.decode(document, golden.invoke_id) == golden.value


@pytest.mark.parametrize(
    "namespace",
    [ED3, ED4, "http://www.ecma-international.org/standards/ecma-323/csta/ed5",
     "http://www.ecma.ch/standards/ecma-323/csta/ed2", ""],
)  # fmt: skip
def test_every_ecma_323_namespace_and_none_is_accepted(namespace: str) -> None:
    document = doc("MonitorStartResponse", "<monitorCrossRefID>9</monitorCrossRefID>", namespace)
    if not namespace:
        document = document.replace(' xmlns=""', "")
    message = xml.decode(document.encode(), 4)
    assert message == CstaMessage("result", 4, "monitorStart", {"crossRefIdentifier": b"9"})


def test_edition() -> None:
    assert xml.edition(ED3) == "ed3"
    assert xml.edition(ED4) == "ed4"
    assert xml.edition("http://www.ecma.ch/standards/ecma-323/csta") == "ed1"
    assert xml.edition("urn:example") is None


def test_a_request_in_another_namespace_is_not_csta() -> None:
    document = (
        b'<GetDeviceId xmlns="http://www.avaya.com/csta"><switchName>S1</switchName></GetDeviceId>'
    )
    with pytest.raises(xml.XmlProblem) as problem:
        xml.decode(document, 3)
    assert (problem.value.kind, problem.value.failure) == (
        "invoke",
        ("operation", "serviceNotSupported"),
    )


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><MakeCall>&x;</MakeCall>',
        b'<!DOCTYPE MakeCall SYSTEM "http://example.invalid/x.dtd"><MakeCall/>',
        b"<MakeCall><!ENTITY x 'y'></MakeCall>",
        b'<?xml version="1.0" encoding="UTF-16"?><MakeCall/>',
        b'<?xml version="1.0" encoding="cp500"?><MakeCall/>',
        "<MakeCall/>".encode("utf-16"),
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><MakeCall>&x;</MakeCall>'.encode(
            "utf-16-le"
        ),
        b"<MakeCall>\x00</MakeCall>",
    ],
    ids=[
        "internal entity",
        "external DTD",
        "entity outside a DTD",
        "UTF-16",
        "EBCDIC",
        "BOM",
        "UTF-16 without a BOM",
        "NUL",
    ],
)
def test_dtds_entities_and_encodings_that_defeat_the_scan_are_refused(document: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as refused:
        xml.decode(document, 1)
    assert not isinstance(refused.value, xml.XmlProblem)  # the link goes down for these


def test_an_undefined_entity_is_not_well_formed() -> None:
    with pytest.raises(xml.XmlProblem, match="not well formed") as problem:
        xml.decode(b"<MakeCall>&xxe;</MakeCall>", 5)
    assert (problem.value.kind, problem.value.invoke_id) == ("unknown", 5)


@pytest.mark.parametrize(
    ("document", "kind", "failure"),
    [
        (doc("MakeCall", "<callingDevice>6001</callingDevice>"), "invoke",
         ("operation", "invalidParameterValue")),
        (doc("JumpCall"), "invoke", ("operation", "serviceNotSupported")),
        (doc("JumpCallResponse"), "result", ("operation", "serviceNotSupported")),
        (doc("MonitorStartResponse"), "result", ("operation", "invalidParameterValue")),
        (doc("CSTAErrorCode"), "error", ("operation", "invalidParameterValue")),
        (doc("DeliveredEvent", "<cause>newCall</cause>"), "event",
         ("operation", "invalidParameterValue")),
        (doc("RouteRequestResponse"), "result", ("operation", "generic")),
        ("<MakeCall><callingDevice>6001", "unknown", ("operation", "generic")),
        ("<a/><b/>", "unknown", ("operation", "generic")),
    ],
    ids=["missing component", "unknown request", "unknown response", "response missing",
         "empty error", "event missing", "response to a request that has none", "cut short",
         "two roots"],
)  # fmt: skip
def test_problems_name_what_the_document_was(
    document: str, kind: str, failure: tuple[str, str]
) -> None:
    with pytest.raises(xml.XmlProblem) as problem:
        xml.decode(document.encode(), 77)
    assert (problem.value.invoke_id, problem.value.kind, problem.value.failure) == (
        77,
        kind,
        failure,
    )


def test_unknown_elements_and_attributes_are_ignored() -> None:
    document = doc(
        "HoldCall",
        '<futureFlag>true</futureFlag><callToBeHeld how="soon"><callID>42</callID>'
        "<vendorThing><deep>x</deep></vendorThing></callToBeHeld><trailer/>",
    )
    message = xml.decode(document.encode(), 6)
    assert message == CstaMessage("invoke", 6, "holdCall", {"callToBeHeld": ("callID", b"42")})


def test_an_optional_component_that_cannot_be_read_is_dropped() -> None:
    body = (
        "<callToBeHeld><callID>42</callID></callToBeHeld>"
        "<connectionReservation>maybe</connectionReservation>"
    )
    message = xml.decode(doc("HoldCall", body).encode(), 6)
    assert message.argument == {"callToBeHeld": ("callID", b"42")}


def test_names_are_matched_without_regard_to_case() -> None:
    document = doc("MakeCallResponse", "<callingDevice><callId>7</callId></callingDevice>")
    message = xml.decode(document.encode(), 2)
    assert message.argument == {"callingDevice": ("callID", b"7")}


@pytest.mark.parametrize(
    ("attribute", "text", "identifier"),
    [
        ("", "6001", ("dialingNumber", "6001")),
        ('typeOfNumber="deviceNumber"', "17", ("deviceNumber", 17)),
        ('typeOfNumber="implicitPrivate"', "6001", ("implicitPrivate", "6001")),
        ('typeOfNumber="explicitPrivate:localNumber"', "6001",
         ("explicitPrivate", ("localNumber", "6001"))),
        ('typeOfNumber="other"', "sip:6001@pbx", ("other", b"sip:6001@pbx")),
    ],
)  # fmt: skip
def test_device_numbers_both_ways(
    attribute: str, text: str, identifier: tuple[str, object]
) -> None:
    body = f"<snapshotObject {attribute}>{text}</snapshotObject>".replace(" >", ">")
    document = doc("SnapshotDevice", body)
    message = CstaMessage(
        "invoke", 1, "snapshotDevice", {"snapshotObject": {"deviceIdentifier": identifier}}
    )
    assert xml.decode(document.encode(), 1) == message
    assert xml.encode(message).decode() == document


def test_a_bad_device_number_is_a_problem() -> None:
    for body in (
        '<snapshotObject typeOfNumber="deviceNumber">x</snapshotObject>',
        '<snapshotObject typeOfNumber="explicitPublic:galactic">1</snapshotObject>',
    ):
        with pytest.raises(xml.XmlProblem):
            xml.decode(doc("SnapshotDevice", body).encode(), 1)


@pytest.mark.parametrize(
    "message",
    [
        CstaMessage("reject", 1, argument=("invoke", "unrecognizedOperation")),
        CstaMessage("result", 1),
        CstaMessage("invoke", 1, "noSuchService", {}),
        CstaMessage("result", 1, "routeRequest", {}),
        CstaMessage("result", 1, "answerCall", ("extensions", {})),
        CstaMessage("invoke", 1, "holdCall", {"callToBeHeld": ("callID", b"\x00\x2a")}),
        CstaMessage("invoke", 1, "holdCall", {"callToBeHeld": ("callID", b"42"), "bogus": 1}),
        CstaMessage("invoke", 1, "holdCall", {"callToBeHeld": ("callID", b"42"),
                                              "extensions": {"privateData": []}}),
        CstaMessage("invoke", 1, "makeCall", {"callingDevice": services.dialing("a\x01b"),
                                              "calledDirectoryNumber": services.dialing("1")}),
        CstaMessage("invoke", 1, "systemStatus", {"systemStatus": "sleepy"}),
        CstaMessage("invoke", 1, "systemStatus", {}),
        CstaMessage("error", 1, argument=("operation", "noSuchError"), error="universalFailure"),
        events.GOLDEN[-1].value,  # a BER raw event class: not XML
    ],
    ids=["reject", "empty result", "unknown operation", "no result", "extensions result",
         "binary call id", "unknown component", "extensions", "control character",
         "bad enumeration", "missing component", "bad error", "BER raw event"],
)  # fmt: skip
def test_what_xml_cannot_carry_is_refused_locally(message: CstaMessage) -> None:
    with pytest.raises(LocalProtocolError):
        xml.encode(message)


def test_every_operation_has_a_document_name() -> None:
    for op in operations.OPERATIONS:
        assert op.name == "cSTAEventReport" or op.name in xml._REQUESTS


def test_escaping_is_the_parsers_business() -> None:
    message = CstaMessage("invoke", 1, "makeCall", {
        "callingDevice": services.dialing("<6001> & 'x'"),
        "calledDirectoryNumber": services.dialing("N<+4930>;noa=nk"),
        "autoOriginate": "prompt"})  # fmt: skip
    assert xml.decode(xml.encode(message), 1) == message


def test_nesting_is_bounded() -> None:
    """ElementTree copies and writes recursively: a deep document is refused, not a crash."""
    deep = b"<FooEvent>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</FooEvent>"
    with pytest.raises(xml.XmlProblem, match="nested deeper"):
        xml.decode(deep, 1)
    fine = b"<FooEvent>" + b"<a>" * 60 + b"</a>" * 60 + b"</FooEvent>"
    assert xml.decode(fine, 1).argument["eventSpecificInfo"][0] == "vendorSpecEvents"
