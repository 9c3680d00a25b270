"""Call-centre flows beyond the fixture traces: Local channels in the path, transfers in
both orientations, ring-all, connecting mid-call, agents leaving while the call goes on.

Each scenario is built as Asterisk 22 reports it (DialString without the technology, as
app_dial.c publishes it; losers of a parallel dial hung up with cause 26) and checks the
events and the tracker's state, including right after the interesting moment.
"""

from __future__ import annotations

from typing import Any

from tests.replaying import AmiFeed, chan

TRUNK = ("PJSIP/trunk-00000003", "1700000000.3")
P1 = ("PJSIP/6001-00000001", "1700000000.1")
P2 = ("PJSIP/6002-00000002", "1700000000.2")
T = TRUNK[1]


def cust(**overrides: Any) -> list[tuple[str, str]]:
    return chan(*TRUNK, **{"caller": "5551234567", "exten": "800", **overrides})


def summary(feed: AmiFeed, *keys: str) -> list[tuple[Any, ...]]:
    return [(e["type"], e.get("device"), *(e.get(k) for k in keys)) for e in feed.wire]


def connections(feed: AmiFeed) -> list[list[tuple[str, str]]]:
    snapshot = feed.recorder.hub.tracker.snapshot(0)
    return [[(c["device"], c["state"]) for c in call["connections"]] for call in snapshot["calls"]]


def book_is_empty(feed: AmiFeed) -> bool:
    book = feed.normalizer.calls
    return not (book.by_uid or book.by_name or book.pairs or book.calls_by_linkedid or book.calls)


