"""pcap and pcapng captures: the TCP connections to one server port, as trace sessions.

Theory of operation
-------------------
dpkt does the parsing: ``dpkt.pcap.Reader`` or ``dpkt.pcapng.Reader`` (chosen by the file's
magic) yields frames, and dpkt's link, IP and TCP classes decode them. This module numbers
the frames from 1 in file order, as Wireshark numbers them, keeps the TCP segments that have
the server port at one end, and hands them to ``tcp.TcpSessions`` for reassembly.

Link types: Ethernet, Linux cooked (SLL and SLL2), raw IP (and raw IPv4/IPv6), BSD and
OpenBSD loopback; anything else is refused, since its frames would silently yield nothing.
IPv4 and IPv6. Frames that are not TCP, or TCP on other ports, are skipped. Checksums are not
verified: captures on loopback or with checksum offload carry wrong ones.

dpkt stops quietly at a short read and only sometimes raises on one, so the file is read
through ``_ReadWatch``, which notes every read that came back short: the only short read a
whole file allows is the one empty read at its end. That, whatever dpkt raises on a corrupt
record or frame, a frame that the snap length cut short, and an IP fragment of one of our
segments (which would lose bytes silently) all become ``TraceError`` with the packet number.
Timestamps are ``Decimal``: exact for nanosecond pcap (dpkt gives Decimal there), rounded
to the microsecond where dpkt gives a float (pcapng, microsecond pcap). A float holds about a
quarter of a microsecond at today's epoch, so microsecond captures keep exact relative times
and nanosecond pcapng (what dumpcap writes) keeps microseconds.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, BinaryIO, Final

import dpkt

from ctilink.errors import TraceError
from ctilink.traces.records import Trace
from ctilink.traces.tcp import Segment, TcpSessions

PCAPNG_MAGIC: Final = bytes.fromhex("0a0d0d0a")
PCAP_MAGICS: Final = frozenset(
    bytes.fromhex(magic)
    for magic in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1", "a1b2cd34", "34cdb2a1")
)
_MICROSECOND: Final = Decimal("0.000001")


def is_capture(head: bytes) -> bool:
    """Whether a file's first bytes are a pcap or pcapng magic."""
    return head[:4] == PCAPNG_MAGIC or head[:4] in PCAP_MAGICS


def read_capture(path: str | os.PathLike[str], *, port: int = 5038) -> Trace:
    """Every TCP connection to or from ``port`` in a pcap/pcapng file, one session each."""
    name = os.fspath(path)
    sessions = TcpSessions(name, port)
    try:
        with open(name, "rb") as file:
            magic = file.read(4)
            file.seek(0)
            watch = _ReadWatch(file, os.fstat(file.fileno()).st_size)
            reader = _open_reader(name, watch, pcapng=magic == PCAPNG_MAGIC)
            decode = _link_decoder(name, int(reader.datalink()))
            for number, ts, frame in _frames(name, reader, watch):
                segment = _tcp_segment(name, number, decode, frame, port)
                if segment is not None:
                    sessions.receive(number, ts, segment)
    except OSError as exc:
        raise TraceError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    return Trace(name, sessions.sessions())


