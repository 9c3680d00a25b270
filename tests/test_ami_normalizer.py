"""AMI normalization of what the fixture traces do not show: hold, transfers, busy,
ring-all losers, Local optimization, Linkedid re-keying, older event names, bad input.

Events are built as Asterisk 22 writes them (field names from the XML documentation in
asterisk/asterisk main/manager_channels.c, main/stasis_bridges.c, apps/app_queue.c) and
go through the real codec and normalizer.
"""

from __future__ import annotations

import logging
from typing import Any

from ctilink.ami.message import AmiMessage
from tests.replaying import AmiFeed, chan

PHONE1 = ("PJSIP/6001-00000001", "1700000000.1")
PHONE2 = ("PJSIP/6002-00000002", "1700000000.2")
TRUNK = ("PJSIP/trunk-00000003", "1700000000.3")


def kinds(wire: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(e["type"], e.get("device", e.get("agent"))) for e in wire]


def customer(**overrides: Any) -> list[tuple[str, str]]:
    """The trunk channel of a call from 5551234567 for 800."""
    t_name, t = TRUNK
    return chan(t_name, t, **{"caller": "5551234567", "exten": "800", **overrides})


def queue_caller(feed: AmiFeed, event: str, queue: str, count: int) -> None:
    feed.send(event, customer(), Queue=queue, Position="1", Count=str(count))


def trunk_call_in_queue(feed: AmiFeed, queue: str) -> None:
    feed.send("Newchannel", customer(state=4))
    queue_caller(feed, "QueueCallerJoin", queue, 1)


def internal_call(feed: AmiFeed) -> None:
    """6001 dials 6002, who answers."""
    a_name, a = PHONE1
    b_name, b = PHONE2
    feed.send(
        "Newchannel", chan(a_name, a, state=4, caller="6001", exten="6002", context="internal")
    )
    feed.send(
        "Newexten",
        chan(a_name, a, state=4, caller="6001", exten="6002"),
        Extension="6002",
        Application="Dial",
        AppData="PJSIP/6002,30",
    )
    feed.send("Newchannel", chan(b_name, b, linkedid=a, state=0, caller="6002"))
    feed.send(
        "DialBegin",
        chan(a_name, a, state=4, caller="6001", exten="6002"),
        chan(b_name, b, linkedid=a, state=0, caller="6002", prefix="Dest"),
        DialString="PJSIP/6002",
    )
    feed.send("Newstate", chan(b_name, b, linkedid=a, state=5, caller="6002"))
    feed.send("Newstate", chan(b_name, b, linkedid=a, state=6, caller="6002"))
    feed.send(
        "DialEnd",
        chan(a_name, a, caller="6001", exten="6002"),
        chan(b_name, b, linkedid=a, caller="6002", prefix="Dest"),
        DialStatus="ANSWER",
    )


def test_internal_call_with_hold_and_retrieve() -> None:
    feed = AmiFeed()
    internal_call(feed)
    b_name, b = PHONE2
    a_name, a = PHONE1
    feed.send("Hold", chan(b_name, b, linkedid=a, caller="6002"), MusicClass="default")
    feed.send("Unhold", chan(b_name, b, linkedid=a, caller="6002"))
    feed.send(
        "Hangup",
        chan(b_name, b, linkedid=a, caller="6002"),
        Cause="16",
        Cause_txt="Normal Clearing",
    )
    feed.send("Hangup", chan(a_name, a, caller="6001", exten="6002"), Cause="16")
    assert kinds(feed.wire) == [
        ("service_initiated", "6001"),
        ("originated", "6001"),
        ("delivered", "6002"),
        ("established", "6002"),
        ("held", "6002"),
        ("retrieved", "6002"),
        ("connection_cleared", "6002"),
        ("connection_cleared", "6001"),
        ("call_cleared", None),
    ]
    assert {(e["calling_number"], e["called_number"]) for e in feed.wire} == {("6001", "6002")}
    assert [e["connection_state"] for e in feed.wire[4:6]] == ["held", "connected"]


