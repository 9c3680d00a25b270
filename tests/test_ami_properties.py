"""Property test of the normalizer: any jumble of plausible AMI events, in any order.

Hypothesis draws sequences of events over a handful of channels (phones, trunks, Local
halves) — new channels, state changes, dials and their ends, hold, queue and agent events,
transfers, hangups — with Linkedids that may or may not tie them together. Whatever the
order, the normalizer must not fail, every published event must match its schema, nothing
may be said about a call after its ``call_cleared``, and once every channel has hung up
nothing may be left: no live call in the tracker, no record in the call book.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._schemas import validate_wire
from tests.replaying import AmiFeed, chan

CHANNELS = [
    ("PJSIP/6001-00000001", "1700000000.1"),
    ("PJSIP/6002-00000002", "1700000000.2"),
    ("PJSIP/trunk-00000003", "1700000000.3"),
    ("Local/6003@agents-00000004;1", "1700000000.4"),
    ("Local/6003@agents-00000004;2", "1700000000.5"),
    ("PJSIP/7000-00000006", "1700000000.6"),
]
LINKEDIDS = ["1700000000.1", "1700000000.3", "1700000000.4"]
CALLERS = ["6001", "6002", "5551234567", "<unknown>"]

channel_index = st.integers(0, len(CHANNELS) - 1)


def block(index: int, linkedid: str, state: int, caller: str, prefix: str = "") -> Any:
    name, uid = CHANNELS[index]
    return chan(
        name, uid, linkedid=linkedid, state=state, caller=caller, exten="800", prefix=prefix
    )


@st.composite
def an_event(draw: st.DrawFn) -> tuple[str, list[Any], dict[str, str]]:
    kind = draw(st.sampled_from([
        "Newchannel", "Newstate", "DialBegin", "DialEnd", "Hold", "Unhold", "Hangup",
        "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentCalled",
        "AgentConnect", "BlindTransfer", "AttendedTransfer", "OriginateResponse",
    ]))  # fmt: skip
    one, two = draw(channel_index), draw(channel_index)
    linkedid = draw(st.sampled_from(LINKEDIDS))
    state = draw(st.sampled_from([0, 4, 5, 6]))
    caller = draw(st.sampled_from(CALLERS))
    a = block(one, linkedid, state, caller)
    b = block(two, linkedid, state, caller, "Dest")
    fields: dict[str, str] = {}
    blocks: list[Any] = [a]
    if kind in ("DialBegin", "AgentCalled", "AgentConnect", "DialEnd"):
        blocks = [b] if kind == "DialBegin" and draw(st.booleans()) else [a, b]
        fields = {
            "DialString": draw(st.sampled_from(["6001", "6003@agents/n", "trunk/5550001111"])),
            "DialStatus": draw(st.sampled_from(["ANSWER", "BUSY", "CANCEL", "NOANSWER"])),
            "Queue": "support", "Interface": "Local/6003@agents/n", "MemberName": "C",
        }  # fmt: skip
    elif kind.startswith("Queue"):
        fields = {"Queue": draw(st.sampled_from(["support", "sales"])), "Position": "1"}
    elif kind == "Hangup":
        fields = {"Cause": draw(st.sampled_from(["16", "17", "26"]))}
    elif kind == "BlindTransfer":
        blocks = [[("Result", "Success")], block(one, linkedid, 6, caller, "Transferer")]
        fields = {"Extension": "7000", "Context": "internal"}
    elif kind == "AttendedTransfer":
        blocks = [
            [("Result", "Success")],
            block(one, linkedid, 6, caller, "OrigTransferer"),
            block(two, draw(st.sampled_from(LINKEDIDS)), 6, caller, "SecondTransferer"),
        ]
        fields = {"DestType": draw(st.sampled_from(["Bridge", "Threeway"]))}
    elif kind == "OriginateResponse":
        name, uid = CHANNELS[one]
        blocks = []
        fields = {
            "Response": draw(st.sampled_from(["Success", "Failure"])),
            "Channel": name,
            "Uniqueid": uid,
            "Exten": "5550001111",
            "Reason": "5",
        }
    return kind, blocks, fields


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(an_event(), max_size=40))
def test_any_event_order_leaves_nothing_and_breaks_nothing(
    events: list[tuple[str, list[Any], dict[str, str]]],
) -> None:
    feed = AmiFeed()
    for kind, blocks, fields in events:
        feed.send(kind, *blocks, **fields)
    for name, uid in CHANNELS:  # everything hangs up in the end
        feed.send("Hangup", [("Channel", name), ("Uniqueid", uid)], Cause="16")
    assert feed.normalizer.failures == 0
    cleared: set[str] = set()
    for event in feed.wire:
        validate_wire(event)
        call_id = event.get("call_id")
        assert call_id not in cleared, f"{event['type']} after call_cleared of {call_id}"
        if event["type"] == "call_cleared":
            cleared.add(call_id)
    book = feed.normalizer.calls
    assert (book.by_uid, book.by_name, book.pairs, book.calls_by_linkedid, book.calls) == (
        {},
        {},
        {},
        {},
        {},
    )
    assert feed.recorder.hub.tracker.calls == {}
