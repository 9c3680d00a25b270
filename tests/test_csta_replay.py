"""CSTA traces: the hex JSON Lines form, pcap captures on the CSTA port, and their replay
through the live adapter's inbound code (``CstaReplayAdapter``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ctilink.adapters.csta_replay import CstaReplayAdapter, load_csta_replay
from ctilink.adapters.csta_trace import decode_frame, read_csta_trace, resync, write_csta_jsonl
from ctilink.csta import CstaMessage
from ctilink.errors import TraceError
from ctilink.model import events as ev
from ctilink.traces import TraceRecord, write_jsonl
from tests.captures import Conn, Pkt, write_capture
from tests.conftest import FIXTURES
from tests.cstasim import ClockRig

FIXTURE = FIXTURES / "csta" / "inbound-answered.jsonl"
PORT = 2555
ANSWERED = [
    ("delivered", "800"), ("queued", "support"), ("delivered", "6001"), ("established", "6001"),
    ("connection_cleared", "6001"), ("connection_cleared", "5551234567"), ("call_cleared", None),
]  # fmt: skip


def replay(paths: list[Path], start_time: float | None = 0.0) -> list[ev.Event]:
    events: list[ev.Event] = []
    traces = load_csta_replay(paths, port=PORT)
    CstaReplayAdapter("replay", traces, events.append, start_time=start_time).run_to_end()
    return events


def first_report(records: Any) -> float:
    """When the switch sent its first event report."""
    for record in records:
        message = decode_frame(record.data, xml=False) if record.direction == "rx" else None
        if isinstance(message, CstaMessage) and message.operation == "cSTAEventReport":
            return float(record.t)
    raise AssertionError("no event report")


def calls(events: list[ev.Event]) -> list[tuple[str, str | None]]:
    return [(e.TYPE, e.device) for e in events if isinstance(e, ev.CallEvent)]


def test_the_recorded_fixture_replays_to_the_inbound_answered_story() -> None:
    events = replay([FIXTURE])
    assert calls(events) == ANSWERED
    call_events = [e for e in events if isinstance(e, ev.CallEvent)]
    assert {e.call_id for e in call_events} == {call_events[0].call_id}
    assert call_events[0].data == {"CUSTOMER_ACCOUNT": "ACME-001"}
    assert (events[0].TYPE, events[-1].TYPE) == ("link_up", "link_down")
    assert [e.TYPE for e in events if isinstance(e, ev.AgentEvent)] == ["agent_busy", "agent_ready"]
    records = read_csta_trace(FIXTURE, port=PORT).sessions[0].records
    assert events[1].time == pytest.approx(first_report(records))  # the trace's clock


def recorded(rig: ClockRig, scenario: str, path: Path) -> list[ev.Event]:
    """Play ``scenario`` while the adapter's tap records it to ``path``; the live events."""
    seen: list[tuple[float, str, bytes]] = []
    rig.adapter.taps.append(lambda at, way, data: seen.append((at, way, data)))
    rig.start()
    mark = len(rig.events)
    rig.play(scenario)
    write_csta_jsonl(path, [TraceRecord(at, way, data, "tap") for at, way, data in seen])  # type: ignore[arg-type]
    return rig.events[mark:]


def test_a_live_run_and_its_recording_replay_to_the_same_events(tmp_path: Path) -> None:
    live = recorded(ClockRig(), "transferred", tmp_path / "transferred.jsonl")
    assert calls(replay([tmp_path / "transferred.jsonl"])) == calls(live)


def test_hex_lines_round_trip_and_bad_lines_are_named(tmp_path: Path) -> None:
    trace = read_csta_trace(FIXTURE, port=PORT)
    records = trace.sessions[0].records
    copy = tmp_path / "copy.jsonl"
    write_csta_jsonl(copy, records)
    assert [
        (r.t, r.direction, r.data) for r in read_csta_trace(copy, port=PORT).sessions[0].records
    ] == [(r.t, r.direction, r.data) for r in records]
    lines = FIXTURE.read_text().splitlines()
    for line, problem in (
        ('{"t": 1, "dir": "rx", "hex": "zz"}', "non-hexadecimal"),
        ('{"t": 1, "dir": "up", "hex": "00"}', '\'dir\' must be "rx" or "tx"'),
        ('{"t": 1, "dir": "rx"}', "missing key 'hex'"),
        ('{"t": 0.000001, "dir": "rx", "hex": "00"}', "'t' goes backwards"),
    ):
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join([*lines[:3], line, *lines[3:]]) + "\n")
        with pytest.raises(TraceError, match=rf"bad\.jsonl: line 4: .*{problem}"):
            read_csta_trace(bad, port=PORT)