def test_hold_of_an_unanswered_leg_is_ignored() -> None:
    feed = AmiFeed()
    a_name, a = PHONE1
    feed.send("Newchannel", chan(a_name, a, state=4, caller="6001", exten="6002"))
    feed.send("Hold", chan(a_name, a, state=4, caller="6001", exten="6002"))
    assert [e["type"] for e in feed.wire] == []


def test_busy_destination_fails_and_call_clears_busy() -> None:
    feed = AmiFeed()
    a_name, a = PHONE1
    b_name, b = PHONE2
    feed.send("Newchannel", chan(a_name, a, state=4, caller="6001", exten="6002"))
    feed.send("Newchannel", chan(b_name, b, linkedid=a, state=0, caller="6002"))
    feed.send(
        "DialBegin",
        chan(a_name, a, state=4, caller="6001", exten="6002"),
        chan(b_name, b, linkedid=a, state=0, prefix="Dest"),
        DialString="PJSIP/6002",
    )
    feed.send(
        "DialEnd",
        chan(a_name, a, state=4, caller="6001", exten="6002"),
        chan(b_name, b, linkedid=a, state=0, prefix="Dest"),
        DialStatus="BUSY",
    )
    feed.send("Hangup", chan(b_name, b, linkedid=a, state=0), Cause="17")
    feed.send("Hangup", chan(a_name, a, state=4, caller="6001", exten="6002"), Cause="16")
    assert [(e["type"], e["device"], e.get("cause")) for e in feed.wire] == [
        ("service_initiated", "6001", None),
        ("originated", "6001", None),
        ("delivered", "6002", None),
        ("failed", "6002", "busy"),
        ("connection_cleared", "6002", "busy"),
        ("connection_cleared", "6001", "normal_clearing"),
        ("call_cleared", None, "busy"),
    ]
    assert feed.wire[3]["connection_state"] == "fail"
    assert feed.wire[-1]["cause_code"] == 17


def inbound_to_agent(feed: AmiFeed, agent: tuple[str, str] = PHONE1) -> None:
    """A trunk call from 5551234567 for 800, dialled straight to ``agent``, answered."""
    t_name, t = TRUNK
    a_name, a = agent
    feed.send(
        "Newchannel",
        chan(t_name, t, state=4, caller="5551234567", exten="800", context="from-trunk"),
    )
    feed.send("Newstate", chan(t_name, t, state=6, caller="5551234567", exten="800"))
    feed.send("Newchannel", chan(a_name, a, linkedid=t, state=0))
    feed.send(
        "DialBegin",
        customer(),
        chan(a_name, a, linkedid=t, state=0, prefix="Dest"),
        DialString=a_name.split("-")[0],
    )
    feed.send(
        "DialEnd",
        customer(),
        chan(a_name, a, linkedid=t, prefix="Dest"),
        DialStatus="ANSWER",
    )


def test_trunk_call_is_delivered_at_the_dialled_number_then_the_phone() -> None:
    feed = AmiFeed()
    inbound_to_agent(feed)
    assert [(e["type"], e["device"], e.get("last_redirection_device")) for e in feed.wire] == [
        ("delivered", "800", None),
        ("delivered", "6001", "800"),
        ("established", "6001", None),
    ]
    call = feed.recorder.hub.tracker.snapshot(0)["calls"][0]
    assert call["connections"] == [  # the caller too: connected since the call arrived
        {"device": "5551234567", "state": "connected"},
        {"device": "6001", "state": "connected"},
    ]


