"""Trace reading: the real fixtures, and JSON Lines (reader and writer).

Real fixtures (the Asterisk 22 traces and the real pcapng) must read and their bytes must
frame as whole AMI messages. JSON Lines: round trips, and every kind of bad line gives a
``TraceError`` naming the file and the line; damaged files raise ``TraceError`` only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctilink.errors import TraceError
from ctilink.traces import Direction, JsonlWriter, TraceRecord, read_trace, write_jsonl
from tests.captures import (
    T0,
    Conn,
    frame_ami,
    write_capture,
)
from tests.conftest import AMI_TRACES, TRACES


# -- real traces ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", [p for p in AMI_TRACES if p.suffix == ".jsonl"], ids=lambda p: p.name
)
def test_real_jsonl_traces_read_whole(path: Path) -> None:
    trace = read_trace(path)
    assert trace.path == str(path)
    [session] = trace.sessions
    assert (session.index, session.start_time, session.peer) == (0, None, None)
    assert session.records[0] == TraceRecord(
        session.records[0].t, "rx", b"Asterisk Call Manager/11.0.0\r\n", "line 1"
    )
    times = [r.t for r in session.records]
    assert times == sorted(times) and times[0] >= 0
    # Every rx record is one whole message (or the banner): nothing split, nothing left.
    rx = [r for r in session.records if r.direction == "rx"]
    assert frame_ami(session.data("rx"), banner=True) == (len(rx), 0)
    tx = [r for r in session.records if r.direction == "tx"]
    assert frame_ami(session.data("tx"), banner=False) == (len(tx), 0)


def test_real_pcapng_reads_as_one_ami_session() -> None:
    trace = read_trace(TRACES / "inbound-answered.pcapng")
    [session] = trace.sessions
    assert session.index == 0
    assert session.peer == "127.0.0.1:57132 -> 127.0.0.1:5038"
    assert session.start_time == pytest.approx(1795355866.793664, abs=1e-6)
    rx, tx = session.data("rx"), session.data("tx")
    assert rx.startswith(b"Asterisk Call Manager/")
    assert tx.startswith(b"Action: Login")
    messages, pending = frame_ami(rx, banner=True)
    assert messages > 50 and pending == 0
    assert frame_ami(tx, banner=False)[1] == 0
    times = [r.t for r in session.records]
    assert times == sorted(times) and 0 < times[0] < 0.01
    assert all(r.position.startswith("packet ") for r in session.records)


def test_real_pcapng_on_another_port_has_no_sessions() -> None:
    assert read_trace(TRACES / "inbound-answered.pcapng", port=4573).sessions == ()


# -- JSON Lines ----------------------------------------------------------------------------
def test_round_trip_of_a_real_trace_is_byte_identical(tmp_path: Path) -> None:
    original = read_trace(TRACES / "inbound-answered.jsonl").sessions[0].records
    write_jsonl(tmp_path / "copy.jsonl", original)
    copy = read_trace(tmp_path / "copy.jsonl").sessions[0].records
    assert [(r.t, r.direction, r.data) for r in copy] == [
        (r.t, r.direction, r.data) for r in original
    ]
    assert (tmp_path / "copy.jsonl").read_bytes() == (
        TRACES / "inbound-answered.jsonl"
    ).read_bytes()


_TEXT = st.text(st.characters(codec="utf-8"), max_size=200)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.floats(0, 1e6), st.sampled_from(["rx", "tx"]), _TEXT), max_size=20))
def test_round_trip_of_any_text(items: list[tuple[float, Direction, str]]) -> None:
    items.sort(key=lambda item: item[0])
    records = [TraceRecord(t, d, s.encode(), "x") for t, d, s in items]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.jsonl"
        write_jsonl(path, records)
        read = read_trace(path).sessions[0].records
    assert [(r.t, r.direction, r.data) for r in read] == [
        (r.t, r.direction, r.data) for r in records
    ]
    assert [r.position for r in read] == [f"line {i}" for i in range(1, len(records) + 1)]


def test_writer_refuses_what_the_format_cannot_carry(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    with JsonlWriter(path) as writer:
        writer.write(TraceRecord(1.0, "rx", b"ok\r\n", "a"))
        # A byte that is not UTF-8 (a Latin-1 caller name) is kept, as a \udcXX escape.
        writer.write(TraceRecord(1.0, "rx", b"Caller: M\xfcller\r\n", "b"))
        with pytest.raises(ValueError, match="backwards"):
            writer.write(TraceRecord(0.5, "tx", b"x", "c"))
        with pytest.raises(ValueError, match="finite"):
            writer.write(TraceRecord(float("nan"), "tx", b"x", "d"))
        writer.write(TraceRecord(1.0, "tx", b"\xc3\xa9", "e"))
    records = read_trace(path).sessions[0].records
    assert [(r.t, r.direction, r.data) for r in records] == [
        (1.0, "rx", b"ok\r\n"),
        (1.0, "rx", b"Caller: M\xfcller\r\n"),
        (1.0, "tx", "é".encode()),
    ]
    assert b"\\udcfc" in path.read_bytes()


GOOD = '{"t": 0.5, "dir": "rx", "data": "Event: X\\r\\n\\r\\n"}\n'


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('{"t": 1, "dir": "rx" "data": "x"}\n', 2, "not valid JSON (Expecting ',' delimiter"),
        ("[1, 2]\n", 2, "not a JSON object (got an array)"),
        ('"text"\n', 2, "not a JSON object (got a string)"),
        ('{"t": 1, "dir": "rx"}\n', 2, "missing key 'data'"),
        ('{"dir": "rx", "data": ""}\n', 2, "missing key 't'"),
        ('{"t": "1", "dir": "rx", "data": ""}\n', 2, "'t' must be a number (got a string)"),
        ('{"t": true, "dir": "rx", "data": ""}\n', 2, "'t' must be a number (got a boolean)"),
        ('{"t": 1, "dir": "in", "data": ""}\n', 2, '\'dir\' must be "rx" or "tx"'),
        ('{"t": 1, "dir": null, "data": ""}\n', 2, "'dir' must be"),
        ('{"t": 1, "dir": "rx", "data": 5}\n', 2, "'data' must be a string (got a number)"),
        ('{"t": 1, "dir": "rx", "data": ["x"]}\n', 2, "'data' must be a string (got an array)"),
        ('{"t": 0.25, "dir": "rx", "data": ""}\n', 2, "'t' goes backwards (0.25 after 0.5)"),
        ('{"t": -1, "dir": "rx", "data": ""}\n', 2, "'t' is negative"),
        ('{"t": NaN, "dir": "rx", "data": ""}\n', 2, "NaN is not a JSON number"),
        ('{"t": 1e400, "dir": "rx", "data": ""}\n', 2, "'t' is out of range"),
        ('{"t": 1, "dir": "rx", "data": "\\ud800"}\n', 2, "'data' cannot be encoded as UTF-8"),
        ('{"t": 1, "dir": "rx", "data": "a", "data": "b"}\n', 2, "duplicate key 'data'"),
        ("\n" + GOOD, 2, "blank line between records"),
        ("  \r\n" + GOOD, 2, "blank line between records"),
        ('{"t": 1, "dir": "rx", "da', 2, "truncated record (not valid JSON"),
        ('{"t": 1, "dir": "rx", "data": "x"}\n{"t": 2', 3, "truncated record"),
        ('{"t": 1, "dir": "rx", "data": "x"}\n{"t"\n', 3, "not valid JSON (Expecting ':'"),
        ("[" * 100_000 + "\n", 2, "not valid JSON"),
    ],
)
def test_bad_jsonl_names_file_and_line(
    tmp_path: Path, content: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD + content, encoding="utf-8")
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert str(caught.value).startswith(f"{path}: line {line}: ")
    assert message in str(caught.value)


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b'{"t": 1, "dir": "rx", "data": "M\xfcller"}\n')
    with pytest.raises(TraceError, match=r"latin1\.jsonl: line 2: not valid UTF-8"):
        read_trace(path)


@pytest.mark.parametrize(
    ("content", "count"),
    [
        ("", 0),
        (GOOD, 1),
        (GOOD.rstrip("\n"), 1),  # a whole last record without its newline is whole
        (GOOD + "\n\n", 1),  # blank lines after the last record carry nothing
        (GOOD.replace("}", ', "seq": 7, "note": {"x": [1]}}'), 1),  # unknown keys ignored
        (GOOD.replace("\n", "\r\n") * 2, 2),
        (GOOD.replace("0.5", "3"), 1),
    ],
)
def test_good_jsonl_variants(tmp_path: Path, content: str, count: int) -> None:
    path = tmp_path / "good.jsonl"
    path.write_text(content)
    [session] = read_trace(path).sessions
    assert len(session.records) == count
    assert all(r.data == b"Event: X\r\n\r\n" for r in session.records)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.integers(0, 400))
def test_damaged_jsonl_reads_or_raises_trace_error(tmp_path: Path, junk: bytes, where: int) -> None:
    content = (TRACES / "agent-login.jsonl").read_bytes()[:2000]
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(content[:where] + junk + content[where:])
    try:
        read_trace(path)
    except TraceError as exc:
        assert str(exc).startswith(f"{path}: ")


def test_unreadable_and_misnamed_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"missing\.jsonl: cannot read the file"):
        read_trace(tmp_path / "missing.jsonl")
    (tmp_path / "text.pcap").write_text(GOOD)
    with pytest.raises(TraceError, match=r"text\.pcap: not a pcap or pcapng capture"):
        read_trace(tmp_path / "text.pcap")
    # The magic decides, not the name.
    conn = Conn()
    packets = [*conn.handshake(T0), conn.data("rx", 0, b"hello", T0 + 1)]
    write_capture(tmp_path / "capture.jsonl", packets)
    assert read_trace(tmp_path / "capture.jsonl").sessions[0].data("rx") == b"hello"
