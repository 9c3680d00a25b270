"""Property tests: whatever bytes arrive, the CSTA codecs yield PDUs or ctilink's protocol
error, never another exception and never a hang."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from ctilink.csta import acse, rose
from ctilink.csta.connection import CstaConnection, LinkDown
from ctilink.csta.framing import CLOSED, NEED_DATA, Framer
from ctilink.errors import RemoteProtocolError
from tests.fixtures.csta import acse as acse_fixtures
from tests.fixtures.csta import events, services

GOLDEN_PDUS = [g.data for g in acse_fixtures.GOLDEN + services.GOLDEN + events.GOLDEN]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutated() -> st.SearchStrategy[bytes]:
    """Golden PDUs with bytes flipped, cut or inserted: garbage that looks like CSTA."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        pdu = bytearray(draw(st.sampled_from(GOLDEN_PDUS)))
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(pdu) - 1))
            action = draw(st.sampled_from(["flip", "cut", "insert"]))
            if action == "flip":
                pdu[position] = draw(st.integers(0, 255))
            elif action == "cut":
                del pdu[position:]
                if not pdu:
                    pdu.append(0)
            else:
                pdu.insert(position, draw(st.integers(0, 255)))
        return bytes(pdu)

    return build()


def decode_any(data: bytes) -> None:
    try:
        if acse.is_acse(data):
            acse.decode(data)
        else:
            rose.decode(data)
    except RemoteProtocolError:
        pass


@SETTINGS
@given(st.binary(max_size=300))
def test_decoders_on_arbitrary_bytes(data: bytes) -> None:
    decode_any(data)


@SETTINGS
@given(mutated())
def test_decoders_on_mutated_pdus(data: bytes) -> None:
    decode_any(data)


@SETTINGS
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=20))
def test_framer_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    framer = Framer(max_pdu_size=512)
    try:
        position = 0
        for size in [*cuts, len(data)]:
            framer.receive_data(data[position : position + size] or b"")
            position += size
            while (item := framer.next_pdu()) not in (NEED_DATA, CLOSED):
                assert isinstance(item, bytes) and 0 < len(item) <= 512
            if position >= len(data):
                break
    except RemoteProtocolError:
        pass


# Found by this test: an indefinite length where asn1tools wants a definite one made its
# decoder fail with a TypeError.
INDEFINITE_IN_EVENT = bytes.fromhex(
    "a146020164020115303e550101a039a4376b0b30098002002aa10383010163083006808036303031610b"
    "3009800735353531323334620730058003383030640287004e01020a0116"
)


@SETTINGS
@given(st.lists(st.one_of(mutated(), st.sampled_from(GOLDEN_PDUS)), max_size=8))
@example([INDEFINITE_IN_EVENT])
def test_an_associated_connection_never_raises_for_what_it_receives(pdus: list[bytes]) -> None:
    clock = Clock()
    sent: list[bytes] = []
    seen: list[object] = []
    conn = CstaConnection("client", clock, send=sent.append, on_event=seen.append)
    conn.initiate()
    framer = Framer()
    conn.receive_data(framer.frame(acse.encode(acse.AssociateResponse())))
    for pdu in pdus:
        conn.receive_data(framer.frame(pdu))
    conn.receive_data(b"")
    assert isinstance(seen[-1], LinkDown) or conn.closed