def test_blind_transfer_keeps_the_call_id() -> None:
    feed = AmiFeed()
    inbound_to_agent(feed)
    t_name, t = TRUNK
    a_name, a = PHONE1
    b_name, b = PHONE2
    feed.send(
        "BlindTransfer",
        [("Result", "Success")],
        chan(a_name, a, linkedid=t, prefix="Transferer"),
        chan(t_name, t, caller="5551234567", exten="800", prefix="Transferee"),
        [("BridgeUniqueid", "bridge-1"), ("BridgeType", "basic")],
        IsExternal="No",
        Context="internal",
        Extension="6002",
    )
    feed.send("Hangup", chan(a_name, a, linkedid=t), Cause="16")
    feed.send("Newchannel", chan(b_name, b, linkedid=t, state=0))
    feed.send(
        "DialBegin",
        chan(t_name, t, caller="5551234567", exten="6002"),
        chan(b_name, b, linkedid=t, state=0, prefix="Dest"),
        DialString="PJSIP/6002",
    )
    feed.send(
        "DialEnd",
        chan(t_name, t, caller="5551234567", exten="6002"),
        chan(b_name, b, linkedid=t, prefix="Dest"),
        DialStatus="ANSWER",
    )
    after = feed.wire[3:]
    assert [(e["type"], e["device"]) for e in after] == [
        ("transferred", "6001"),
        ("delivered", "6002"),
        ("established", "6002"),
    ]
    assert after[0]["transferred_to"] == "6002"
    assert {e["call_id"] for e in feed.wire} == {"call-1"}
    snapshot = feed.recorder.hub.tracker.snapshot(0)
    assert snapshot["calls"][0]["connections"] == [
        {"device": "5551234567", "state": "connected"},
        {"device": "6002", "state": "connected"},
    ]


def test_attended_transfer_merges_the_consultation_into_the_customer_call() -> None:
    feed = AmiFeed()
    inbound_to_agent(feed)  # call-1: 5551234567 ↔ 6001 (PJSIP/6001-00000001)
    t_name, t = TRUNK
    a_name, a = PHONE1
    c2_name, c2 = "PJSIP/6001-00000004", "1700000000.4"
    target_name, target = "PJSIP/7000-00000005", "1700000000.5"
    # 6001 consults 7000 on a second line: call-2.
    feed.send("Newchannel", chan(c2_name, c2, state=4, caller="6001", exten="7000"))
    feed.send("Newchannel", chan(target_name, target, linkedid=c2, state=0))
    feed.send(
        "DialBegin",
        chan(c2_name, c2, state=4, caller="6001", exten="7000"),
        chan(target_name, target, linkedid=c2, state=0, prefix="Dest"),
        DialString="PJSIP/7000",
    )
    feed.send(
        "DialEnd",
        chan(c2_name, c2, caller="6001", exten="7000"),
        chan(target_name, target, linkedid=c2, prefix="Dest"),
        DialStatus="ANSWER",
    )
    # 6001 completes the transfer: 7000 is swapped into the customer's bridge.
    feed.send(
        "BridgeEnter",
        [("BridgeUniqueid", "bridge-1")],
        chan(target_name, target, linkedid=t),
        SwapUniqueid=a,
    )
    feed.send(
        "AttendedTransfer",
        [("Result", "Success")],
        chan(a_name, a, linkedid=t, prefix="OrigTransferer"),
        chan(c2_name, c2, caller="6001", exten="7000", prefix="SecondTransferer"),
        chan(t_name, t, caller="5551234567", exten="800", prefix="Transferee"),
        chan(target_name, target, linkedid=t, prefix="TransferTarget"),
        IsExternal="Yes",
        DestType="Bridge",
        DestBridgeUniqueid="bridge-1",
    )
    feed.send("Hangup", chan(a_name, a, linkedid=t), Cause="16")
    feed.send("Hangup", chan(c2_name, c2, caller="6001", exten="7000"), Cause="16")
    feed.send("Hangup", chan(target_name, target, linkedid=t), Cause="16")
    feed.send("Hangup", customer(), Cause="16")
    tail = feed.wire[3:]
    assert [(e["type"], e["call_id"], e["device"]) for e in tail] == [
        ("service_initiated", "call-2", "6001"),
        ("originated", "call-2", "6001"),
        ("delivered", "call-2", "7000"),
        ("established", "call-2", "7000"),
        ("transferred", "call-1", "6001"),
        ("connection_cleared", "call-1", "7000"),
        ("connection_cleared", "call-1", "5551234567"),
        ("call_cleared", "call-1", None),
    ]
    transferred = tail[4]
    assert transferred["transferred_to"] == "7000"
    assert transferred["secondary_call_id"] == "call-2"
    assert feed.recorder.hub.tracker.calls == {}


