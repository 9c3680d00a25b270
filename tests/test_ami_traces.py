"""Each real Asterisk 22 trace replays to what the switch really did, event by event.

The expected lists are read off the traces themselves (see the AMI text in
tests/fixtures/pbx-traces/): who called, where the call queued, which agent's device
rang and answered, who hung up, and what the queue members did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AMI_TRACES, TRACES
from tests.replaying import replay_files, replay_fixture

CALL_KEYS = (
    "device",
    "calling_number",
    "called_number",
    "connection_state",
    "queue",
    "agent",
    "cause",
)
AGENT_KEYS = ("agent", "agent_name", "queue", "state", "reason")


def summary(wire: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(type, key fields...) per event, in order; link events kept as (type,)."""
    out: list[tuple[Any, ...]] = []
    for event in wire:
        kind = event["type"]
        if "call_id" in event:
            out.append((kind, *(event.get(key) for key in CALL_KEYS)))
        elif "agent" in event:
            out.append((kind, *(event.get(key) for key in AGENT_KEYS)))
        else:
            out.append((kind,))
    return out


def test_inbound_answered() -> None:
    wire = replay_fixture("inbound-answered.jsonl").wire
    caller, dnis = "5551234567", "800"
    assert summary(wire) == [
        ("link_up",),
        # The customer's call arrives for 800 and waits in queue support ...
        ("delivered", "800", caller, dnis, "alerting", None, None, None),
        ("queued", "support", caller, dnis, "queued", "support", None, None),
        # ... Agent Alice's device 6001 rings, she answers (her device goes in use) ...
        ("delivered", "6001", caller, dnis, "alerting", "support", "6001", None),
        ("established", "6001", caller, dnis, "connected", "support", "6001", None),
        ("agent_busy", "6001", "Agent Alice", None, "busy", None),
        # ... she hangs up after ~4.5 s, then the customer's side goes, then the call.
        ("agent_ready", "6001", "Agent Alice", None, "ready", None),
        ("connection_cleared", "6001", caller, dnis, "null", "support", "6001", "normal_clearing"),
        ("connection_cleared", caller, caller, dnis, "null", "support", "6001", "normal_clearing"),
        ("call_cleared", None, caller, dnis, None, "support", "6001", "normal_clearing"),
        ("link_down",),
    ]
    call_ids = {e["call_id"] for e in wire if "call_id" in e}
    assert call_ids == {"call-1"}  # one customer call is one call (four Local channels)
    assert {e["switch_call_id"] for e in wire if "call_id" in e} == {"1795355631.0"}
    # The inherited channel variable travels with the call from its first event.
    assert all(e["data"] == {"CUSTOMER_ACCOUNT": "ACME-001"} for e in wire if "call_id" in e)
    queued = next(e for e in wire if e["type"] == "queued")
    assert (queued["position"], queued["queue_count"]) == (1, 1)
    assert queued["last_redirection_device"] == "800"
    times = [e["time"] for e in wire]
    assert times == sorted(times)
    assert [e["seq"] for e in wire] == list(range(1, len(wire) + 1))


def test_inbound_answered_leaves_nothing_live() -> None:
    recorder = replay_fixture("inbound-answered.jsonl")
    snapshot = recorder.hub.tracker.snapshot(0)
    assert snapshot["calls"] == []
    assert [(q["queue"], q["calls_waiting"]) for q in snapshot["queues"]] == [("support", 0)]
    assert [(a["agent"], a["state"]) for a in snapshot["agents"]] == [("6001", "ready")]


def test_inbound_abandoned() -> None:
    wire = replay_fixture("inbound-abandoned.jsonl").wire
    caller = "5559876543"
    assert summary(wire) == [
        ("link_up",),
        ("agent_not_ready", "6001", "Agent Alice", "support", "not_ready", "lunch"),
        ("agent_not_ready", "6002", "Agent Bob", "support", "not_ready", "lunch"),
        ("delivered", "800", caller, "800", "alerting", None, None, None),
        ("queued", "support", caller, "800", "queued", "support", None, None),
        # Nobody was ready: the caller hung up while waiting (QueueCallerAbandon).
        ("connection_cleared", caller, caller, "800", "null", "support", None, "abandoned"),
        ("call_cleared", None, caller, "800", None, "support", None, "abandoned"),
        ("agent_ready", "6001", "Agent Alice", "support", "ready", None),
        ("agent_ready", "6002", "Agent Bob", "support", "ready", None),
        ("link_down",),
    ]


def test_inbound_abandoned_state_while_waiting() -> None:
    """The tracker's view while the caller waits: queued, position 1, both agents at lunch."""
    recorder = replay_fixture("inbound-abandoned.jsonl")
    queued_seq = next(e.seq for e in recorder.events if e.TYPE == "queued")
    # Rebuild the tracker up to the queued event.
    from ctilink.state import StateTracker

    tracker = StateTracker()
    for event in recorder.events:
        if event.seq <= queued_seq:
            tracker.apply(event)
    now = recorder.events[queued_seq - 1].time + 2.5
    snapshot = tracker.snapshot(now)
    (queue,) = snapshot["queues"]
    assert queue["calls_waiting"] == 1
    (waiting,) = queue["waiting"]
    assert (waiting["position"], waiting["wait_seconds"]) == (1, 2.5)
    (call,) = snapshot["calls"]
    assert call["connections"] == [
        {"device": "5559876543", "state": "connected"},
        {"device": "support", "state": "queued"},
    ]
    assert {(a["agent"], a["state"], a["reason"]) for a in snapshot["agents"]} == {
        ("6001", "not_ready", "lunch"),
        ("6002", "not_ready", "lunch"),
    }