def queued_to_local_member(feed: AmiFeed, member: str = "6001") -> tuple[tuple[str, str], ...]:
    """A trunk call queued in support, answered by Local/<member>@agents/n ringing PJSIP."""
    one = (f"Local/{member}@agents-00000009;1", "u1")
    two = (f"Local/{member}@agents-00000009;2", "u2")
    feed.send("Newchannel", cust(state=4))
    feed.send("Newstate", cust(state=6))
    feed.send("QueueCallerJoin", cust(), Queue="support", Position="1", Count="1")
    feed.send("Newchannel", chan(*one, linkedid=T, state=0, exten=member, context="agents"))
    feed.send("Newchannel", chan(*two, linkedid=T, state=4, exten=member, context="agents"))
    feed.send(
        "AgentCalled",
        cust(),
        chan(*one, linkedid=T, state=0, prefix="Dest"),
        Queue="support",
        MemberName="Alice",
        Interface=f"Local/{member}@agents/n",
    )
    feed.send(
        "DialBegin",
        cust(),
        chan(*one, linkedid=T, state=0, prefix="Dest"),
        DialString=f"{member}@agents/n",
    )
    feed.send("Newchannel", chan(*P1, linkedid=T, state=0))
    feed.send(
        "DialBegin",
        chan(*two, linkedid=T, state=4, exten=member),
        chan(*P1, linkedid=T, state=0, prefix="Dest"),
        DialString=member,
    )
    feed.send(
        "DialEnd",
        chan(*two, linkedid=T, exten=member),
        chan(*P1, linkedid=T, prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send("DialEnd", cust(), chan(*one, linkedid=T, prefix="Dest"), DialStatus="ANSWER")
    feed.send("QueueCallerLeave", cust(), Queue="support", Position="1", Count="0")
    feed.send(
        "AgentConnect",
        cust(),
        chan(*one, linkedid=T, prefix="Dest"),
        Queue="support",
        Interface=f"Local/{member}@agents/n",
    )
    return one, two


def test_local_member_transfers_blind_and_the_new_party_is_reported() -> None:
    feed = AmiFeed()
    one, two = queued_to_local_member(feed)
    # PJSIP/6001 shares its bridge with the Local ;2 half, which Asterisk names transferee.
    feed.send(
        "BlindTransfer",
        [("Result", "Success")],
        chan(*P1, linkedid=T, prefix="Transferer"),
        chan(*two, linkedid=T, exten="6001", prefix="Transferee"),
        IsExternal="No",
        Context="internal",
        Extension="6002",
    )
    feed.send("Hangup", chan(*P1, linkedid=T), Cause="16")
    feed.send("Newchannel", chan(*P2, linkedid=T, state=0))
    feed.send(
        "DialBegin",
        chan(*two, linkedid=T, exten="6002"),
        chan(*P2, linkedid=T, state=0, prefix="Dest"),
        DialString="6002",
    )
    feed.send(
        "DialEnd",
        chan(*two, linkedid=T, exten="6002"),
        chan(*P2, linkedid=T, prefix="Dest"),
        DialStatus="ANSWER",
    )
    assert summary(feed, "last_redirection_device")[-4:] == [
        ("established", "6001", None),
        ("transferred", "6001", None),
        ("delivered", "6002", "6001"),
        ("established", "6002", None),
    ]
    assert connections(feed) == [[("5551234567", "connected"), ("6002", "connected")]]
    for name, uid, extra in ((*P2, {}), (*two, {"exten": "6002"}), (*one, {})):
        feed.send("Hangup", chan(name, uid, linkedid=T, **extra), Cause="16")
    feed.send("Hangup", cust(), Cause="16")
    assert summary(feed, "cause")[-3:] == [
        ("connection_cleared", "6002", "normal_clearing"),
        ("connection_cleared", "5551234567", "normal_clearing"),
        ("call_cleared", None, "normal_clearing"),
    ]
    assert book_is_empty(feed)


def test_blind_transfer_into_a_queue_drops_the_old_agent() -> None:
    feed = AmiFeed()
    queued_to_local_member(feed)
    feed.send(
        "BlindTransfer",
        [("Result", "Success")],
        chan(*P1, linkedid=T, prefix="Transferer"),
        cust(prefix="Transferee"),
        IsExternal="No",
        Context="internal",
        Extension="801",
    )
    feed.send("QueueCallerJoin", cust(exten="801"), Queue="sales", Position="1", Count="1")
    queued = feed.wire[-1]
    assert (queued["type"], queued["queue"], queued.get("agent")) == ("queued", "sales", None)
    assert queued["last_redirection_device"] == "6001"


def test_agent_who_hangs_up_leaves_while_the_local_half_plays_a_survey() -> None:
    feed = AmiFeed()
    _one, two = queued_to_local_member(feed)
    feed.send("Hangup", chan(*P1, linkedid=T), Cause="16")
    feed.send(
        "Newexten",
        chan(*two, linkedid=T, exten="6001"),
        Extension="6001",
        Application="Playback",
        AppData="survey",
    )
    assert summary(feed, "agent", "cause")[-1] == (
        "connection_cleared",
        "6001",
        "6001",
        "normal_clearing",
    )
    assert connections(feed) == [[("5551234567", "connected")]]


def _attended(refer_on_consultation: bool) -> AmiFeed:
    feed = AmiFeed()
    feed.send("Newchannel", cust(state=4))
    feed.send("Newchannel", chan(*P1, linkedid=T, state=0))
    feed.send(
        "DialBegin", cust(state=4), chan(*P1, linkedid=T, state=0, prefix="Dest"), DialString="6001"
    )
    feed.send("DialEnd", cust(), chan(*P1, linkedid=T, prefix="Dest"), DialStatus="ANSWER")
    feed.send("Hold", chan(*P1, linkedid=T))
    consult, target = (
        ("PJSIP/6001-00000004", "1700000000.4"),
        ("PJSIP/7000-00000005", "1700000000.5"),
    )
    c2 = consult[1]
    feed.send("Newchannel", chan(*consult, state=4, caller="6001", exten="7000"))
    feed.send("Newchannel", chan(*target, linkedid=c2, state=0))
    feed.send(
        "DialBegin",
        chan(*consult, state=4, caller="6001", exten="7000"),
        chan(*target, linkedid=c2, state=0, prefix="Dest"),
        DialString="7000",
    )
    feed.send(
        "DialEnd",
        chan(*consult, caller="6001", exten="7000"),
        chan(*target, linkedid=c2, prefix="Dest"),
        DialStatus="ANSWER",
    )
    blocks = [
        chan(*P1, linkedid=T, prefix="{}Transferer"),
        chan(*consult, caller="6001", exten="7000", prefix="{}Transferer"),
    ]
    if refer_on_consultation:
        blocks.reverse()
    orig, second = (
        [(k.format("Orig"), v) for k, v in blocks[0]],
        [(k.format("Second"), v) for k, v in blocks[1]],
    )
    feed.send(
        "AttendedTransfer",
        [("Result", "Success")],
        orig,
        second,
        IsExternal="Yes",
        DestType="Bridge",
        DestBridgeUniqueid="bridge-1",
    )
    return feed


def test_attended_transfer_either_orientation_keeps_the_customer_call() -> None:
    for refer_on_consultation in (False, True):
        feed = _attended(refer_on_consultation)
        transferred = feed.wire[-1]
        assert transferred["type"] == "transferred"
        assert (transferred["call_id"], transferred["secondary_call_id"]) == ("call-1", "call-2")
        assert transferred["transferred_to"] == "7000"
        assert (transferred["calling_number"], transferred["called_number"]) == (
            "5551234567",
            "800",
        )
        # Right after the transfer the customer talks to 7000; 6001 is gone from the call.
        assert connections(feed) == [[("5551234567", "connected"), ("7000", "connected")]]


def test_a_local_channel_that_answers_before_the_queue_is_not_an_answer() -> None:
    feed = AmiFeed()
    one, two = ("Local/800@inbound-0000000a;1", "v1"), ("Local/800@inbound-0000000a;2", "v2")
    feed.send("Newchannel", cust(state=4, context="from-trunk"))
    feed.send("Newchannel", chan(*one, linkedid=T, state=0, exten="800", context="inbound"))
    feed.send("Newchannel", chan(*two, linkedid=T, state=4, exten="800", context="inbound"))
    feed.send(
        "DialBegin",
        cust(state=4),
        chan(*one, linkedid=T, state=0, prefix="Dest"),
        DialString="800@inbound/n",
    )
    feed.send("Newstate", chan(*two, linkedid=T, state=6, caller="5551234567", exten="800"))
    feed.send("DialEnd", cust(state=4), chan(*one, linkedid=T, prefix="Dest"), DialStatus="ANSWER")
    feed.send(
        "QueueCallerJoin",
        chan(*two, linkedid=T, caller="5551234567", exten="800"),
        Queue="support",
        Position="1",
        Count="1",
    )
    feed.send(
        "QueueCallerLeave",
        chan(*two, linkedid=T, caller="5551234567", exten="800"),
        Queue="support",
        Position="1",
        Count="0",
    )
    assert summary(feed, "last_redirection_device") == [
        ("delivered", "800", None),
        ("queued", "support", "800"),
        ("diverted", "support", None),  # the queue timed out: the call went on unanswered
    ]
    assert connections(feed) == [[("5551234567", "connected")]]


def test_a_call_sent_through_a_local_channel_reaches_the_phone() -> None:
    feed = AmiFeed()
    one, two = ("Local/800@inbound-0000000a;1", "v1"), ("Local/800@inbound-0000000a;2", "v2")
    feed.send("Newchannel", cust(state=4, context="from-trunk"))
    feed.send("Newchannel", chan(*one, linkedid=T, state=0, exten="800", context="inbound"))
    feed.send("Newchannel", chan(*two, linkedid=T, state=4, exten="800", context="inbound"))
    feed.send(
        "DialBegin",
        cust(state=4),
        chan(*one, linkedid=T, state=0, prefix="Dest"),
        DialString="800@inbound/n",
    )
    feed.send("Newchannel", chan(*P1, linkedid=T, state=0, caller="800"))
    feed.send(
        "DialBegin",
        chan(*two, linkedid=T, state=4, caller="5551234567", exten="800"),
        chan(*P1, linkedid=T, state=0, prefix="Dest"),
        DialString="6001",
    )
    feed.send(
        "DialEnd",
        chan(*two, linkedid=T, caller="5551234567", exten="800"),
        chan(*P1, linkedid=T, prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send("DialEnd", cust(state=4), chan(*one, linkedid=T, prefix="Dest"), DialStatus="ANSWER")
    assert summary(feed, "last_redirection_device") == [
        ("delivered", "800", None),
        ("delivered", "6001", "800"),
        ("established", "6001", None),
    ]


def test_ring_all_answered_call_ends_with_a_normal_cause() -> None:
    feed = AmiFeed()
    feed.send("Newchannel", cust(state=4))
    feed.send("QueueCallerJoin", cust(), Queue="sales", Position="1", Count="1")
    for name, uid in (P1, P2):
        feed.send("Newchannel", chan(name, uid, linkedid=T, state=0))
        feed.send(
            "AgentCalled",
            cust(),
            chan(name, uid, linkedid=T, state=0, prefix="Dest"),
            Queue="sales",
            MemberName="M",
            Interface=f"PJSIP/{name[6:10]}",
        )
    feed.send("DialEnd", cust(), chan(*P2, linkedid=T, prefix="Dest"), DialStatus="ANSWER")
    feed.send("DialEnd", cust(), chan(*P1, linkedid=T, state=5, prefix="Dest"), DialStatus="CANCEL")
    feed.send("Hangup", chan(*P1, linkedid=T, state=5), Cause="26")  # answered elsewhere
    feed.send("Hangup", chan(*P2, linkedid=T), Cause="16")
    feed.send("Hangup", cust(), Cause="16")
    assert summary(feed, "agent", "cause")[-4:] == [
        ("connection_cleared", "6001", "6001", "cancelled"),
        ("connection_cleared", "6002", "6002", "normal_clearing"),
        ("connection_cleared", "5551234567", "6002", "normal_clearing"),
        ("call_cleared", None, "6002", "normal_clearing"),
    ]


def test_connecting_mid_setup_reports_nothing_of_that_call() -> None:
    """ctilink connected after 6001's Newchannel: the call's start was not seen."""
    feed = AmiFeed()
    feed.send("Newchannel", chan(*P2, linkedid=P1[1], state=0, caller="6002"))
    feed.send(
        "DialBegin",
        chan(*P1, state=4, caller="6001", exten="6002"),
        chan(*P2, linkedid=P1[1], state=0, caller="6002", prefix="Dest"),
        DialString="6002",
    )
    feed.send(
        "DialEnd",
        chan(*P1, caller="6001", exten="6002"),
        chan(*P2, linkedid=P1[1], caller="6002", prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send("Hangup", chan(*P2, linkedid=P1[1], caller="6002"), Cause="16")
    feed.send("Hangup", chan(*P1, caller="6001", exten="6002"), Cause="16")
    assert feed.wire == []
    assert book_is_empty(feed)


def test_a_call_met_in_the_middle_is_not_invented() -> None:
    feed = AmiFeed()
    feed.send("Newstate", chan(*P2, linkedid=P1[1], state=6, caller="6002"))
    feed.send(
        "DialEnd",
        chan(*P1, caller="6001", exten="6002"),
        chan(*P2, linkedid=P1[1], caller="6002", prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send("Hangup", chan(*P2, linkedid=P1[1], caller="6002"), Cause="16")
    feed.send("Hangup", chan(*P1, caller="6001", exten="6002"), Cause="16")
    assert feed.wire == []
    assert book_is_empty(feed)


def test_a_channel_moved_into_another_call_leaves_nothing_behind() -> None:
    feed = AmiFeed()
    feed.send("Newchannel", cust(state=4))
    feed.send("Newexten", cust(state=4), Extension="800", Application="Dial", AppData="PJSIP/6002")
    feed.send("Newchannel", chan(*P2, state=0, caller="6002"))  # its own Linkedid, at first
    feed.send("Newstate", chan(*P2, state=5, caller="6002"))
    feed.send(
        "DialBegin",
        cust(state=4),
        chan(*P2, linkedid=T, state=5, caller="6002", prefix="Dest"),
        DialString="6002",
    )
    feed.send(
        "DialEnd",
        cust(state=4),
        chan(*P2, linkedid=T, caller="6002", prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send("Hangup", chan(*P2, linkedid=T, caller="6002"), Cause="16")
    feed.send("Hangup", cust(), Cause="16")
    assert feed.recorder.hub.tracker.calls == {}
    assert book_is_empty(feed)
    assert {e["call_id"] for e in feed.wire if e["type"] in ("delivered", "established")} == {
        "call-1"
    }
