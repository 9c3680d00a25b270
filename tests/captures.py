"""Test helpers: build pcap/pcapng captures of TCP conversations with dpkt's writers."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt

from ctilink.ami.codec import AmiBanner, AmiCodec

Endpoint = tuple[str, int]

T0 = 1_700_000_000.0
SERVER: Endpoint = ("10.0.0.1", 5038)
CLIENT: Endpoint = ("10.0.0.2", 40000)
SYN, ACK, FIN, PSH, RST = (
    dpkt.tcp.TH_SYN,
    dpkt.tcp.TH_ACK,
    dpkt.tcp.TH_FIN,
    dpkt.tcp.TH_PUSH,
    dpkt.tcp.TH_RST,
)
AMI_STREAM = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(
    f"Event: Newchannel\r\nChannel: Local/6001@agents-{i:08x};1\r\nUniqueid: {i}\r\n\r\n".encode()
    for i in range(40)
)


# -- building captures ---------------------------------------------------------------------
@dataclass(frozen=True)
class Pkt:
    ts: float
    src: Endpoint
    dst: Endpoint
    seq: int
    flags: int
    payload: bytes = b""


def _ip_bytes(p: Pkt) -> bytes:
    tcp = dpkt.tcp.TCP(
        sport=p.src[1], dport=p.dst[1], seq=p.seq % 2**32, flags=p.flags, data=p.payload
    )
    if ":" in p.src[0]:
        return bytes(
            dpkt.ip6.IP6(
                src=socket.inet_pton(socket.AF_INET6, p.src[0]),
                dst=socket.inet_pton(socket.AF_INET6, p.dst[0]),
                nxt=dpkt.ip.IP_PROTO_TCP,
                hlim=64,
                plen=len(bytes(tcp)),
                data=tcp,
            )
        )
    return bytes(
        dpkt.ip.IP(
            src=socket.inet_pton(socket.AF_INET, p.src[0]),
            dst=socket.inet_pton(socket.AF_INET, p.dst[0]),
            p=dpkt.ip.IP_PROTO_TCP,
            ttl=64,
            data=tcp,
        )
    )


def _ethertype(ip: bytes) -> int:
    return int(dpkt.ethernet.ETH_TYPE_IP6 if ip[0] >> 4 == 6 else dpkt.ethernet.ETH_TYPE_IP)


def _ethernet(ip: bytes) -> bytes:
    mac = b"\x02\x00\x00\x00\x00\x01"
    return bytes(dpkt.ethernet.Ethernet(src=mac, dst=mac, type=_ethertype(ip), data=ip))


def _bsd_family(ip: bytes) -> int:
    return 24 if ip[0] >> 4 == 6 else 2


# link name -> (link type, IP packet bytes -> frame bytes)
LINKS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "ethernet": (dpkt.pcap.DLT_EN10MB, _ethernet),
    "sll": (dpkt.pcap.DLT_LINUX_SLL, lambda ip: bytes(dpkt.sll.SLL(ethtype=_ethertype(ip))) + ip),
    "sll2": (276, lambda ip: bytes(dpkt.sll2.SLL2(ethtype=_ethertype(ip))) + ip),
    "raw": (101, lambda ip: ip),
    "null": (dpkt.pcap.DLT_NULL, lambda ip: struct.pack("<I", _bsd_family(ip)) + ip),
    "loop": (dpkt.pcap.DLT_LOOP, lambda ip: struct.pack(">I", _bsd_family(ip)) + ip),
}


def write_capture(
    path: Path,
    packets: Sequence[Pkt | tuple[float, bytes]],
    *,
    link: str = "ethernet",
    ng: bool = False,
    nano: bool = False,
) -> Path:
    """Write packets (or ready (ts, frame) pairs) with dpkt's writers."""
    linktype, wrap = LINKS[link]
    with path.open("wb") as file:
        writer: Any
        if ng:
            writer = dpkt.pcapng.Writer(file, snaplen=65535, linktype=linktype)
        else:
            writer = dpkt.pcap.Writer(file, snaplen=65535, linktype=linktype, nano=nano)
        for p in packets:
            if isinstance(p, Pkt):
                writer.writepkt(wrap(_ip_bytes(p)), ts=p.ts)
            else:
                writer.writepkt(p[1], ts=p[0])
    return path


class Conn:
    """One TCP connection's packets; offsets count payload bytes from 0 in each direction."""

    def __init__(
        self,
        client: Endpoint = CLIENT,
        server: Endpoint = SERVER,
        client_isn: int = 1000,
        server_isn: int = 70000,
    ) -> None:
        self.ends = {"tx": (client, server), "rx": (server, client)}
        self.isn = {"tx": client_isn, "rx": server_isn}

    def handshake(self, ts: float) -> list[Pkt]:
        (c, s), isn = self.ends["tx"], self.isn
        return [
            Pkt(ts, c, s, isn["tx"], SYN),
            Pkt(ts + 0.0001, s, c, isn["rx"], SYN | ACK),
            Pkt(ts + 0.0002, c, s, isn["tx"] + 1, ACK),
        ]

    def data(self, direction: str, offset: int, payload: bytes, ts: float, flags: int = 0) -> Pkt:
        src, dst = self.ends[direction]
        return Pkt(ts, src, dst, self.isn[direction] + 1 + offset, ACK | PSH | flags, payload)

    def fin(self, direction: str, offset: int, ts: float) -> Pkt:
        src, dst = self.ends[direction]
        return Pkt(ts, src, dst, self.isn[direction] + 1 + offset, FIN | ACK)


def chunks(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(i, data[i : i + size]) for i in range(0, len(data), size)]


def frame_ami(data: bytes, *, banner: bool) -> tuple[int, int]:
    """(whole messages and banner framed, bytes left over) for one direction's bytes."""
    codec = AmiCodec(expect_banner=banner)
    codec.receive_data(data)
    items = list(codec.events())
    if banner:
        assert isinstance(items[0], AmiBanner)
    return len(items), codec.pending


def cut_capture(source: Path, path: Path, drop: int, *, trim: int = 0) -> Path:
    """``source`` as if the capture had been started later: without its first ``drop`` packets.

    ``trim`` also takes that many bytes off the front of the first kept packet's TCP payload,
    as if its message had been sent in two segments of which only the second was captured.
    Ethernet pcapng in (what dumpcap writes), pcapng out; the checksums are recomputed.
    """
    with source.open("rb") as file:
        reader = dpkt.pcapng.Reader(file)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        packets = [(float(ts), bytes(frame)) for ts, frame in reader][drop:]
    if trim:
        ts, frame = packets[0]
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        tcp = ip.data
        assert len(tcp.data) > trim, "trim the payload of a packet that carries more"
        tcp.data, tcp.seq = tcp.data[trim:], tcp.seq + trim
        ip.data = tcp
        ip.len, ip.sum, tcp.sum = len(ip), 0, 0  # a zero checksum is recomputed by dpkt
        packets[0] = (ts, bytes(eth))
    return write_capture(path, packets, ng=True)
