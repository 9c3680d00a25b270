"""The CSTA XML framer: the 8-byte header, bounds, EOF, and header/document agreement."""

from __future__ import annotations

import pytest

from ctilink.csta import xml
from ctilink.csta.xml_framing import CLOSED, NEED_DATA, XmlFrame, XmlFramer
from ctilink.errors import LocalProtocolError, RemoteProtocolError
from tests.fixtures.csta import xml_events, xml_services

GOLDEN = xml_services.GOLDEN + xml_events.GOLDEN + xml_events.SWITCH_SPELLINGS
DOCUMENT = b'<?xml version="1.0" encoding="UTF-8"?><SystemStatusResponse/>'


def drain(framer: XmlFramer) -> list[object]:
    items: list[object] = []
    while (item := framer.next_frame()) is not NEED_DATA:
        items.append(item)
        if item is CLOSED:
            break
    return items


def stream() -> bytes:
    framer = XmlFramer()
    return b"".join(framer.frame(golden.invoke_id, golden.data) for golden in GOLDEN)


def expected() -> list[XmlFrame]:
    return [XmlFrame(golden.invoke_id, golden.data) for golden in GOLDEN]


def test_the_header_format_length_and_invoke_id() -> None:
    framed = XmlFramer().frame(42, DOCUMENT)
    assert framed[:2] == b"\x00\x00"  # XML without SOAP
    assert int.from_bytes(framed[2:4], "big") == len(framed) == 8 + len(DOCUMENT)
    assert framed[4:8] == b"0042"
    assert framed[8:] == DOCUMENT


def test_a_header_as_a_switch_writes_it() -> None:
    """OpenScape Voice stamps its events 9999; the length counts the header."""
    document = xml_events.SWITCH_SPELLINGS[0].data
    header = b"\x00\x00" + (8 + len(document)).to_bytes(2, "big") + b"9999"
    framer = XmlFramer()
    framer.receive_data(header + document)
    (frame,) = drain(framer)
    assert isinstance(frame, XmlFrame)
    assert xml.decode(frame.document, frame.invoke_id) == xml_events.SWITCH_SPELLINGS[0].value


def test_every_golden_document_whole() -> None:
    framer = XmlFramer()
    framer.receive_data(stream())
    assert drain(framer) == expected()
    assert framer.pending == 0


def test_every_golden_document_one_byte_at_a_time() -> None:
    framer = XmlFramer()
    frames: list[object] = []
    for byte in stream():
        framer.receive_data(bytes([byte]))
        frames += drain(framer)
    assert frames == expected()


def test_trailing_data_waits_for_the_rest_of_its_frame() -> None:
    framer = XmlFramer()
    whole = XmlFramer().frame(7, DOCUMENT)
    framer.receive_data(whole * 2 + whole[:11])
    assert drain(framer) == [XmlFrame(7, DOCUMENT)] * 2
    assert framer.pending == 11
    framer.receive_data(whole[11:])
    assert drain(framer) == [XmlFrame(7, DOCUMENT)]


def test_clean_eof_and_eof_in_the_middle_of_a_frame() -> None:
    framer = XmlFramer()
    framer.receive_data(XmlFramer().frame(1, DOCUMENT))
    framer.receive_data(b"")
    assert drain(framer) == [XmlFrame(1, DOCUMENT), CLOSED]

    cut = XmlFramer()
    cut.receive_data(XmlFramer().frame(1, DOCUMENT)[:12])
    cut.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="connection closed"):
        cut.next_frame()
    with pytest.raises(RemoteProtocolError):  # and it stays broken
        cut.receive_data(b"\x00")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x01\x00\x20", "format indicator"),  # SOAP or another format
        (b"\x00\x00\x00\x08", "leaves no document"),
        (b"\x00\x00\x00\x03", "leaves no document"),
        (b"\x00\x00\x01\x00", "exceeds 200"),
        (b"\x00\x00\x00\x20+042", "four ASCII digits"),
        (b"\x00\x00\x00\x20 42\x00", "four ASCII digits"),
    ],
    ids=["format", "length 8", "length 3", "too long", "sign", "space"],
)
def test_bad_headers_are_refused_before_the_document_is_buffered(data: bytes, message: str) -> None:
    framer = XmlFramer(max_frame_size=200)
    framer.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=message):
        framer.next_frame()
    with pytest.raises(RemoteProtocolError):
        framer.next_frame()
    assert framer.pending == 0


@pytest.mark.parametrize("delta", [-1, -5, 1, 8])
def test_a_length_that_disagrees_with_the_document_does_not_parse(delta: int) -> None:
    """Too short cuts the document (not well formed); too long swallows the next frame's
    header, whose NUL bytes no accepted document has (refused: the stream is misaligned)."""
    framed = XmlFramer().frame(3, DOCUMENT) + XmlFramer().frame(4, DOCUMENT)
    total = 8 + len(DOCUMENT) + delta
    lying = framed[:2] + total.to_bytes(2, "big") + framed[4:]
    framer = XmlFramer()
    framer.receive_data(lying)
    first = framer.next_frame()
    assert isinstance(first, XmlFrame)
    with pytest.raises(RemoteProtocolError) as refused:
        xml.decode(first.document, first.invoke_id)
    assert isinstance(refused.value, xml.XmlProblem) == (delta < 0)


def test_frame_refuses_what_the_peer_could_not_accept() -> None:
    framer = XmlFramer(max_frame_size=100)
    with pytest.raises(LocalProtocolError):
        framer.frame(1, b"")
    with pytest.raises(LocalProtocolError):
        framer.frame(10000, DOCUMENT)
    with pytest.raises(LocalProtocolError):
        framer.frame(-1, DOCUMENT)
    with pytest.raises(LocalProtocolError):
        framer.frame(1, b"x" * 93)
    assert len(framer.frame(1, b"x" * 92)) == 100
    for bad in (8, 65536):
        with pytest.raises(LocalProtocolError):
            XmlFramer(max_frame_size=bad)