def test_agent_login() -> None:
    wire = replay_fixture("agent-login.jsonl").wire
    assert summary(wire) == [
        ("link_up",),
        ("agent_logged_on", "6004", "Agent Dave", "support", "ready", None),
        ("agent_not_ready", "6004", "Agent Dave", "support", "not_ready", "training"),
        ("agent_ready", "6004", "Agent Dave", "support", "ready", None),
        ("agent_logged_off", "6004", "Agent Dave", "support", "logged_off", None),
        ("link_down",),
    ]
    assert {e.get("device") for e in wire if "agent" in e} == {"6004"}


def test_click_to_dial() -> None:
    wire = replay_fixture("click-to-dial.jsonl").wire
    assert summary(wire) == [
        ("link_up",),
        # Asterisk rings agent 6001 first (Originate), ...
        ("service_initiated", "6001", "6001", None, "initiated", None, None, None),
        # ... 6001 answers and the call goes out to 5550001111.
        ("originated", "6001", "6001", "5550001111", "connected", None, None, None),
        ("agent_busy", "6001", "Agent Alice", None, "busy", None),
        ("connection_cleared", "6001", "6001", "5550001111", "null", None, None, "normal_clearing"),
        ("call_cleared", None, "6001", "5550001111", None, None, None, "normal_clearing"),
        ("agent_ready", "6001", "Agent Alice", None, "ready", None),
        ("link_down",),
    ]


def test_routed_call_into_sales() -> None:
    wire = replay_fixture("routed-fastagi.jsonl").wire
    caller = "5554446666"
    assert [s[:3] for s in summary(wire) if s[0] not in ("link_up", "link_down")] == [
        ("delivered", "803", caller),
        ("queued", "sales", caller),
        ("delivered", "6003", caller),
        ("established", "6003", caller),
        ("agent_busy", "6003", "Agent Carol"),
        ("agent_ready", "6003", "Agent Carol"),
        ("connection_cleared", "6003", caller),
        ("connection_cleared", caller, caller),
        ("call_cleared", None, caller),
    ]


def test_resync_trace_list_responses_do_not_disturb_the_call() -> None:
    wire = replay_fixture("resync.jsonl").wire
    types = [e["type"] for e in wire]
    assert types == [
        "link_up",
        "delivered",
        "queued",
        "delivered",
        "established",
        "agent_busy",
        "agent_ready",
        "connection_cleared",
        "connection_cleared",
        "call_cleared",
        "link_down",
    ]
    assert wire[3]["device"] == "6002" and wire[3]["agent"] == "6002"


def _without_identity(wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
    drop = {"seq", "time", "call_id", "switch_call_id", "detail"}
    return [{k: v for k, v in e.items() if k not in drop} for e in wire]


def test_pcapng_twin_gives_the_same_call() -> None:
    from_pcap = replay_files(TRACES / "inbound-answered.pcapng", start_time=None).wire
    from_jsonl = replay_fixture("inbound-answered.jsonl").wire
    assert _without_identity(from_pcap) == _without_identity(from_jsonl)
    # The capture's own clock dates the events (2026-11-22, 13:57 UTC).
    assert from_pcap[0]["time"].startswith("2026-11-22T13:57:46")


def test_several_traces_are_successive_sessions_of_one_switch() -> None:
    recorder = replay_files(
        TRACES / "agent-login.jsonl",
        TRACES / "inbound-answered.jsonl",
        TRACES / "inbound-answered.jsonl",
    )
    types = [e["type"] for e in recorder.wire]
    assert types.count("link_up") == types.count("link_down") == 3
    # Replaying the same capture twice gives two calls with two call ids.
    assert {e["call_id"] for e in recorder.wire if "call_id" in e} == {"call-1", "call-2"}
    times = [e.time for e in recorder.events]
    assert times == sorted(times)


@pytest.mark.parametrize("trace", AMI_TRACES, ids=lambda p: p.name)
def test_every_trace_replays_without_failures_or_leftovers(trace: Path) -> None:
    from ctilink.adapters.replay import ReplayAdapter, load_replay
    from ctilink.hub import Hub

    hub = Hub()
    adapter = ReplayAdapter("pbx", load_replay([trace]), hub.publish, start_time=0)
    adapter.run_to_end()
    book = adapter.normalizer.calls
    assert adapter.normalizer.failures == 0
    assert (book.by_uid, book.by_name, book.pairs, book.calls_by_linkedid, book.calls) == (
        {},
        {},
        {},
        {},
        {},
    )
    assert hub.tracker.calls == {}


def test_a_session_cut_mid_call_is_cleared_when_the_next_one_starts(tmp_path: Any) -> None:
    """A link that drops mid-call: the next session cannot know how the call ended."""
    lines = (TRACES / "inbound-answered.jsonl").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut-mid-call.jsonl"
    cut.write_text("".join(line for line in lines if float(line.split(",")[0][6:]) < 3.0))
    wire = replay_files(cut, TRACES / "agent-login.jsonl").wire
    second = [e["type"] for e in wire].index("link_up", 1)
    seen = [(e["type"], e.get("device"), e.get("cause")) for e in wire[second : second + 5]]
    assert seen[0] == ("link_up", None, None)
    assert sorted(seen[1:3]) == [
        ("connection_cleared", "5551234567", "resync"),
        ("connection_cleared", "6001", "resync"),
    ]
    assert seen[3:] == [("call_cleared", None, "resync"), ("link_resynced", None, None)]
    replayed = replay_files(cut, TRACES / "agent-login.jsonl")
    assert replayed.hub.tracker.calls == {}
