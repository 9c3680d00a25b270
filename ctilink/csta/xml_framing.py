"""Sans-I/O framing of CSTA XML (ECMA-323) over TCP: bytes in, documents out, and back.

Theory of operation
-------------------
Each XML document travels behind an 8-byte header (the form ECMA-323 describes for CSTA
XML over TCP without SOAP, and that public clients and traces of OpenScape Voice and Avaya
AES use)::

    0      2      4                   8
    +------+------+-------------------+---------------------------
    | 0000 | len  | invoke id (ASCII) | <?xml ...?><MakeCall ...>
    +------+------+-------------------+---------------------------

* 2 bytes format indicator: ``0x0000`` for XML without SOAP; anything else (a SOAP
  envelope, another encoding) is a ``RemoteProtocolError``.
* 2 bytes big-endian total length, **including** these 8 header bytes.
* 4 ASCII digits: the invoke id, ``0000``..``9999``. A request and its response carry the
  same id; event reports carry the switch's own (OpenScape Voice uses ``9999``).

The framer buffers bytes until a whole frame is present and hands out an ``XmlFrame``. A
frame whose length says less than a header, more than ``max_frame_size``, or whose id is
not four digits is a ``RemoteProtocolError`` and breaks the framer for good (nothing more
is buffered). That the header's length and the document's agree is checked by the XML
parser (``ctilink.csta.xml``): a length too short cuts the document, one too long swallows
the next header, and either way the document is not well formed. Buffering, EOF and the
sentinels are the BER framer's (``framing.StreamFramer``).

Usage, as in h11::

    framer = XmlFramer()
    framer.receive_data(chunk)            # b"" when the peer closed
    while (item := framer.next_frame()) is not NEED_DATA:
        ...                               # an XmlFrame, or CLOSED after a clean EOF
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ctilink.csta.framing import CLOSED as CLOSED  # the BER framer's sentinels
from ctilink.csta.framing import NEED_DATA, Sentinel, StreamFramer
from ctilink.errors import LocalProtocolError, RemoteProtocolError

HEADER_SIZE: Final = 8
MAX_FRAME_SIZE: Final = 65535  # what the 2-byte length can say
MAX_INVOKE_ID: Final = 9999
_FORMAT_XML: Final = b"\x00\x00"


@dataclass(frozen=True, slots=True)
class XmlFrame:
    """One CSTA XML message: the header's invoke id and the XML document's bytes."""

    invoke_id: int
    document: bytes


XmlFramerItem = XmlFrame | Sentinel


class XmlFramer(StreamFramer[XmlFrame]):
    """One end of a CSTA XML link's framing (the same for the application and the switch)."""

    _CUT = "connection closed in a CSTA XML frame ({} bytes)"
    _CLEAR_ON_ERROR = True

    def __init__(self, *, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not HEADER_SIZE < max_frame_size <= MAX_FRAME_SIZE:
            raise LocalProtocolError(f"max_frame_size must be {HEADER_SIZE + 1}..{MAX_FRAME_SIZE}")
        super().__init__(max_frame_size)

    # -- output ----------------------------------------------------------------------------
    def frame(self, invoke_id: int, document: bytes) -> bytes:
        """The bytes that carry ``document`` with ``invoke_id`` in the header."""
        if not 0 <= invoke_id <= MAX_INVOKE_ID:
            raise LocalProtocolError(f"CSTA XML invoke id {invoke_id} is not 0..{MAX_INVOKE_ID}")
        if not document:
            raise LocalProtocolError("cannot frame an empty XML document")
        total = HEADER_SIZE + len(document)
        if total > self._max:
            raise LocalProtocolError(f"CSTA XML frame of {total} bytes exceeds {self._max}")
        return _FORMAT_XML + total.to_bytes(2, "big") + b"%04d" % invoke_id + document

    # -- input -----------------------------------------------------------------------------
    def next_frame(self) -> XmlFramerItem:
        """The next ``XmlFrame``, ``NEED_DATA``, or ``CLOSED`` after a clean EOF."""
        return self.next_item()

    def _parse(self) -> XmlFramerItem:
        if len(self._buffer) < 2:
            return NEED_DATA
        if self._buffer[:2] != _FORMAT_XML:
            raise RemoteProtocolError(
                f"CSTA XML format indicator {bytes(self._buffer[:2]).hex()} is not 0000 (plain XML)"
            )
        if len(self._buffer) < 4:
            return NEED_DATA
        total = int.from_bytes(self._buffer[2:4], "big")
        if total <= HEADER_SIZE:
            raise RemoteProtocolError(f"CSTA XML frame length {total} leaves no document")
        if total > self._max:
            raise RemoteProtocolError(f"CSTA XML frame of {total} bytes exceeds {self._max}")
        if len(self._buffer) < HEADER_SIZE:
            return NEED_DATA
        digits = bytes(self._buffer[4:HEADER_SIZE])
        if not all(0x30 <= byte <= 0x39 for byte in digits):
            raise RemoteProtocolError(f"CSTA XML invoke id {digits!r} is not four ASCII digits")
        if len(self._buffer) < total:
            return NEED_DATA
        document = bytes(self._buffer[HEADER_SIZE:total])
        del self._buffer[:total]
        return XmlFrame(int(digits), document)
