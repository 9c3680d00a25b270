"""TCP reassembly for captures: numbered segments in, one session per connection out.

Theory of operation
-------------------
A capture library parses packets, not streams; this module keeps the state between them.
It does no I/O: ``pcap.py`` feeds it each TCP segment to or from the server port with the
segment's packet number and timestamp, then asks for the sessions.

* A connection is a pair of endpoints. The server is the end with the server port (if both
  ends have it, the end the SYN went to). Bytes from the server are ``rx``, bytes to it
  ``tx``. A SYN from the client with another ISN on the endpoints of a known connection
  starts a new connection (port reuse).
* Each direction is reassembled alone by sequence number, byte 0 being the one after the
  ISN its SYN carries (or the first one seen, below); offsets are unwrapped next to the next
  expected byte, so streams may pass 4 GiB. Bytes already delivered (retransmissions,
  overlaps) are dropped, keeping what arrived first; a segment beyond the next expected byte
  waits in a heap until the hole before it fills. Each packet that makes new bytes
  contiguous yields one record, stamped with that packet's time. The payload of a RST is not
  stream data and is ignored.
* Payload in a direction whose SYN is not in the capture means the capture began in the
  middle of the connection (AMI connections live for days; a capture rarely holds their
  start). That direction is joined there: the first payload byte seen is byte 0, later
  segments before it are retransmissions of the unseen past and are dropped, holes after it
  are errors as anywhere, and a SYN after it is an error. A connection with a direction
  joined this way is a ``mid_stream`` session, whose bytes start wherever the capture caught
  each direction, often in the middle of a message (the reader of the bytes resynchronises).
  Endpoints seen first in mid-stream data name the server by the port; if both ends have
  it, the sender is taken for the server. A client SYN on the endpoints of a mid-stream
  connection starts a new connection. Segments without payload from connections never seen
  opening (the last ACKs or FIN of a connection older than the capture) carry nothing and
  are ignored.
* At the end, a hole that never filled (bytes waiting beyond it, or a FIN beyond it) is an
  error naming the packet after which the bytes are missing: the last packet that added to
  that direction, or its SYN.
* Sessions are ordered by their first packet's time (then packet number). ``t`` is seconds
  since that packet and never decreases within a session, even where the capture's clock
  steps back; ``start_time`` is that packet's absolute time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, NamedTuple

from ctilink.errors import TraceError
from ctilink.traces.records import Direction, TraceRecord, TraceSession

Endpoint = tuple[str, int]  # (address as text, port)

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10
_SEQ_SPACE: Final = 1 << 32


@dataclass(frozen=True, slots=True)
class Segment:
    """The part of one TCP segment that reassembly needs."""

    src: Endpoint
    dst: Endpoint
    seq: int
    flags: int
    payload: bytes

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


class _Gap(NamedTuple):
    packet: int
    stream: str
    offset: int
    missing: int


class _Broken(Exception):
    """What went wrong at the current packet; ``TcpSessions`` adds file and packet."""


def format_endpoint(endpoint: Endpoint) -> str:
    address, port = endpoint
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class _Stream:
    """One direction of one connection, reassembled."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._isn: int | None = None
        self._next = 0  # offset of the next byte to deliver
        self._waiting: list[tuple[int, int, bytes]] = []  # heap of (offset, packet, bytes)
        self._last_packet = 0  # the last packet that added bytes (or the SYN)
        self._fin: int | None = None
        self.joined = False  # True when byte 0 is the first one seen, not the one after a SYN

    @property
    def isn(self) -> int | None:
        return self._isn

    def receive(self, number: int, segment: Segment) -> bytes:
        """The bytes this segment makes newly contiguous (often b"")."""
        if segment.has(SYN):
            self._open(number, segment.seq)
        payload = b"" if segment.has(RST) else segment.payload
        if self._isn is None:
            if not payload:
                return b""
            self._isn = (segment.seq - 1) % _SEQ_SPACE  # joined here: this byte is offset 0
            self.joined = True
        offset = self._offset(segment.seq + 1 if segment.has(SYN) else segment.seq)
        if segment.has(FIN) and self._fin is None:
            self._fin = offset + len(payload)
        if not payload:
            return b""
        if offset > self._next:
            heapq.heappush(self._waiting, (offset, number, payload))
            return b""
        chunks: list[bytes] = []
        self._take(offset, payload, chunks)
        while self._waiting and self._waiting[0][0] <= self._next:
            waiting_offset, _, data = heapq.heappop(self._waiting)
            self._take(waiting_offset, data, chunks)
        if chunks:
            self._last_packet = number
        return b"".join(chunks)

    def gap(self) -> _Gap | None:
        """The hole that never filled, if any."""
        if self._waiting:
            end = self._waiting[0][0]
        elif self._fin is not None and self._fin > self._next:
            end = self._fin
        else:
            return None
        return _Gap(self._last_packet, self.label, self._next, end - self._next)

    def _open(self, number: int, seq: int) -> None:
        if self._isn is None:
            self._isn = seq
            self._last_packet = number
        elif self.joined:
            raise _Broken(
                f"a SYN in the TCP stream {self.label} after its data (the capture joined it"
                " mid-stream)"
            )
        elif seq != self._isn:
            raise _Broken(
                f"a second SYN in the TCP stream {self.label} with another initial sequence number"
            )

    def _offset(self, seq: int) -> int:
        """The stream offset of ``seq``: the one congruent mod 2**32 nearest the next byte."""
        assert self._isn is not None
        delta = (seq - self._isn - 1 - self._next) % _SEQ_SPACE
        if delta >= _SEQ_SPACE // 2:
            delta -= _SEQ_SPACE
        return self._next + delta

    def _take(self, offset: int, data: bytes, chunks: list[bytes]) -> None:
        end = offset + len(data)
        if end > self._next:
            chunks.append(data[self._next - offset :])
            self._next = end


