"""Property tests: whatever bytes arrive, the CSTA XML codec and link yield messages or
ctilink's protocol error, never another exception and never a hang; and what ctilink
writes, it reads back."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from ctilink.csta import CstaMessage, xml
from ctilink.csta.connection import LinkDown
from ctilink.csta.xml_connection import CstaXmlConnection
from ctilink.csta.xml_framing import CLOSED, NEED_DATA, XmlFrame, XmlFramer
from ctilink.errors import RemoteProtocolError
from tests.fixtures.csta import xml_events, xml_services

GOLDEN = (
    xml_services.GOLDEN
    + xml_services.SWITCH_SPELLINGS
    + xml_events.GOLDEN
    + xml_events.SWITCH_SPELLINGS
)
DOCUMENTS = [golden.data for golden in GOLDEN]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Pieces of CSTA XML to splice into documents: names, entities, markup, numbers.
PIECES = [b"<", b">", b"</", b"/>", b"&amp;", b"&#0;", b"&#x41;", b"<!--", b"-->", b"<![CDATA[",
          b"]]>", b"<!DOCTYPE", b'"', b"=", b"xmlns=\"urn:x\"", b"typeOfNumber=\"dynamic\"",
          b"<callID>", b"</callID>", b"<deviceID>", b"true", b"-1", b"99999999999999999999999",
          b"\x00", b"\xff", b"\xc3\xa9", b"monitorCrossRefID", b"Event", b"Response"]  # fmt: skip


def mutated() -> st.SearchStrategy[bytes]:
    """Golden documents with bytes flipped, cut, or CSTA XML pieces inserted."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        document = bytearray(draw(st.sampled_from(DOCUMENTS)))
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(document)))
            action = draw(st.sampled_from(["flip", "cut", "insert", "piece"]))
            if action == "flip" and position < len(document):
                document[position] = draw(st.integers(0, 255))
            elif action == "cut":
                del document[position:]
            elif action == "insert":
                document[position:position] = draw(st.binary(min_size=1, max_size=4))
            else:
                document[position:position] = draw(st.sampled_from(PIECES))
        return bytes(document)

    return build()


def decode_any(data: bytes) -> None:
    try:
        message = xml.decode(data, 1)
    except RemoteProtocolError:
        return
    assert isinstance(message, CstaMessage)


@SETTINGS
@given(st.binary(max_size=400))
def test_decode_on_arbitrary_bytes(data: bytes) -> None:
    decode_any(data)


@SETTINGS
@given(mutated())
def test_decode_on_mutated_documents(data: bytes) -> None:
    decode_any(data)


@SETTINGS
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=20))
def test_framer_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    framer = XmlFramer(max_frame_size=512)
    try:
        position = 0
        for size in [*cuts, len(data)]:
            framer.receive_data(data[position : position + size])
            position += size
            while (item := framer.next_frame()) not in (NEED_DATA, CLOSED):
                assert isinstance(item, XmlFrame)
                assert 0 <= item.invoke_id <= 9999 and 0 < len(item.document) <= 504
            if position >= len(data):
                break
    except RemoteProtocolError:
        pass


@SETTINGS
@given(st.lists(st.one_of(mutated(), st.sampled_from(DOCUMENTS)), max_size=8),
       st.lists(st.integers(0, 9999), min_size=8, max_size=8))  # fmt: skip
def test_a_started_link_never_raises_for_what_it_receives(
    documents: list[bytes], invoke_ids: list[int]
) -> None:
    clock = Clock()
    seen: list[object] = []
    conn = CstaXmlConnection("client", clock, send=lambda _data: None, on_event=seen.append)
    conn.initiate()
    device = {"deviceIdentifier": ("dialingNumber", "1")}
    pending = conn.send_invoke(
        "makeCall", {"callingDevice": device, "calledDirectoryNumber": device}
    )
    pending.addErrback(lambda _failure: None)  # it fails one way or another: that is fine
    framer = XmlFramer()
    for document, invoke_id in zip(documents, invoke_ids, strict=False):
        if document:
            conn.receive_data(framer.frame(invoke_id, document[:65000]))
    conn.receive_data(b"")
    assert isinstance(seen[-1], LinkDown) or conn.closed


@SETTINGS
@given(st.sampled_from(GOLDEN), st.sampled_from([xml.ED3, xml.ED4]))
def test_what_is_written_is_read_back(golden: object, namespace: str) -> None:
    value = golden.value  # type: ignore[attr-defined]
    assert xml.decode(xml.encode(value, namespace), value.invoke_id) == value