def test_ring_all_loser_is_cleared_as_cancelled() -> None:
    feed = AmiFeed()
    t = TRUNK[1]
    trunk_call_in_queue(feed, "sales")
    for name, uid, member in ((*PHONE1, "PJSIP/6001"), (*PHONE2, "PJSIP/6002")):
        feed.send("Newchannel", chan(name, uid, linkedid=t, state=0))
        feed.send(
            "AgentCalled",
            customer(),
            chan(name, uid, linkedid=t, state=0, prefix="Dest"),
            Queue="sales",
            MemberName=f"Agent {member[-4:]}",
            Interface=member,
        )
        feed.send(
            "DialBegin",
            customer(),
            chan(name, uid, linkedid=t, state=0, prefix="Dest"),
            DialString=member,
        )
    feed.send(
        "DialEnd",
        customer(),
        chan(PHONE2[0], PHONE2[1], linkedid=t, prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send(
        "DialEnd",
        customer(),
        chan(PHONE1[0], PHONE1[1], linkedid=t, state=5, prefix="Dest"),
        DialStatus="CANCEL",
    )
    feed.send("Hangup", chan(PHONE1[0], PHONE1[1], linkedid=t, state=5), Cause="26")
    queue_caller(feed, "QueueCallerLeave", "sales", 0)
    assert [(e["type"], e["device"], e.get("agent"), e.get("cause")) for e in feed.wire] == [
        ("delivered", "800", None, None),
        ("queued", "sales", None, None),
        ("delivered", "6001", "6001", None),
        ("delivered", "6002", "6002", None),
        ("established", "6002", "6002", None),
        ("connection_cleared", "6001", "6001", "cancelled"),  # the loser's own agent
    ]
    snapshot = feed.recorder.hub.tracker.snapshot(0)
    assert snapshot["queues"][0]["calls_waiting"] == 0
    assert snapshot["calls"][0]["connections"] == [
        {"device": "5551234567", "state": "connected"},
        {"device": "6002", "state": "connected"},
    ]


def test_queue_timeout_diverts_the_call_away_from_the_queue() -> None:
    feed = AmiFeed()
    trunk_call_in_queue(feed, "sales")
    queue_caller(feed, "QueueCallerLeave", "sales", 0)
    assert [(e["type"], e["device"]) for e in feed.wire][-1] == ("diverted", "sales")
    assert feed.recorder.hub.tracker.snapshot(0)["queues"][0]["calls_waiting"] == 0


def test_local_optimization_does_not_end_the_agents_connection() -> None:
    """Member Local/6001@agents (optimizable) rings PJSIP/6001; the Local pair goes away."""
    feed = AmiFeed()
    t_name, t = TRUNK
    one, two = "Local/6001@agents-00000009;1", "Local/6001@agents-00000009;2"
    feed.send("Newchannel", chan(t_name, t, state=4, caller="5551234567", exten="800"))
    feed.send(
        "QueueCallerJoin",
        customer(),
        Queue="support",
        Position="1",
        Count="1",
    )
    feed.send("Newchannel", chan(one, "u1", linkedid=t, state=0, exten="6001"))
    feed.send("Newchannel", chan(two, "u2", linkedid=t, state=4, exten="6001"))
    feed.send(
        "AgentCalled",
        chan(t_name, t, caller="5551234567"),
        chan(one, "u1", linkedid=t, state=0, prefix="Dest"),
        Queue="support",
        MemberName="Agent Alice",
        Interface="Local/6001@agents",
    )
    feed.send(
        "DialBegin",
        chan(t_name, t, caller="5551234567"),
        chan(one, "u1", linkedid=t, state=0, prefix="Dest"),
        DialString="Local/6001@agents",
    )
    feed.send("Newchannel", chan(PHONE1[0], PHONE1[1], linkedid=t, state=0))
    feed.send(
        "DialBegin",
        chan(two, "u2", linkedid=t, state=4),
        chan(PHONE1[0], PHONE1[1], linkedid=t, state=0, prefix="Dest"),
        DialString="PJSIP/6001",
    )
    feed.send(
        "DialEnd",
        chan(two, "u2", linkedid=t, state=4),
        chan(PHONE1[0], PHONE1[1], linkedid=t, prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send(
        "DialEnd",
        chan(t_name, t, caller="5551234567"),
        chan(one, "u1", linkedid=t, prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send(
        "LocalOptimizationBegin",
        chan(one, "u1", linkedid=t, prefix="LocalOne"),
        chan(two, "u2", linkedid=t, prefix="LocalTwo"),
        chan(PHONE1[0], PHONE1[1], linkedid=t, prefix="Source"),
        DestUniqueId="u2",
        Id="1",
    )
    feed.send(
        "BridgeEnter",
        [("BridgeUniqueid", "b1")],
        chan(PHONE1[0], PHONE1[1], linkedid=t),
        SwapUniqueid="u1",
    )
    feed.send(
        "LocalOptimizationEnd",
        chan(one, "u1", linkedid=t, prefix="LocalOne"),
        chan(two, "u2", linkedid=t, prefix="LocalTwo"),
        Success="Yes",
        Id="1",
    )
    feed.send("Hangup", chan(one, "u1", linkedid=t), Cause="16")
    feed.send("Hangup", chan(two, "u2", linkedid=t), Cause="16")
    types = [(e["type"], e["device"]) for e in feed.wire]
    assert types == [
        ("delivered", "800"),
        ("queued", "support"),
        ("delivered", "6001"),
        ("established", "6001"),
    ]
    feed.send("Hangup", chan(PHONE1[0], PHONE1[1], linkedid=t), Cause="16")
    assert (feed.wire[-1]["type"], feed.wire[-1]["device"]) == ("connection_cleared", "6001")


def test_linkedid_rekey_keeps_the_call_id() -> None:
    feed = AmiFeed()
    internal_call(feed)
    b_name, b = PHONE2
    feed.send("Newstate", chan(b_name, b, linkedid="1699999999.9", caller="6002"))
    late_name, late = "PJSIP/6003-0000000a", "1700000000.10"
    feed.send("Newchannel", chan(late_name, late, linkedid="1699999999.9", state=0))
    feed.send(
        "DialBegin",
        chan(b_name, b, linkedid="1699999999.9", caller="6002"),
        chan(late_name, late, linkedid="1699999999.9", state=0, prefix="Dest"),
        DialString="PJSIP/6003",
    )
    assert {e["call_id"] for e in feed.wire} == {"call-1"}
    assert feed.wire[-1]["device"] == "6003"


def test_originate_refused_by_a_busy_device() -> None:
    feed = AmiFeed()
    one, two = "Local/6001@agents-00000010;1", "Local/6001@agents-00000010;2"
    feed.send("Newchannel", chan(one, "o1", state=0, caller="6001", exten="6001"))
    feed.send("Newchannel", chan(two, "o2", linkedid="o1", state=4, caller="6001", exten="6001"))
    feed.send(
        "DialBegin",
        chan(one, "o1", state=0, caller="6001", prefix="Dest"),
        DialString="6001@agents",
    )
    feed.send(
        "OriginateResponse",
        ActionID="7",
        Response="Failure",
        Channel=one,
        Context="caller",
        Exten="5550001111",
        Reason="5",
        Uniqueid="o1",
        CallerIDNum="6001",
        CallerIDName="Agent Alice",
    )
    feed.send("Hangup", chan(two, "o2", linkedid="o1", state=4), Cause="17")
    feed.send("Hangup", chan(one, "o1", state=0), Cause="17")
    assert [(e["type"], e["device"], e.get("cause")) for e in feed.wire] == [
        ("service_initiated", "6001", None),
        ("failed", "6001", "busy"),
        ("connection_cleared", "6001", "busy"),
        ("call_cleared", None, "busy"),
    ]


def test_older_queue_event_names_and_fields() -> None:
    feed = AmiFeed()
    member = [
        ("Queue", "support"),
        ("MemberName", "Agent Eve"),
        ("Interface", "SIP/6005"),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("CallsTaken", "0"),
        ("Status", "1"),
    ]
    feed.send("QueueMemberAdded", member, Paused="0")
    feed.send("QueueMemberPaused", member, Paused="1", Reason="coffee")  # Asterisk <= 11
    feed.send("QueueMemberPause", member, Paused="0", PausedReason="")
    assert [(e["type"], e["agent"], e["reason"]) for e in feed.wire] == [
        ("agent_logged_on", "6005", None),
        ("agent_not_ready", "6005", "coffee"),
        ("agent_ready", "6005", None),
    ]


def test_member_paused_in_every_queue_is_overall_not_ready() -> None:
    feed = AmiFeed()
    base = [("MemberName", "Agent Fay"), ("Interface", "PJSIP/6006"), ("Status", "1")]
    feed.send("QueueMemberAdded", [("Queue", "support"), *base], Paused="0")
    feed.send("QueueMemberAdded", [("Queue", "sales"), *base], Paused="1", PausedReason="meeting")
    feed.send("QueueMemberPause", [("Queue", "support"), *base], Paused="1", PausedReason="meeting")
    feed.send("QueueMemberStatus", [("Queue", "support"), *base[:2]], Status="2", Paused="1")
    feed.send("QueueMemberStatus", [("Queue", "sales"), *base[:2]], Status="2", Paused="1")
    feed.send("QueueMemberStatus", [("Queue", "support"), *base[:2]], Status="1", Paused="1")
    assert [(e["type"], e.get("queue"), e["state"], e["reason"]) for e in feed.wire] == [
        ("agent_logged_on", "support", "ready", None),
        ("agent_logged_on", "sales", "ready", None),
        ("agent_not_ready", "sales", "ready", "meeting"),
        ("agent_not_ready", "support", "not_ready", "meeting"),
        ("agent_busy", None, "busy", None),  # once, though Asterisk says it per queue
        ("agent_not_ready", None, "not_ready", "meeting"),
    ]


def test_a_failing_handler_is_logged_and_the_link_goes_on(
    logged_errors: list[logging.LogRecord],
) -> None:
    feed = AmiFeed()

    def broken(message: AmiMessage) -> None:
        raise KeyError("surprise")

    feed.normalizer.register("UserEvent", broken)
    feed.send("UserEvent", UserEvent="Boom")
    inbound_to_agent(feed)
    assert [e["type"] for e in feed.wire] == ["delivered", "delivered", "established"]
    assert feed.normalizer.failures == 1
    (record,) = logged_errors
    assert "could not apply AMI event UserEvent" in record.getMessage()


def test_events_for_unknown_channels_are_ignored() -> None:
    feed = AmiFeed()
    feed.send("Hangup", chan("PJSIP/9999-00000099", "x.1"), Cause="16")
    feed.send(
        "DialEnd",
        chan("PJSIP/9999-00000099", "x.1"),
        chan("PJSIP/9998-00000098", "x.2", prefix="Dest"),
        DialStatus="ANSWER",
    )
    feed.send("QueueCallerLeave", chan("PJSIP/9999-00000099", "x.1"), Queue="q")
    feed.send("Hold", [("Channel", "PJSIP/9999-00000099")])
    feed.send("QueueMemberPause", [("Queue", "q")], Paused="1")  # no Interface
    assert feed.wire == []
    assert feed.normalizer.failures == 0
