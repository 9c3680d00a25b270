"""Golden bytes of every CSTA PDU ctilink sends or receives, checked both ways.

Each fixture (tests/fixtures/csta/) was written by hand from the standards' tags, with a
comment per tag, length and value: encoding its value must give exactly its bytes, and
decoding its bytes must give exactly its value. Every decoder is also fed each PDU whole,
framed one byte at a time, and with trailing bytes (which BER forbids inside a frame).
"""

from __future__ import annotations

import pytest

from ctilink.csta import CstaMessage, acse, rose
from ctilink.csta.framing import NEED_DATA, Framer
from ctilink.errors import RemoteProtocolError
from tests.fixtures.csta import acse as acse_fixtures
from tests.fixtures.csta import events, services
from tests.fixtures.csta.common import Golden, hexbytes, tlv_lengths_consistent

ALL = acse_fixtures.GOLDEN + services.GOLDEN + events.GOLDEN
IDS = [golden.name for golden in ALL]


def encode(value: object) -> bytes:
    return rose.encode(value) if isinstance(value, CstaMessage) else acse.encode(value)  # type: ignore[arg-type]


def decode(data: bytes) -> object:
    return acse.decode(data) if acse.is_acse(data) else rose.decode(data)


@pytest.mark.parametrize("golden", ALL, ids=IDS)
def test_fixture_lengths_are_consistent(golden: Golden) -> None:
    assert tlv_lengths_consistent(golden.data)


@pytest.mark.parametrize("golden", ALL, ids=IDS)
def test_encode(golden: Golden) -> None:
    assert encode(golden.value).hex(" ") == golden.data.hex(" ")


@pytest.mark.parametrize("golden", ALL, ids=IDS)
def test_decode(golden: Golden) -> None:
    assert decode(golden.data) == golden.value


@pytest.mark.parametrize("golden", ALL, ids=IDS)
def test_decode_refuses_trailing_bytes(golden: Golden) -> None:
    with pytest.raises(RemoteProtocolError, match="after the value"):
        decode(golden.data + b"\x00")


@pytest.mark.parametrize("golden", ALL, ids=IDS)
def test_decode_refuses_a_truncated_pdu(golden: Golden) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(golden.data[:-1])


def framed_stream() -> bytes:
    framer = Framer()
    return b"".join(framer.frame(golden.data) for golden in ALL)


def test_every_pdu_framed_whole() -> None:
    framer = Framer()
    framer.receive_data(framed_stream())
    pdus = [framer.next_pdu() for _ in ALL]
    assert framer.next_pdu() is NEED_DATA
    assert [decode(pdu) for pdu in pdus] == [golden.value for golden in ALL]  # type: ignore[arg-type]


def test_every_pdu_framed_one_byte_at_a_time() -> None:
    framer = Framer()
    pdus: list[object] = []
    for byte in framed_stream():
        framer.receive_data(bytes([byte]))
        while (item := framer.next_pdu()) is not NEED_DATA:
            pdus.append(item)
    assert pdus == [golden.data for golden in ALL]


def test_a_switchs_aare_from_a_public_trace() -> None:
    response = acse.decode(hexbytes(acse_fixtures.PUBLIC_TRACE_AARE))
    assert response == acse.AssociateResponse(
        result="accepted",
        csta_versions=("versionFive",),
        diagnostic=("acse-service-user", "no-reason-given"),
    )


def test_the_password_is_not_in_repr() -> None:
    assert "secret" not in repr(acse.AssociateRequest(password="secret"))
