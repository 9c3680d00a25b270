"""Sans-I/O framing of a CSTA link over TCP: bytes in, PDUs out; PDUs in, bytes out.

Theory of operation
-------------------
CSTA over TCP (ECMA TR/82 and the switch vendors' link documents) puts each ACSE or ROSE
PDU in a frame of a 2-byte big-endian length followed by that many bytes of BER. The
framer buffers bytes until a whole frame is present and hands out the PDU; a frame larger
than ``max_pdu_size`` (at most 65535, which two bytes can say) or an empty frame is a
``RemoteProtocolError``, after which the framer refuses further input, so the buffer never
grows without bound. ``frame()`` refuses (``LocalProtocolError``) a PDU the peer could not
accept.

Alcatel OmniPCX start handshake (``alcatel=True``): per the public Alcatel OmniPCX Office
technical documentation ("Third party CTI - CSTA applications", CSTA link description),
once the TCP connection is up the CTI application identifies itself at session level by
sending the single character ``B`` and the system answers with the single character ``P``;
only then does the ACSE association start. The same document names an ``EXIT`` message
that ends the connection after the release; its exact bytes are not given there, so
ctilink does not send it (unverified). A client framer sends ``B`` (``start()``) and
expects ``P`` before the first frame; a server framer expects ``B`` and answers ``P``
(``HANDSHAKE`` is returned once, and ``handshake_reply()`` is what to send).

Usage, as in h11::

    framer = Framer(role="client")
    transport.write(framer.start())
    framer.receive_data(chunk)            # b"" when the peer closed
    while (item := framer.next_pdu()) is not NEED_DATA:
        ...                               # bytes (one PDU), HANDSHAKE or CLOSED
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar, Final, Generic, Literal, TypeVar

from ctilink.errors import LocalProtocolError, RemoteProtocolError

MAX_PDU_SIZE: Final = 65535
_HEADER: Final = 2
_CLIENT_HELLO: Final = b"B"  # CTI application -> system: identification of the application
_SERVER_HELLO: Final = b"P"  # system -> CTI application: the CPU answers


class Sentinel(Enum):
    NEED_DATA = "need data"
    HANDSHAKE = "handshake"
    CLOSED = "closed"


NEED_DATA: Final = Sentinel.NEED_DATA
HANDSHAKE: Final = Sentinel.HANDSHAKE
CLOSED: Final = Sentinel.CLOSED

FramerItem = bytes | Sentinel
Role = Literal["client", "server"]
ItemT = TypeVar("ItemT")


class StreamFramer(Generic[ItemT]):
    """The input side of both framers (this one, ``xml_framing.XmlFramer``): bytes buffered
    until ``_parse`` cuts an item out of them, EOF, and a ``RemoteProtocolError`` that
    breaks the framer for good."""

    _CUT: ClassVar[str]  # the error for an EOF inside a frame: ``{}`` is the bytes left
    _CLEAR_ON_ERROR: ClassVar[bool] = False  # drop the buffer when a frame is refused

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._buffer = bytearray()
        self._eof = False
        self._error: RemoteProtocolError | None = None

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the connection."""
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RemoteProtocolError("data received after the connection was closed")
        self._buffer += data

    def next_item(self) -> ItemT | Sentinel:
        """The next item, ``NEED_DATA``, or ``CLOSED`` after a clean EOF."""
        if self._error is not None:
            raise self._error
        try:
            item = self._parse()
        except RemoteProtocolError as exc:
            self._error = exc
            if self._CLEAR_ON_ERROR:
                self._buffer.clear()
            raise
        if item is NEED_DATA and self._eof:
            if self._buffer:
                self._error = RemoteProtocolError(self._CUT.format(len(self._buffer)))
                raise self._error
            return CLOSED
        return item

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole frame."""
        return len(self._buffer)

    def _parse(self) -> ItemT | Sentinel:
        raise NotImplementedError


class Framer(StreamFramer[bytes]):
    """One end of a CSTA link's framing; ``role`` is ``"client"`` for the CTI application."""

    _CUT = "connection closed in the middle of a frame ({} bytes)"

    def __init__(
        self, *, role: Role = "client", alcatel: bool = False, max_pdu_size: int = MAX_PDU_SIZE
    ) -> None:
        if not 0 < max_pdu_size <= MAX_PDU_SIZE:
            raise LocalProtocolError(f"max_pdu_size must be 1..{MAX_PDU_SIZE}")
        super().__init__(max_pdu_size)
        self.role = role
        self._await_hello = alcatel
        self._alcatel = alcatel

    # -- output ----------------------------------------------------------------------------
    def start(self) -> bytes:
        """What to send as soon as the connection is up (``B`` for an Alcatel client)."""
        return _CLIENT_HELLO if self._alcatel and self.role == "client" else b""

    def handshake_reply(self) -> bytes:
        """What a server sends once it has seen the client's ``B``."""
        return _SERVER_HELLO if self._alcatel and self.role == "server" else b""

    def frame(self, pdu: bytes) -> bytes:
        """The bytes that carry ``pdu``."""
        if not pdu:
            raise LocalProtocolError("cannot frame an empty PDU")
        if len(pdu) > self._max:
            raise LocalProtocolError(f"PDU of {len(pdu)} bytes exceeds {self._max}")
        return len(pdu).to_bytes(_HEADER, "big") + pdu

    # -- input -----------------------------------------------------------------------------
    def next_pdu(self) -> FramerItem:
        """The next PDU, ``HANDSHAKE``, ``NEED_DATA``, or ``CLOSED`` after a clean EOF."""
        return self.next_item()

    def _parse(self) -> FramerItem:
        return self._hello() if self._await_hello else self._frame()

    def _hello(self) -> FramerItem:
        if not self._buffer:
            return NEED_DATA
        expected = _SERVER_HELLO if self.role == "client" else _CLIENT_HELLO
        got = bytes(self._buffer[:1])
        if got != expected:
            raise RemoteProtocolError(f"expected the Alcatel start byte {expected!r}, got {got!r}")
        del self._buffer[:1]
        self._await_hello = False
        return HANDSHAKE

    def _frame(self) -> FramerItem:
        if len(self._buffer) < _HEADER:
            return NEED_DATA
        length = int.from_bytes(self._buffer[:_HEADER], "big")
        if length == 0:
            raise RemoteProtocolError("empty CSTA frame (length 0)")
        if length > self._max:
            raise RemoteProtocolError(f"CSTA frame of {length} bytes exceeds {self._max}")
        end = _HEADER + length
        if len(self._buffer) < end:
            return NEED_DATA
        pdu = bytes(self._buffer[_HEADER:end])
        del self._buffer[:end]
        return pdu