class _Connection:
    def __init__(self, client: Endpoint, server: Endpoint, number: int, ts: Decimal) -> None:
        self.client = client
        self.server = server
        self.first_packet = number
        self.first_ts = ts
        self.peer = f"{format_endpoint(client)} -> {format_endpoint(server)}"
        back = f"{format_endpoint(server)} -> {format_endpoint(client)}"
        self.streams: dict[Direction, _Stream] = {"tx": _Stream(self.peer), "rx": _Stream(back)}
        self.records: list[TraceRecord] = []
        self._last_t = 0.0

    @property
    def mid_stream(self) -> bool:
        return any(stream.joined for stream in self.streams.values())

    def is_reopened_by(self, segment: Segment) -> bool:
        """Whether this client SYN starts a new connection on the same endpoints."""
        isn = self.streams["tx"].isn
        return (
            segment.src != self.client
            or self.mid_stream
            or (isn is not None and isn != segment.seq)
        )

    def receive(self, number: int, ts: Decimal, segment: Segment) -> None:
        direction: Direction = "rx" if segment.src == self.server else "tx"
        data = self.streams[direction].receive(number, segment)
        if data:
            self._last_t = max(self._last_t, float(ts - self.first_ts))
            self.records.append(TraceRecord(self._last_t, direction, data, f"packet {number}"))

    def session(self, index: int) -> TraceSession:
        return TraceSession(
            index, tuple(self.records), float(self.first_ts), self.peer, self.mid_stream
        )


class TcpSessions:
    """Connections to one server port, fed segment by segment; ``name`` is for errors."""

    def __init__(self, name: str, port: int) -> None:
        self._name = name
        self._port = port
        self._live: dict[tuple[Endpoint, Endpoint], _Connection] = {}
        self._all: list[_Connection] = []

    def receive(self, number: int, ts: Decimal, segment: Segment) -> None:
        """Take one segment that has the server port at one end."""
        key = (min(segment.src, segment.dst), max(segment.src, segment.dst))
        connection = self._live.get(key)
        opening = segment.has(SYN) and not segment.has(ACK)
        if connection is not None and opening and connection.is_reopened_by(segment):
            connection = None
        try:
            if connection is None:
                if not segment.has(SYN) and (not segment.payload or segment.has(RST)):
                    return  # a bare ACK/FIN/RST of a connection older than the capture
                # A SYN, or data of a connection that began before the capture.
                connection = self._open(number, ts, segment, opening)
                self._live[key] = connection
                self._all.append(connection)
            connection.receive(number, ts, segment)
        except _Broken as exc:
            raise TraceError(f"{self._name}: packet {number}: {exc}") from None

    def sessions(self) -> tuple[TraceSession, ...]:
        """Every connection as a session, ordered by first packet; raises on a hole."""
        gaps = [
            gap
            for connection in self._all
            for stream in connection.streams.values()
            if (gap := stream.gap()) is not None
        ]
        if gaps:
            gap = min(gaps)
            raise TraceError(
                f"{self._name}: packet {gap.packet}: gap in the TCP stream {gap.stream} at"
                f" offset {gap.offset} ({gap.missing} bytes missing)"
            )
        ordered = sorted(self._all, key=lambda c: (c.first_ts, c.first_packet))
        return tuple(connection.session(i) for i, connection in enumerate(ordered))

    def _open(self, number: int, ts: Decimal, segment: Segment, opening: bool) -> _Connection:
        src_is_server = segment.src[1] == self._port
        if src_is_server == (segment.dst[1] == self._port):
            # Both ends on the server port: the SYN goes to the server, the SYN-ACK from it.
            src_is_server = not opening
        if src_is_server:
            return _Connection(segment.dst, segment.src, number, ts)
        return _Connection(segment.src, segment.dst, number, ts)