# -- the file ------------------------------------------------------------------------------
class _ReadWatch:
    """The file as dpkt reads it; counts the reads that came back short."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.name = getattr(file, "name", "<capture>")
        self._file = file
        self._left = size  # never ask for more than the file has, whatever a length says
        self.short_reads = 0
        self.last_read_empty = False

    def read(self, size: int) -> bytes:
        if size < 0:
            raise ValueError(f"a record length is impossible ({size} bytes to read)")
        data = self._file.read(min(size, self._left))
        self._left -= len(data)
        if len(data) < size:
            self.short_reads += 1
            self.last_read_empty = not data
        return data


def _open_reader(name: str, watch: _ReadWatch, *, pcapng: bool) -> Any:
    kind = "pcapng" if pcapng else "pcap"
    try:
        return dpkt.pcapng.Reader(watch) if pcapng else dpkt.pcap.Reader(watch)
    except Exception as exc:  # dpkt raises ValueError, struct.error, NeedData, ...
        what = "is truncated" if watch.short_reads else "is not valid"
        raise TraceError(f"{name}: the {kind} file header {what} ({_describe(exc)})") from exc


def _frames(name: str, reader: Any, watch: _ReadWatch) -> Iterator[tuple[int, Decimal, bytes]]:
    """(packet number, absolute time, frame bytes) for every packet; raises on a bad file."""
    packets = iter(reader)
    number = 0
    truncated = "the file ends in the middle of this record (the capture is truncated)"
    while True:
        number += 1
        try:
            ts, frame = next(packets)
        except StopIteration:
            break
        except Exception as exc:  # dpkt raises many kinds on a corrupt record
            if watch.short_reads:
                raise TraceError(f"{name}: packet {number}: {truncated}") from exc
            raise TraceError(f"{name}: packet {number}: corrupt record ({_describe(exc)})") from exc
        if watch.short_reads:
            raise TraceError(f"{name}: packet {number}: {truncated}")
        yield number, _exact(ts), bytes(frame)
    if watch.short_reads != 1 or not watch.last_read_empty:
        where = f"after packet {number - 1}" if number > 1 else "before the first packet"
        raise TraceError(
            f"{name}: {where}: the file ends in the middle of a record (the capture is truncated)"
        )


def _exact(ts: float | Decimal) -> Decimal:
    """The timestamp as Decimal; a float is rounded to the microsecond (see the top)."""
    return ts if isinstance(ts, Decimal) else Decimal(ts).quantize(_MICROSECOND)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- frames --------------------------------------------------------------------------------
_Decoder = Callable[[bytes], Any]  # frame -> a dpkt IP/IP6 object, or whatever else it held


class _BadSegment(Exception):
    """A segment of ours that cannot be used; the caller adds file and packet."""


def _link_decoder(name: str, linktype: int) -> _Decoder:
    try:
        return _LINK_DECODERS[linktype]
    except KeyError:
        raise TraceError(
            f"{name}: link type {linktype} is not supported (Ethernet, Linux cooked SLL/SLL2,"
            " raw IP and BSD loopback are)"
        ) from None


def _payload_of(link_class: Any) -> _Decoder:
    def decode(frame: bytes) -> Any:
        return link_class(frame).data

    return decode


def _raw_ip(frame: bytes) -> Any:
    version = frame[0] >> 4 if frame else 0
    if version == 4:
        return dpkt.ip.IP(frame)
    if version == 6:
        return dpkt.ip6.IP6(frame)
    return frame


_LINK_DECODERS: Final[dict[int, _Decoder]] = {
    0: _payload_of(dpkt.loopback.Loopback),  # DLT_NULL, BSD loopback
    1: _payload_of(dpkt.ethernet.Ethernet),  # DLT_EN10MB
    12: _raw_ip,  # DLT_RAW as some systems number it
    101: _raw_ip,  # LINKTYPE_RAW
    108: _payload_of(dpkt.loopback.Loopback),  # DLT_LOOP, OpenBSD loopback
    113: _payload_of(dpkt.sll.SLL),  # Linux cooked
    228: dpkt.ip.IP,  # LINKTYPE_IPV4
    229: dpkt.ip6.IP6,  # LINKTYPE_IPV6
    276: _payload_of(dpkt.sll2.SLL2),  # Linux cooked v2
}


def _tcp_segment(
    name: str, number: int, decode: _Decoder, frame: bytes, port: int
) -> Segment | None:
    """The frame's TCP segment if one end is ``port``, else None."""
    try:
        packet = decode(frame)
    except Exception as exc:  # dpkt raises NeedData, UnpackError, struct.error, ...
        raise TraceError(
            f"{name}: packet {number}: cannot decode the frame ({_describe(exc)})"
        ) from exc
    try:
        if isinstance(packet, dpkt.ip.IP):
            return _from_ipv4(packet, port)
        if isinstance(packet, dpkt.ip6.IP6):
            return _from_ipv6(packet, port)
    except _BadSegment as exc:
        raise TraceError(f"{name}: packet {number}: {exc}") from None
    return None


def _from_ipv4(ip: Any, port: int) -> Segment | None:
    if not _is_ours(ip.data, ip.p, port, first_fragment=ip.offset == 0):
        return None
    if ip.mf:
        raise _BadSegment("an IP fragment of a TCP segment (IP reassembly is not supported)")
    tcp = ip.data
    expected = ip.len - ip.hl * 4 - tcp.off * 4 if ip.len else None
    return _segment(socket.AF_INET, ip.src, ip.dst, tcp, expected)


def _from_ipv6(ip: Any, port: int) -> Segment | None:
    headers = ip.all_extension_headers
    fragmented = any(isinstance(h, dpkt.ip6.IP6FragmentHeader) for h in headers)
    if not _is_ours(ip.data, ip.p, port, first_fragment=True):
        return None
    if fragmented:
        raise _BadSegment("an IPv6 fragment of a TCP segment (reassembly is not supported)")
    tcp = ip.data
    expected = ip.plen - sum(h.length for h in headers) - tcp.off * 4 if ip.plen else None
    return _segment(socket.AF_INET6, ip.src, ip.dst, tcp, expected)


def _is_ours(transport: Any, protocol: int, port: int, *, first_fragment: bool) -> bool:
    """Whether the IP payload is a TCP segment to or from ``port``."""
    if isinstance(transport, dpkt.tcp.TCP):
        return port in (transport.sport, transport.dport)
    if protocol == dpkt.ip.IP_PROTO_TCP and first_fragment and len(transport) >= 4:
        # dpkt leaves the bytes raw when the TCP header is cut short.
        ports = (int.from_bytes(transport[0:2], "big"), int.from_bytes(transport[2:4], "big"))
        if port in ports:
            raise _BadSegment("the capture cut the TCP header short (snap length too small)")
    return False


def _segment(family: int, src: bytes, dst: bytes, tcp: Any, expected: int | None) -> Segment:
    payload = bytes(tcp.data)
    if expected is not None and len(payload) < expected:
        raise _BadSegment(
            f"the capture kept {len(payload)} of the segment's {expected} payload bytes"
            " (snap length too small)"
        )
    return Segment(
        (socket.inet_ntop(family, src), int(tcp.sport)),
        (socket.inet_ntop(family, dst), int(tcp.dport)),
        int(tcp.seq),
        int(tcp.flags),
        payload,
    )