def test_a_trace_that_is_not_csta_fails_before_any_event(tmp_path: Path) -> None:
    records = read_csta_trace(FIXTURE, port=PORT).sessions[0].records
    broken = [*records[:10], TraceRecord(records[10].t, "rx", b"\x00\x05hello", "x"), *records[11:]]
    path = tmp_path / "broken.jsonl"
    write_csta_jsonl(path, broken)
    with pytest.raises(TraceError, match=r"broken\.jsonl: line 11: not a valid CSTA stream"):
        load_csta_replay([path], port=PORT)
    truncated = tmp_path / "truncated.jsonl"
    write_csta_jsonl(
        truncated, [*records[:-1], TraceRecord(records[-1].t, "rx", b"\x00\x30\xa1", "x")]
    )
    with pytest.raises(TraceError, match="ends inside a frame"):
        load_csta_replay([truncated], port=PORT)


def test_the_data_form_that_ctilink_record_writes_is_read_too(tmp_path: Path) -> None:
    records = read_csta_trace(FIXTURE, port=PORT).sessions[0].records
    path = tmp_path / "recorded.jsonl"
    write_jsonl(path, records)  # bytes that are not UTF-8 as \udcXX escapes
    assert calls(replay([path])) == ANSWERED


def capture(path: Path, records: Any, *, handshake: bool = True, skip: int = 0) -> Path:
    conn = Conn(server=("10.0.0.1", PORT))
    offsets = {"rx": 0, "tx": 0}
    packets: list[Pkt] = conn.handshake(1_700_000_000.0) if handshake else []
    for record in records:
        data = record.data
        offset = offsets[record.direction]
        offsets[record.direction] += len(data)
        if skip and record.direction == "rx":
            data, offset, skip = data[skip:], offset + skip, 0
        packets.append(conn.data(record.direction, offset, data, 1_700_000_001.0 + record.t))
    return write_capture(path, packets)


def test_a_pcap_on_the_csta_port_replays_like_the_json_lines(tmp_path: Path) -> None:
    records = read_csta_trace(FIXTURE, port=PORT).sessions[0].records
    path = capture(tmp_path / "answered.pcap", records)
    events = replay([path], start_time=None)  # the capture's own clock
    assert calls(events) == ANSWERED
    assert events[1].time == pytest.approx(1_700_000_001.0 + first_report(records), abs=1e-5)


def test_a_capture_that_began_mid_frame_resyncs_on_the_next_whole_frame(tmp_path: Path) -> None:
    records = read_csta_trace(FIXTURE, port=PORT).sessions[0].records
    path = capture(tmp_path / "late.pcap", records[40:], handshake=False, skip=3)
    trace = read_csta_trace(path, port=PORT)
    assert trace.sessions[0].mid_stream
    assert calls(replay([path])) == ANSWERED
    assert resync(b"\x01\x02\x00\x03\xa1\x01\x00", xml=False) == 2
    assert resync(b"junk", xml=False) is None


def test_sessions_after_the_first_clear_what_the_previous_left_open(tmp_path: Path) -> None:
    records = read_csta_trace(FIXTURE, port=PORT).sessions[0].records
    half = tmp_path / "half.jsonl"
    write_csta_jsonl(half, records[:52])  # ends while the agent talks
    events = replay([half, FIXTURE])
    cleared = [e for e in events if isinstance(e, ev.CallCleared)]
    assert [c.cause for c in cleared] == ["resync", "normal_clearing"]
    assert [e.TYPE for e in events if isinstance(e, ev.LinkEvent)] == [
        "link_up", "link_down", "link_up", "link_resynced", "link_down"]  # fmt: skip


def test_a_replayed_route_request_is_reported_but_not_answered(tmp_path: Path) -> None:
    from ctilink.routing.static import StaticRouter

    path = tmp_path / "routed.jsonl"
    live = recorded(ClockRig(router=StaticRouter("sales", 5)), "route_request", path)
    replayed = calls(replay([path]))
    assert replayed == [item for item in calls(live) if item[0] != "route_selected"]
    assert ("route_request", "803") in replayed
