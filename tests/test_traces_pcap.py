"""Trace reading from pcap/pcapng captures built in ``tmp_path``.

Out-of-order and retransmitted segments, gaps, connections joined mid-stream (no SYN in the
capture), truncated and corrupt files, several sessions, IPv6, every supported link type,
and the real capture cut short at its start. Property tests: any
splitting/reordering/duplication of a stream reassembles exactly (or, with a segment
dropped, raises ``TraceError``), also when the capture joins it mid-stream, and damaged
files raise ``TraceError`` and nothing else.
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ctilink.errors import TraceError
from ctilink.traces import Trace, read_trace
from tests.captures import (
    ACK,
    AMI_STREAM,
    FIN,
    LINKS,
    RST,
    SERVER,
    T0,
    Conn,
    Pkt,
    _ethernet,
    _ip_bytes,
    chunks,
    cut_capture,
    frame_ami,
    write_capture,
)
from tests.conftest import TRACES


# -- captures: reassembly ------------------------------------------------------------------
def test_out_of_order_and_retransmitted_segments_reassemble(tmp_path: Path) -> None:
    conn = Conn()
    parts = chunks(AMI_STREAM, 400)
    (o0, d0), (o1, d1), (o2, d2), (o3, d3) = parts[:4]
    packets = [
        *conn.handshake(T0),
        conn.data("tx", 0, b"Action: Login\r\n\r\n", T0 + 0.5),
        conn.data("rx", o0, d0, T0 + 1),
        conn.data("rx", o2, d2, T0 + 2),  # out of order: waits for the hole before it
        conn.data("rx", o0, d0, T0 + 3),  # retransmission of delivered bytes
        conn.data("rx", o1, d1, T0 + 4),  # fills the hole: delivers d1 and d2
        conn.data("rx", o1 + 100, d1[100:] + d2 + d3[:50], T0 + 5),  # overlapping resend
        conn.data("rx", o3, d3, T0 + 6),
    ]
    packets += [conn.data("rx", o, d, T0 + 7 + i) for i, (o, d) in enumerate(parts[4:])]
    packets.append(conn.fin("rx", len(AMI_STREAM), T0 + 60))
    write_capture(tmp_path / "cap.pcap", packets)

    [session] = read_trace(tmp_path / "cap.pcap").sessions
    assert session.data("rx") == AMI_STREAM
    assert session.data("tx") == b"Action: Login\r\n\r\n"
    assert session.start_time == T0
    assert session.peer == "10.0.0.2:40000 -> 10.0.0.1:5038"
    first = session.records[:5]
    assert [(r.t, r.direction, r.data, r.position) for r in first] == [
        (0.5, "tx", b"Action: Login\r\n\r\n", "packet 4"),
        (1.0, "rx", d0, "packet 5"),
        (4.0, "rx", d1 + d2, "packet 8"),
        (5.0, "rx", d3[:50], "packet 9"),
        (6.0, "rx", d3[50:], "packet 10"),
    ]
    assert frame_ami(session.data("rx"), banner=True)[1] == 0


def test_sequence_numbers_wrap_around(tmp_path: Path) -> None:
    conn = Conn(server_isn=2**32 - 700)
    packets = conn.handshake(T0) + [
        conn.data("rx", o, d, T0 + 1 + i) for i, (o, d) in enumerate(chunks(AMI_STREAM, 300))
    ]
    write_capture(tmp_path / "wrap.pcap", packets)
    assert read_trace(tmp_path / "wrap.pcap").sessions[0].data("rx") == AMI_STREAM


def test_a_gap_names_the_packet_after_which_bytes_are_missing(tmp_path: Path) -> None:
    conn = Conn()
    parts = chunks(AMI_STREAM, 500)
    packets = conn.handshake(T0) + [
        conn.data("rx", o, d, T0 + 1 + i) for i, (o, d) in enumerate(parts) if i != 2
    ]
    path = write_capture(tmp_path / "gap.pcap", packets)
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    # packets 1-3 handshake; 4 and 5 carry parts 0 and 1; part 2 (offset 1000) is missing
    assert str(caught.value) == (
        f"{path}: packet 5: gap in the TCP stream 10.0.0.1:5038 -> 10.0.0.2:40000"
        f" at offset 1000 ({len(parts[2][1])} bytes missing)"
    )


def test_missing_bytes_before_a_fin_are_a_gap(tmp_path: Path) -> None:
    conn = Conn()
    packets = [*conn.handshake(T0), conn.data("tx", 0, b"abc", T0 + 1), conn.fin("tx", 10, T0 + 2)]
    path = write_capture(tmp_path / "fin.pcap", packets)
    with pytest.raises(TraceError, match=r"packet 4: gap .* at offset 3 \(7 bytes missing\)"):
        read_trace(path)


def test_a_connection_without_its_syn_is_joined_mid_stream(tmp_path: Path) -> None:
    conn = Conn()
    login = b"Action: Ping\r\nActionID: 7\r\n\r\n"
    (o0, d0), (o1, d1), (o2, d2), (o3, d3), *rest = chunks(AMI_STREAM, 400)
    packets = [
        Pkt(T0 - 1, conn.ends["tx"][0], SERVER, 5, ACK),  # a bare ACK: no connection yet
        conn.data("rx", o1 + 100, d1[100:], T0),  # the first byte seen in rx: its origin
        conn.data("rx", o3, d3, T0 + 1),  # out of order after the origin: waits
        conn.data("rx", o0, d0, T0 + 2),  # before the origin: the unseen past, dropped
        conn.data("tx", 3, login[3:], T0 + 3),  # tx has its own origin
        conn.data("rx", o1, d1 + d2[:10], T0 + 4),  # straddles the origin: the new part counts
        conn.data("rx", o2 + 10, d2[10:], T0 + 5),  # fills the hole: delivers d2 and d3
        *(conn.data("rx", o, d, T0 + 6 + i) for i, (o, d) in enumerate(rest)),
        conn.fin("rx", len(AMI_STREAM), T0 + 60),
    ]
    [session] = read_trace(write_capture(tmp_path / "mid.pcap", packets)).sessions
    assert session.mid_stream
    assert session.data("rx") == AMI_STREAM[o1 + 100 :]
    assert session.data("tx") == login[3:]
    assert session.start_time == T0 and session.peer == "10.0.0.2:40000 -> 10.0.0.1:5038"
    assert [(r.t, r.direction, r.position) for r in session.records[:4]] == [
        (0.0, "rx", "packet 2"),
        (3.0, "tx", "packet 5"),
        (4.0, "rx", "packet 6"),
        (5.0, "rx", "packet 7"),
    ]
    assert session.records[2].data == d2[:10]


def test_a_capture_with_the_syn_is_not_mid_stream(tmp_path: Path) -> None:
    conn = Conn()
    packets = [*conn.handshake(T0), conn.data("rx", 0, b"Asterisk Call Manager/11.0.0\r\n", T0)]
    [session] = read_trace(write_capture(tmp_path / "whole.pcap", packets)).sessions
    assert not session.mid_stream
    [session] = read_trace(TRACES / "inbound-answered.jsonl").sessions
    assert not session.mid_stream  # JSON Lines: recorded from the banner on


def test_a_gap_after_joining_mid_stream_is_still_an_error(tmp_path: Path) -> None:
    conn = Conn()
    packets = [
        conn.data("rx", 100, b"ChannelState: 6\r\n\r\n", T0),
        conn.data("rx", 130, b"Event: Ping\r\n\r\n", T0 + 1),  # 11 bytes after the first
    ]
    path = write_capture(tmp_path / "midgap.pcap", packets)
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert str(caught.value) == (
        f"{path}: packet 1: gap in the TCP stream 10.0.0.1:5038 -> 10.0.0.2:40000"
        " at offset 19 (11 bytes missing)"
    )


def test_a_lost_syn_ack_joins_the_server_side_mid_stream(tmp_path: Path) -> None:
    conn = Conn()
    syn, _, ack = conn.handshake(T0)
    packets = [syn, ack, conn.data("tx", 0, b"Action: Ping\r\n\r\n", T0 + 1)]
    [session] = read_trace(write_capture(tmp_path / "a.pcap", packets)).sessions
    assert session.data("tx") and not session.mid_stream
    packets.append(conn.data("rx", 0, b"Response: Success\r\n\r\n", T0 + 2))
    [session] = read_trace(write_capture(tmp_path / "b.pcap", packets)).sessions
    assert session.mid_stream  # rx has no SYN: where its stream began is not known
    assert session.data("rx") == b"Response: Success\r\n\r\n"


def test_a_client_syn_after_a_mid_stream_connection_starts_a_new_one(tmp_path: Path) -> None:
    conn = Conn()
    again = Conn(client_isn=1000, server_isn=9)  # even the same client ISN: a new connection
    packets = [
        conn.data("rx", 50, b"Event: Ping\r\n\r\n", T0),
        conn.fin("rx", 65, T0 + 1),
        *again.handshake(T0 + 2),
        again.data("rx", 0, b"Asterisk Call Manager/11.0.0\r\n", T0 + 3),
    ]
    first, second = read_trace(write_capture(tmp_path / "reopen.pcap", packets)).sessions
    assert first.mid_stream and first.data("rx") == b"Event: Ping\r\n\r\n"
    assert not second.mid_stream and second.start_time == T0 + 2
    assert second.data("rx") == b"Asterisk Call Manager/11.0.0\r\n"


def test_a_syn_ack_in_a_stream_joined_mid_stream_is_an_error(tmp_path: Path) -> None:
    conn = Conn()
    packets = [conn.data("rx", 50, b"Event: Ping\r\n\r\n", T0), conn.handshake(T0 + 1)[1]]
    with pytest.raises(TraceError, match=r"packet 2: a SYN in the TCP stream 10\.0\.0\.1:5038"):
        read_trace(write_capture(tmp_path / "synack.pcap", packets))


def test_bare_acks_of_an_older_connection_are_ignored(tmp_path: Path) -> None:
    old = Conn(client=("10.0.0.2", 39999))
    conn = Conn()
    packets = [
        Pkt(T0 - 1, old.ends["tx"][0], SERVER, 5, ACK),
        Pkt(T0 - 1, SERVER, old.ends["tx"][0], 9, FIN | ACK),
        Pkt(T0 - 1, SERVER, old.ends["tx"][0], 9, RST, b"reset reason"),
        *conn.handshake(T0),
        conn.data("rx", 0, b"hello", T0 + 1),
    ]
    [session] = read_trace(write_capture(tmp_path / "old.pcap", packets)).sessions
    assert session.data("rx") == b"hello" and session.start_time == T0


def test_other_ports_and_other_protocols_are_ignored(tmp_path: Path) -> None:
    conn = Conn()
    other = Conn(server=("10.0.0.1", 80), client=("10.0.0.2", 5039))
    udp = dpkt.ip.IP(
        src=socket.inet_aton("10.0.0.2"),
        dst=socket.inet_aton("10.0.0.1"),
        p=dpkt.ip.IP_PROTO_UDP,
        data=dpkt.udp.UDP(sport=5038, dport=5038, data=b"not tcp"),
    )
    arp = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_ARP, data=dpkt.arp.ARP())
    packets: list[Pkt | tuple[float, bytes]] = [
        *other.handshake(T0 - 1),
        other.data("rx", 0, b"HTTP/1.1 200 OK\r\n", T0 - 1),
        (T0 - 1, _ethernet(bytes(udp))),
        (T0 - 1, bytes(arp)),
        *conn.handshake(T0),
        conn.data("rx", 0, b"hello", T0 + 1),
    ]
    [session] = read_trace(write_capture(tmp_path / "mixed.pcap", packets)).sessions
    assert session.data("rx") == b"hello"


def test_the_port_is_a_parameter(tmp_path: Path) -> None:
    agi = Conn(client=("10.0.0.1", 51000), server=("10.0.0.9", 4573))
    packets = [*agi.handshake(T0), agi.data("rx", 0, b"200 result=1\n", T0 + 1)]
    path = write_capture(tmp_path / "agi.pcap", packets)
    assert read_trace(path).sessions == ()
    [session] = read_trace(path, port=4573).sessions
    assert session.peer == "10.0.0.1:51000 -> 10.0.0.9:4573"
    assert session.data("rx") == b"200 result=1\n"


def test_two_sessions_in_one_file_in_order_of_their_first_packet(tmp_path: Path) -> None:
    a = Conn(client=("10.0.0.2", 40000))
    b = Conn(client=("10.0.0.3", 40001), client_isn=123, server_isn=456)
    reuse = Conn(client=("10.0.0.2", 40000), client_isn=999_999, server_isn=5)
    packets = [
        *a.handshake(T0),
        *b.handshake(T0 + 1),
        b.data("rx", 0, b"B banner\r\n", T0 + 1.5),
        a.data("rx", 0, b"A banner\r\n", T0 + 2),
        b.data("tx", 0, b"B action\r\n\r\n", T0 + 3),
        a.data("rx", 10, b"A more\r\n", T0 + 4),
        a.fin("tx", 0, T0 + 5),
        a.fin("rx", 18, T0 + 5),
        *reuse.handshake(T0 + 6),  # same endpoints as a, new ISN: a new session
        reuse.data("rx", 0, b"again\r\n", T0 + 7),
    ]
    trace = read_trace(write_capture(tmp_path / "two.pcap", packets))
    assert [(s.index, s.peer, s.start_time) for s in trace.sessions] == [
        (0, "10.0.0.2:40000 -> 10.0.0.1:5038", T0),
        (1, "10.0.0.3:40001 -> 10.0.0.1:5038", T0 + 1),
        (2, "10.0.0.2:40000 -> 10.0.0.1:5038", T0 + 6),
    ]
    first, second, third = trace.sessions
    assert first.data("rx") == b"A banner\r\nA more\r\n" and first.data("tx") == b""
    assert [r.t for r in first.records] == [2.0, 4.0]
    assert second.data("rx") == b"B banner\r\n" and second.data("tx") == b"B action\r\n\r\n"
    assert [r.t for r in second.records] == [0.5, 2.0]
    assert third.data("rx") == b"again\r\n"


def test_ipv6(tmp_path: Path) -> None:
    conn = Conn(client=("2001:db8::2", 40000), server=("2001:db8::1", 5038))
    packets = conn.handshake(T0) + [
        conn.data("rx", o, d, T0 + 1 + i) for i, (o, d) in enumerate(chunks(AMI_STREAM, 700))
    ]
    [session] = read_trace(write_capture(tmp_path / "v6.pcap", packets)).sessions
    assert session.peer == "[2001:db8::2]:40000 -> [2001:db8::1]:5038"
    assert session.data("rx") == AMI_STREAM


@pytest.mark.parametrize("link", sorted(LINKS))
@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_link_types_and_file_formats(tmp_path: Path, link: str, ng: bool, v6: bool) -> None:
    ends = (("::1", 45664), ("::1", 5038)) if v6 else (("127.0.0.1", 45664), ("127.0.0.1", 5038))
    conn = Conn(*ends)
    packets = [
        *conn.handshake(T0),
        conn.data("tx", 0, b"Action: Login\r\n\r\n", T0 + 0.25),
        *(conn.data("rx", o, d, T0 + 1 + i) for i, (o, d) in enumerate(chunks(AMI_STREAM, 1000))),
    ]
    path = write_capture(tmp_path / ("cap.pcapng" if ng else "cap.pcap"), packets, link=link, ng=ng)
    [session] = read_trace(path).sessions
    assert session.data("rx") == AMI_STREAM
    assert session.data("tx") == b"Action: Login\r\n\r\n"
    assert session.records[0].t == 0.25 and session.start_time == T0


def test_nanosecond_pcap_keeps_exact_relative_times(tmp_path: Path) -> None:
    conn = Conn()  # a small epoch, so that the float given to the writer keeps nanoseconds
    packets = [*conn.handshake(1000.0), conn.data("rx", 0, b"x", 1000.000000123)]
    [session] = read_trace(write_capture(tmp_path / "ns.pcap", packets, nano=True)).sessions
    assert session.records[0].t == pytest.approx(1.23e-7, abs=1e-12)


def test_unsupported_link_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wifi.pcap"
    with path.open("wb") as file:
        dpkt.pcap.Writer(file, linktype=dpkt.pcap.DLT_IEEE802_11).writepkt(b"\x00" * 30, ts=T0)
    with pytest.raises(TraceError, match=r"wifi\.pcap: link type 105 is not supported"):
        read_trace(path)


def test_a_frame_cut_by_the_snap_length_is_an_error(tmp_path: Path) -> None:
    conn = Conn()
    frame = _ethernet(_ip_bytes(conn.data("rx", 0, b"Event: Cut\r\n\r\n", T0 + 1)))
    packets: list[Pkt | tuple[float, bytes]] = [*conn.handshake(T0), (T0 + 1, frame[:-4])]
    with pytest.raises(TraceError, match=r"packet 4: the capture kept 10 of the segment's 14"):
        read_trace(write_capture(tmp_path / "snap.pcap", packets))
    packets[-1] = (T0 + 1, frame[: 14 + 20 + 10])  # the TCP header itself cut
    with pytest.raises(TraceError, match=r"packet 4: the capture cut the TCP header short"):
        read_trace(write_capture(tmp_path / "snap2.pcap", packets))


def test_an_ip_fragment_of_our_segment_is_an_error(tmp_path: Path) -> None:
    conn = Conn()
    ip = dpkt.ip.IP(_ip_bytes(conn.data("rx", 0, b"Event: Frag\r\n\r\n", T0 + 1)))
    ip.mf = 1
    ip.sum = 0
    packets: list[Pkt | tuple[float, bytes]] = [*conn.handshake(T0), (T0 + 1, _ethernet(bytes(ip)))]
    with pytest.raises(TraceError, match=r"packet 4: an IP fragment of a TCP segment"):
        read_trace(write_capture(tmp_path / "frag.pcap", packets))


# -- captures: damaged files ---------------------------------------------------------------
def _record_ends(tmp_path: Path, packets: list[Pkt], *, ng: bool) -> list[int]:
    """The file size after each packet: the only places a file may end."""
    sizes = []
    for n in range(len(packets) + 1):
        sizes.append(write_capture(tmp_path / f"p{n}", packets[:n], ng=ng).stat().st_size)
    return sizes


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
def test_a_truncated_capture_is_an_error_wherever_it_is_cut(tmp_path: Path, ng: bool) -> None:
    conn = Conn()
    packets = [*conn.handshake(T0), conn.data("rx", 0, b"Asterisk Call Manager/11.0.0\r\n", T0)]
    ends = _record_ends(tmp_path, packets, ng=ng)
    whole = (tmp_path / f"p{len(packets)}").read_bytes()
    cut = tmp_path / ("cut.pcapng" if ng else "cut.pcap")
    for size in range(len(whole)):
        cut.write_bytes(whole[:size])
        if size in ends:
            read_trace(cut)  # ends between two records: a shorter, valid capture
            continue
        with pytest.raises(TraceError) as caught:
            read_trace(cut)
        message = str(caught.value)
        assert message.startswith(f"{cut}: ")
        if size > ends[0]:
            packet = next(i for i, end in enumerate(ends) if end > size)
            before = f"after packet {packet - 1}" if packet > 1 else "before the first packet"
            assert message in (
                f"{cut}: packet {packet}: the file ends in the middle of this record"
                " (the capture is truncated)",
                # pcapng cut inside a block's first 8 bytes: dpkt stops before the block
                f"{cut}: {before}: the file ends in the middle of a record"
                " (the capture is truncated)",
            )


def test_a_corrupt_pcapng_block_is_an_error(tmp_path: Path) -> None:
    conn = Conn()
    packets = conn.handshake(T0)
    path = write_capture(tmp_path / "bad.pcapng", packets, ng=True)
    ends = _record_ends(tmp_path, packets, ng=True)
    content = bytearray(path.read_bytes())
    content[ends[1] + 4 : ends[1] + 8] = struct.pack("<I", 4)  # packet 2's length: too small
    path.write_bytes(bytes(content))
    with pytest.raises(TraceError, match=r"bad\.pcapng: packet 2: "):
        read_trace(path)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_damaged_captures_read_or_raise_trace_error(
    tmp_path: Path, ng: bool, damage: list[tuple[int, int]]
) -> None:
    conn = Conn()
    packets = [
        *conn.handshake(T0),
        *(conn.data("rx", o, d, T0 + 1) for o, d in chunks(AMI_STREAM, 600)),
    ]
    path = write_capture(tmp_path / "damaged", packets, ng=ng)
    content = bytearray(path.read_bytes())
    for where, value in damage:
        content[where % len(content)] = value
    path.write_bytes(bytes(content))
    try:
        trace = read_trace(path)
    except TraceError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert isinstance(trace, Trace)


# -- the reassembly property ---------------------------------------------------------------
@st.composite
def shuffled_segments(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[int, int]], bool]:
    """(stream, ISN, segments as (start, end) in sending order, whether one was dropped)."""
    data = draw(st.binary(min_size=1, max_size=3000))
    isn = draw(st.integers(0, 2**32 - 1))
    cuts = draw(st.lists(st.integers(1, len(data) - 1), max_size=30)) if len(data) > 1 else []
    bounds = sorted({0, len(data), *cuts})
    segments = list(itertools.pairwise(bounds))
    for _ in range(draw(st.integers(0, 10))):  # retransmissions with their own boundaries
        start = draw(st.integers(0, len(data) - 1))
        segments.append((start, draw(st.integers(start + 1, len(data)))))
    order = draw(st.permutations(range(len(segments))))
    segments = [segments[i] for i in order]
    dropped = draw(st.booleans())
    if dropped:
        segments.pop(draw(st.integers(0, len(segments) - 1)))
    return data, isn, segments, dropped


@settings(max_examples=200, deadline=None)
@given(shuffled_segments())
def test_any_splitting_reordering_or_duplication_reassembles(
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[bytes, int, list[tuple[int, int]], bool],
) -> None:
    data, isn, segments, dropped = case
    conn = Conn(server_isn=isn)
    packets = conn.handshake(T0)
    packets += [
        conn.data("rx", start, data[start:end], T0 + 1 + i / 1000)
        for i, (start, end) in enumerate(segments)
    ]
    packets.append(conn.fin("rx", len(data), T0 + 10))  # so that a hole at the end shows
    path = write_capture(tmp_path_factory.mktemp("prop") / "p.pcap", packets)
    covered = bytearray(len(data))
    for start, end in segments:
        covered[start:end] = b"\x01" * (end - start)
    try:
        [session] = read_trace(path).sessions
    except TraceError as exc:
        assert dropped and not all(covered), exc
        assert "gap in the TCP stream" in str(exc)
        event("a hole: TraceError")
    else:
        assert all(covered)
        event("reassembled" + (" although a segment was dropped" if dropped else ""))
        assert session.data("rx") == data
        times = [r.t for r in session.records]
        assert times == sorted(times)


@settings(max_examples=200, deadline=None)
@given(shuffled_segments())
def test_a_stream_joined_mid_stream_reassembles_from_its_first_segment(
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[bytes, int, list[tuple[int, int]], bool],
) -> None:
    data, isn, segments, _ = case
    conn = Conn(server_isn=isn)  # no handshake: the first segment sent is the origin
    packets = [
        conn.data("rx", start, data[start:end], T0 + i / 1000)
        for i, (start, end) in enumerate(segments)
    ]
    packets.append(conn.fin("rx", len(data), T0 + 10))
    path = write_capture(tmp_path_factory.mktemp("mid") / "p.pcap", packets)
    if not segments:
        assert read_trace(path).sessions == ()  # a bare FIN: ignored
        return
    origin = segments[0][0]
    covered = bytearray(len(data))
    for start, end in segments:
        covered[start:end] = b"\x01" * (end - start)
    try:
        [session] = read_trace(path).sessions
    except TraceError as exc:
        assert not all(covered[origin:]), exc
        assert "gap in the TCP stream" in str(exc)
        event("a hole after the origin: TraceError")
    else:
        assert all(covered[origin:])
        event("joined at 0" if origin == 0 else "joined after 0")
        assert session.mid_stream
        assert session.data("rx") == data[origin:]


def test_a_random_mix_of_everything(tmp_path: Path) -> None:
    """Three interleaved connections, both directions, reordering, and duplicates."""
    rng = random.Random(5038)
    conns = [
        Conn(
            client=("10.0.0.2", 40000 + i),
            client_isn=rng.randrange(2**32),
            server_isn=rng.randrange(2**32),
        )
        for i in range(3)
    ]
    streams = {
        (i, d): rng.randbytes(rng.randrange(1, 5000)) for i in range(3) for d in ("rx", "tx")
    }
    packets: list[Pkt] = []
    for i, conn in enumerate(conns):
        packets += conn.handshake(T0 + i)
    pieces = []
    for (i, direction), data in streams.items():
        for offset, piece in chunks(data, rng.randrange(50, 700)):
            pieces.append((i, direction, offset, piece))
    rng.shuffle(pieces)
    pieces += rng.sample(pieces, 10)
    for n, (i, direction, offset, piece) in enumerate(pieces):
        packets.append(conns[i].data(direction, offset, piece, T0 + 5 + n / 100))
    trace = read_trace(write_capture(tmp_path / "mix.pcapng", packets, ng=True))
    assert len(trace.sessions) == 3
    for i, session in enumerate(trace.sessions):
        assert session.start_time == T0 + i
        assert session.data("rx") == streams[(i, "rx")]
        assert session.data("tx") == streams[(i, "tx")]


# -- the real capture, as if tcpdump had been started later --------------------------------
@pytest.mark.parametrize(
    ("drop", "trim", "rx_lost", "tx_lost"),
    [
        (3, 0, 0, 0),  # the handshake only: every byte is there, but that cannot be known
        (13, 0, 608, 318),  # up to the Originate's response: from the first Newchannel on
        (13, 40, 648, 318),  # and the Newchannel's first 40 bytes: the tail of a message
    ],
)
def test_the_real_capture_cut_at_its_start_reads_as_the_tail_of_each_stream(
    tmp_path: Path, drop: int, trim: int, rx_lost: int, tx_lost: int
) -> None:
    source = TRACES / "inbound-answered.pcapng"
    [whole] = read_trace(source).sessions
    [tail] = read_trace(cut_capture(source, tmp_path / "cut.pcapng", drop, trim=trim)).sessions
    assert tail.mid_stream and not whole.mid_stream
    assert tail.data("rx") == whole.data("rx")[rx_lost:]
    assert tail.data("tx") == whole.data("tx")[tx_lost:]
    # Each record is the packet's it was in the whole capture, at the same absolute time (to
    # the microsecond the copy's timestamps are written with).
    kept = whole.records[-len(tail.records) :]
    assert [(r.direction, r.data) for r in tail.records[1:]] == [
        (r.direction, r.data) for r in kept[1:]
    ]
    assert tail.records[0].data == kept[0].data[trim:]
    assert whole.start_time is not None and tail.start_time is not None
    assert [tail.start_time + r.t for r in tail.records] == pytest.approx(
        [whole.start_time + r.t for r in kept], abs=2e-6
    )
