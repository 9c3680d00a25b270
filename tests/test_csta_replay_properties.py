"""The CSTA inbound path read three ways (whole, byte by byte, with trailing data) and fed
arbitrary bytes: a trace is CSTA or a ``TraceError`` naming where; a live link takes any
bytes without raising (at worst the link is reset)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctilink.adapters.csta_replay import CstaReplayAdapter, load_csta_replay
from ctilink.adapters.csta_trace import check_csta, read_csta_trace, write_csta_jsonl
from ctilink.errors import TraceError
from ctilink.model import events as ev
from ctilink.traces import Trace, TraceRecord, TraceSession
from tests.conftest import FIXTURES
from tests.cstasim import ClockRig

FIXTURE = FIXTURES / "csta" / "inbound-answered.jsonl"
RECORDS = read_csta_trace(FIXTURE, port=0).sessions[0].records


def played(records: list[TraceRecord]) -> list[tuple[str, str | None, float]]:
    events: list[ev.Event] = []
    trace = Trace("t", (TraceSession(0, tuple(records), None, None),))
    check_csta(trace, xml=False)
    CstaReplayAdapter("r", [trace], events.append, start_time=0.0).run_to_end()
    return [(e.TYPE, getattr(e, "device", None), e.time) for e in events]


def test_whole_byte_by_byte_and_in_one_piece_replay_alike() -> None:
    whole = played(list(RECORDS))
    bytewise = [
        TraceRecord(r.t, r.direction, r.data[i : i + 1], r.position)
        for r in RECORDS
        for i in range(len(r.data))
    ]
    assert played(bytewise) == whole
    rx = b"".join(r.data for r in RECORDS if r.direction == "rx")
    last = max(r.t for r in RECORDS)
    one = played([TraceRecord(last, "rx", rx, "all")])
    assert [(kind, device) for kind, device, _ in one] == [(k, d) for k, d, _ in whole]


def test_trailing_bytes_of_a_frame_never_completed_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "trailing.jsonl"
    write_csta_jsonl(path, [*RECORDS, TraceRecord(RECORDS[-1].t, "rx", b"\x00\x09\xa1\x07", "x")])
    with pytest.raises(TraceError, match="ends inside a frame"):
        load_csta_replay([path], port=0)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_switch_bytes_are_csta_or_a_trace_error(data: bytes) -> None:
    records = [*RECORDS[:2], TraceRecord(1.0, "rx", data, "fuzz")]
    trace = Trace("fuzz", (TraceSession(0, tuple(records), None, None),))
    try:
        check_csta(trace, xml=False)
    except TraceError as exc:
        assert "fuzz: " in str(exc)
        return
    CstaReplayAdapter("r", [trace], lambda _e: None, start_time=0.0).run_to_end()


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=300))
def test_arbitrary_bytes_on_a_live_link_never_raise(
    data: bytes, logged_errors: list[logging.LogRecord]
) -> None:
    rig = ClockRig()
    rig.start()
    rig.simulator.send_raw(data)
    rig.pump()  # raises if anything did
    rig.advance(2)
    assert rig.adapter.up or rig.count("link_down") >= 1
    assert all("broken CSTA stream" in r.getMessage() for r in logged_errors)
