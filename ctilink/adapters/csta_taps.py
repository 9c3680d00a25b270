"""Whole CSTA frames out of a byte stream, for taps (``ctilink record``) and trace replay.

The sessions (``CstaConnection``, ``CstaXmlConnection``) frame and decode on their own and
hand out messages, not bytes. A recording wants the bytes of each whole frame as they
crossed the wire, so ``FrameSplitter`` runs the codec's own framer (``framing.Framer`` for
BER, with the Alcatel ``P`` start byte as a frame of its own; ``xml_framing.XmlFramer``)
over the same bytes and hands back each frame re-framed, which is byte for byte what
arrived. ``FrameTap`` feeds the adapter's taps with them and keeps the switch's first
frame of the connection (its association response), which a recording starts with.

A stream the framer cannot cut (the session reports that as a broken link) stops the
splitting until ``reset``; the taps then get the rest as it arrives.
"""

from __future__ import annotations

from ctilink.adapters.base import Tap
from ctilink.csta.framing import HANDSHAKE, Framer
from ctilink.csta.xml_framing import XmlFrame, XmlFramer
from ctilink.errors import RemoteProtocolError

_SERVER_HELLO = b"P"


class FrameSplitter:
    """Cuts bytes from a switch (or, with ``role="server"``, from ctilink) into frames."""

    def __init__(self, *, xml: bool, alcatel: bool = False, role: str = "client") -> None:
        self.xml = xml
        self._ber = Framer(role="client" if role == "client" else "server", alcatel=alcatel)
        self._xml = XmlFramer()

    def frames(self, data: bytes) -> list[bytes]:
        """The whole frames ``data`` completes (``RemoteProtocolError`` if it cannot)."""
        out: list[bytes] = []
        if self.xml:
            self._xml.receive_data(data)
            while isinstance(item := self._xml.next_frame(), XmlFrame):
                out.append(self._xml.frame(item.invoke_id, item.document))
            return out
        self._ber.receive_data(data)
        while True:
            pdu = self._ber.next_pdu()
            if isinstance(pdu, bytes):
                out.append(self._ber.frame(pdu))
            elif pdu is HANDSHAKE:
                out.append(_SERVER_HELLO if self._ber.role == "client" else b"B")
            else:
                return out

    @property
    def pending(self) -> int:
        return self._xml.pending if self.xml else self._ber.pending


class FrameTap:
    def __init__(self, *, xml: bool, alcatel: bool) -> None:
        self._xml = xml
        self._alcatel = alcatel
        self.first = b""
        self.reset()

    def reset(self) -> None:
        """A new connection."""
        self._splitter: FrameSplitter | None = FrameSplitter(xml=self._xml, alcatel=self._alcatel)
        self.first = b""

    def received(self, data: bytes, at: float, taps: list[Tap]) -> None:
        if self._splitter is None:
            frames = [data]
        else:
            try:
                frames = self._splitter.frames(data)
            except RemoteProtocolError:
                self._splitter = None
                frames = [data]
        for frame in frames:
            if not self.first and frame != _SERVER_HELLO:
                self.first = frame
            for tap in taps:
                tap(at, "rx", frame)
