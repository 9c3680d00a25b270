"""The CSTA framer: 2-byte length prefix, bounds, EOF, and Alcatel's B/P start handshake."""

from __future__ import annotations

import pytest

from ctilink.csta.framing import CLOSED, HANDSHAKE, NEED_DATA, Framer
from ctilink.errors import LocalProtocolError, RemoteProtocolError

PDU = bytes.fromhex("6203800100")  # RLRQ


def drain(framer: Framer) -> list[object]:
    items: list[object] = []
    while (item := framer.next_pdu()) is not NEED_DATA:
        items.append(item)
        if item is CLOSED:
            break
    return items


def test_frame_is_a_two_byte_big_endian_length_then_the_pdu() -> None:
    assert Framer().frame(PDU) == b"\x00\x05" + PDU
    assert Framer().frame(b"x" * 300)[:2] == b"\x01\x2c"


def test_whole_byte_by_byte_and_with_trailing_data() -> None:
    stream = Framer().frame(PDU) * 3
    whole = Framer()
    whole.receive_data(stream)
    assert drain(whole) == [PDU, PDU, PDU]

    slow = Framer()
    got: list[object] = []
    for byte in stream:
        slow.receive_data(bytes([byte]))
        got += drain(slow)
    assert got == [PDU, PDU, PDU]

    trailing = Framer()
    trailing.receive_data(stream + b"\x00\x09\x62")  # a frame that has only begun
    assert drain(trailing) == [PDU, PDU, PDU]
    assert trailing.pending == 3


def test_clean_eof_and_eof_in_the_middle_of_a_frame() -> None:
    framer = Framer()
    framer.receive_data(Framer().frame(PDU))
    framer.receive_data(b"")
    assert drain(framer) == [PDU, CLOSED]

    cut = Framer()
    cut.receive_data(Framer().frame(PDU)[:4])
    cut.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        cut.next_pdu()
    with pytest.raises(RemoteProtocolError):  # and it stays broken
        cut.receive_data(b"\x00")


def test_a_frame_over_the_bound_is_refused_before_it_is_buffered() -> None:
    framer = Framer(max_pdu_size=100)
    framer.receive_data(b"\x00\x65")  # 101
    with pytest.raises(RemoteProtocolError, match="exceeds 100"):
        framer.next_pdu()
    with pytest.raises(RemoteProtocolError):
        framer.next_pdu()


def test_an_empty_frame_is_a_protocol_error() -> None:
    framer = Framer()
    framer.receive_data(b"\x00\x00")
    with pytest.raises(RemoteProtocolError, match="empty"):
        framer.next_pdu()


def test_frame_refuses_what_the_peer_could_not_accept() -> None:
    with pytest.raises(LocalProtocolError):
        Framer().frame(b"")
    with pytest.raises(LocalProtocolError):
        Framer(max_pdu_size=4).frame(PDU)
    with pytest.raises(LocalProtocolError):
        Framer(max_pdu_size=70000)


def test_alcatel_client_sends_b_and_waits_for_p() -> None:
    client = Framer(role="client", alcatel=True)
    assert client.start() == b"B"
    client.receive_data(b"P" + Framer().frame(PDU))
    assert drain(client) == [HANDSHAKE, PDU]


def test_alcatel_server_waits_for_b_and_answers_p() -> None:
    server = Framer(role="server", alcatel=True)
    assert server.start() == b""
    server.receive_data(b"B")
    assert drain(server) == [HANDSHAKE]
    assert server.handshake_reply() == b"P"


def test_alcatel_wrong_start_byte() -> None:
    client = Framer(role="client", alcatel=True)
    client.receive_data(b"\x00")
    with pytest.raises(RemoteProtocolError, match="start byte"):
        client.next_pdu()


def test_without_the_handshake_nothing_is_sent_first() -> None:
    assert Framer().start() == b""
    assert Framer(role="server").handshake_reply() == b""
