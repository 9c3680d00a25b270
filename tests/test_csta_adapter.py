"""CSTA event reports → model events (``CstaNormalizer``), without any I/O.

The reports come from the simulator's switch model (``Switch``), delivered once per monitor
that covers them, as a switch does: every happening reaches the normalizer two or three
times and must be published once. A few come from the codec's golden fixtures, written
independently from the standard.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from typing import Any

import pytest

from ctilink.adapters.csta_events import CstaNormalizer
from ctilink.adapters.csta_resync import CstaResync, own_state
from ctilink.adapters.csta_values import call_id_text, cause, connection, named, user_data
from ctilink.csta.simulator_switch import Switch
from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.state import StateTracker
from tests.fixtures.csta import events as golden
from tests.fixtures.csta.services import CONN

MONITORED = ("800", "803", "support", "sales", "6001", "6002", "6003", "6004")
ROUTING = ("800", "803", "support", "sales")
CALLER = "5551234567"


class Feed:
    """A switch model whose reports reach a normalizer once per monitor they involve."""

    def __init__(self, *, live: bool = True, monitors: Iterable[str] = MONITORED) -> None:
        self.events: list[ev.Event] = []
        counter = itertools.count(1)
        self.normalizer = CstaNormalizer(
            "pbx",
            self.events.append,
            call_id_factory=lambda: f"call-{next(counter)}",
            monitored=frozenset(MONITORED) if live else None,
            routing_devices=frozenset(ROUTING) if live else None,
        )
        self.monitors = tuple(monitors)
        self.switch = Switch(self.report)
        self.deliveries = 0
        for device, group in (("6001", "support"), ("6002", "support"), ("6003", "sales")):
            self.switch.log_on(device, group)
        self.events.clear()

    def report(self, event_class: str, name: str, value: Any, involved: frozenset[str]) -> None:
        for device in self.monitors:
            if device in involved:
                self.deliveries += 1
                argument = {"crossRefIdentifier": device.encode(),
                            "eventSpecificInfo": (event_class, (name, value))}  # fmt: skip
                self.normalizer.handle(argument, 1795355631.0 + self.deliveries)

    def types(self) -> list[str]:
        return [event.TYPE for event in self.events]

    def calls(self) -> list[ev.CallEvent]:
        return [event for event in self.events if isinstance(event, ev.CallEvent)]

    def answered(self, caller: str = CALLER, agent: str = "6001") -> Any:
        sw = self.switch
        call = sw.arrive(caller, "800", {"CUSTOMER_ACCOUNT": "ACME-001"})
        sw.queue(call, "support")
        sw.deliver(call, agent)
        sw.answer(call, agent)
        return call


ANSWERED = ["delivered", "queued", "delivered", "established", "connection_cleared",
            "connection_cleared", "call_cleared"]  # fmt: skip


@pytest.mark.parametrize("live", [True, False], ids=["live", "replay"])
def test_an_inbound_acd_call_is_published_once_per_happening(live: bool) -> None:
    feed = Feed(live=live)
    call = feed.answered()
    feed.switch.clear_connection(call, "6001")
    assert feed.deliveries > len(feed.events)  # duplicates did arrive
    calls = feed.calls()
    assert [e.TYPE for e in calls] == ANSWERED
    assert [e.TYPE for e in feed.events if isinstance(e, ev.AgentEvent)] == [
        "agent_busy", "agent_ready"]  # fmt: skip
    assert {e.call_id for e in calls} == {"call-1"}
    assert [(e.TYPE, e.device, e.connection_state) for e in calls] == [
        ("delivered", "800", LCS.ALERTING),
        ("queued", "support", LCS.QUEUED),
        ("delivered", "6001", LCS.ALERTING),
        ("established", "6001", LCS.CONNECTED),
        ("connection_cleared", "6001", LCS.NULL),
        ("connection_cleared", CALLER, LCS.NULL),
        ("call_cleared", None, None),
    ]
    first, queued, rung, answered, *_, cleared = calls
    assert (first.calling_number, first.called_number, first.queue, first.agent) == (
        CALLER, "800", None, None)  # fmt: skip
    assert first.data == {"CUSTOMER_ACCOUNT": "ACME-001"} and cleared.data == first.data
    assert isinstance(queued, ev.Queued) and (queued.position, queued.queue_count) == (1, 1)
    assert queued.last_redirection_device == "800"
    assert isinstance(rung, ev.Delivered) and rung.last_redirection_device == "support"
    assert (rung.queue, rung.agent, answered.agent) == ("support", "6001", "6001")
    assert (cleared.cause, cleared.cause_code, cleared.switch_call_id) == (
        "normal_clearing", 16, call_id_text(call.call_id))  # fmt: skip


def test_the_tracker_ends_with_no_call_and_the_agent_ready() -> None:
    feed = Feed()
    tracker = StateTracker()
    call = feed.answered()
    for event in feed.events:
        tracker.apply(event)
    assert tracker.calls["call-1"].connections == {CALLER: LCS.CONNECTED, "6001": LCS.CONNECTED}
    seen = len(feed.events)
    feed.switch.clear_connection(call, "6001")
    for event in feed.events[seen:]:
        tracker.apply(event)
    assert tracker.calls == {}
    assert tracker.agents[("pbx", "6001")].state is AgentState.READY


def test_a_caller_hanging_up_in_the_queue_abandons() -> None:
    feed = Feed()
    sw = feed.switch
    call = sw.arrive("5559876543", "800")
    sw.queue(call, "support")
    sw.clear_connection(call, "5559876543")
    *_, gone, cleared = feed.calls()
    assert (gone.device, gone.cause, gone.cause_code) == ("5559876543", "abandoned", 16)
    assert (cleared.TYPE, cleared.cause) == ("call_cleared", "abandoned")


def test_a_transfer_keeps_the_customers_call_id_when_the_switch_rekeys() -> None:
    feed = Feed()
    sw = feed.switch
    call = feed.answered()
    consultation = sw.consult(call, "6001", "6002")
    sw.answer(consultation, "6002")
    joined = sw.transfer(call, consultation, "6001")
    sw.clear_connection(joined, "6002")
    transferred = next(e for e in feed.calls() if isinstance(e, ev.Transferred))
    assert transferred.call_id == "call-1" and transferred.secondary_call_id == "call-2"
    assert (transferred.device, transferred.transferred_to, transferred.cause) == (
        "6001", "6002", "transfer")  # fmt: skip
    assert transferred.switch_call_id == call_id_text(joined.call_id) != call_id_text(call.call_id)
    after = feed.calls()[feed.calls().index(transferred) + 1 :]
    assert [(e.TYPE, e.device, e.call_id) for e in after] == [
        ("connection_cleared", "6002", "call-1"),
        ("connection_cleared", "5551234567", "call-1"),
        ("call_cleared", None, "call-1"),
    ]
    consulting = [e for e in feed.calls() if e.call_id == "call-2"]
    assert [e.TYPE for e in consulting] == ["service_initiated", "originated", "delivered",
                                            "established"]  # fmt: skip
    assert feed.normalizer.book.calls == {}


def test_a_conference_merges_the_consultation_and_keeps_everyone() -> None:
    feed = Feed()
    sw = feed.switch
    call = feed.answered()
    consultation = sw.consult(call, "6001", "6002")
    sw.answer(consultation, "6002")
    joined = sw.conference(call, consultation, "6001")
    (conferenced,) = [e for e in feed.calls() if isinstance(e, ev.Conferenced)]
    assert (conferenced.call_id, conferenced.secondary_call_id) == ("call-1", "call-2")
    assert (conferenced.device, conferenced.added_device) == ("6001", "6002")
    book_call = feed.normalizer.book.calls["call-1"]
    assert set(book_call.parties) == {CALLER, "6001", "6002"}
    sw.clear_connection(joined, "6002")
    sw.clear_connection(joined, "6001")
    assert feed.types()[-3:] == ["connection_cleared", "call_cleared", "agent_ready"]


def test_single_step_transfer_then_ringing_at_the_destination() -> None:
    feed = Feed()
    call = feed.answered()
    feed.switch.single_step(call, "6001", "6002")
    feed.switch.answer(call, "6002")
    tail = [(e.TYPE, e.device) for e in feed.calls()][-3:]
    assert tail == [("transferred", "6001"), ("delivered", "6002"), ("established", "6002")]
    transferred = next(e for e in feed.calls() if isinstance(e, ev.Transferred))
    assert transferred.secondary_call_id is None and transferred.call_id == "call-1"


def test_held_and_retrieved_once_each() -> None:
    feed = Feed()
    call = feed.answered()
    feed.switch.hold(call, "6001")
    feed.switch.retrieve(call, "6001")
    assert [(e.TYPE, e.connection_state) for e in feed.calls()][-2:] == [
        ("held", LCS.HELD), ("retrieved", LCS.CONNECTED)]  # fmt: skip


def test_diverted_from_a_queue_to_an_agent_is_not_a_diversion_but_elsewhere_is() -> None:
    feed = Feed()
    sw = feed.switch
    call = sw.arrive(CALLER, "800")
    sw.queue(call, "support")
    value = {
        "connection": connection(call.call_id, "support"),
        "divertingDevice": named("support"),
        "newDestination": named("6001"),
        "lastRedirectionDevice": ("notKnown", None),
    }
    feed.report(
        "callControlEvents", "diverted", {**value, "cause": "distributed"}, frozenset({"support"})
    )
    assert "diverted" not in feed.types()
    feed.report(
        "callControlEvents", "diverted", {**value, "cause": "overflow"}, frozenset({"support"})
    )
    (diverted,) = [e for e in feed.calls() if isinstance(e, ev.Diverted)]
    assert (diverted.device, diverted.new_destination, diverted.cause) == (
        "support", "6001", "overflow")  # fmt: skip


def test_a_made_call_carries_the_promised_id_and_a_busy_destination_fails_it() -> None:
    feed = Feed()
    feed.normalizer.book.expect("6001", "promised")
    call = feed.switch.originate("6001", "5550001111")
    feed.switch.reach_network(call, "trunk1")
    feed.switch.fail(call, "5550001111", "busy")
    feed.switch.clear_connection(call, "6001")
    assert [(e.TYPE, e.call_id) for e in feed.calls()] == [
        ("service_initiated", "promised"), ("originated", "promised"),
        ("network_reached", "promised"), ("failed", "promised"),
        ("connection_cleared", "promised"), ("connection_cleared", "promised"),
        ("call_cleared", "promised"),
    ]  # fmt: skip
    originated, failed, cleared = feed.calls()[1], feed.calls()[3], feed.calls()[-1]
    assert (originated.calling_number, originated.called_number) == ("6001", "5550001111")
    assert (failed.device, failed.cause) == ("5550001111", "busy")
    assert cleared.cause == "busy"


def test_agent_reports_are_published_once_with_the_overall_state() -> None:
    feed = Feed()
    sw = feed.switch
    sw.log_on("6004", "sales")
    sw.agent_state("6004", "agentNotReady", "forcedPause")
    sw.maintenance("6004", in_service=False)
    sw.maintenance("6004", in_service=True)
    sw.agent_state("6004", "agentWorkingAfterCall")
    sw.log_off("6004", "sales")
    assert [(e.TYPE, e.state, e.queue, e.reason) for e in feed.events] == [  # type: ignore[attr-defined]
        ("agent_logged_on", AgentState.READY, "sales", None),
        ("agent_not_ready", AgentState.NOT_READY, None, "forced_pause"),
        ("agent_not_ready", AgentState.NOT_READY, None, "device_unavailable"),
        ("agent_not_ready", AgentState.NOT_READY, None, "forced_pause"),
        ("agent_working_after_call", AgentState.WORKING_AFTER_CALL, None, None),
        ("agent_logged_off", AgentState.LOGGED_OFF, "sales", None),
    ]


def test_the_golden_delivered_report_of_the_codec_fixtures() -> None:
    (delivered,) = [g for g in golden.GOLDEN if g.name == "delivered"]
    events: list[ev.Event] = []
    normalizer = CstaNormalizer("pbx", events.append, call_id_factory=lambda: "c1")
    normalizer.handle(delivered.value.argument, 0.0)  # type: ignore[union-attr]
    (event,) = events
    assert isinstance(event, ev.Delivered)
    assert (event.device, event.calling_number, event.called_number) == ("6001", "5551234", "800")
    assert (event.switch_call_id, event.connection_state) == ("002a", LCS.ALERTING)
    party = normalizer.book.calls["c1"].parties["6001"]
    assert party.connection == CONN  # what call control sends back: the dynamicID


def test_an_event_that_breaks_a_handler_is_logged_and_the_next_one_applies(
    logged_errors: list[logging.LogRecord],
) -> None:
    feed = Feed()
    for event in (("delivered", None), ("bridged", [b"\x04\x00"])):
        report = {"crossRefIdentifier": b"1", "eventSpecificInfo": ("callControlEvents", event)}
        feed.normalizer.handle(report, 0.0)
    feed.answered()
    assert [r.getMessage() for r in logged_errors] == [
        "switch pbx: could not apply CSTA event delivered (1 so far); the link continues"
    ]
    assert feed.normalizer.ignored["bridged"] == 1
    assert feed.types()[:2] == ["delivered", "queued"]


def test_values() -> None:
    assert cause("normalClearing") == ("normal_clearing", 16)
    assert cause("aCDBusy") == ("a_cd_busy", None)
    assert cause(None) == (None, None)
    assert user_data(b"A=1;B=x=y") == {"A": "1", "B": "x=y"}
    assert user_data(b"just text") == {"user_data": "just text"}
    assert own_state(("simpleCallState", "callReceived")) is LCS.ALERTING
    assert own_state(("compoundCallState", ["hold", "connected"])) is LCS.HELD
    assert call_id_text(b"\x00\x2a") == "002a" and call_id_text(b"1001") == "1001"


# -- resync ----------------------------------------------------------------------------------
def snapshots(switch: Switch, devices: Iterable[str]) -> dict[str, Any]:
    return {device: switch.snapshot(device) for device in devices}


def test_resync_clears_what_ended_announces_what_started_and_reports_changes() -> None:
    feed = Feed()
    sw = feed.switch
    kept = feed.answered()
    ended = feed.answered("5550000002", "6002")
    resync = CstaResync(feed.normalizer)
    resync.begin()
    # While the link was down: one call ended, one was held, one new call started.
    feed.monitors = ()
    sw.clear_connection(ended, "6002")
    sw.hold(kept, "6001")
    fresh = sw.arrive("5550000003", "800")
    sw.queue(fresh, "support")
    feed.monitors = MONITORED
    before = len(feed.events)
    report = resync.finish(snapshots(sw, MONITORED), 2000.0)
    tail = [
        (e.TYPE, e.device, e.call_id, e.cause)
        for e in feed.events[before:]
        if isinstance(e, ev.CallEvent)
    ]
    assert tail == [
        ("held", "6001", "call-1", None),
        ("connection_cleared", "5550000002", "call-2", "resync"),
        ("connection_cleared", "6002", "call-2", "resync"),
        ("call_cleared", None, "call-2", "resync"),
        ("queued", "support", "call-3", None),
    ]
    assert (report.calls, report.cleared_calls, report.added_calls) == (2, 1, 1)
    again = len(feed.events)
    CstaResync(feed.normalizer).finish(snapshots(sw, MONITORED), 2001.0)
    assert len(feed.events) == again  # nothing changed: nothing said


def test_resync_proves_nothing_from_a_failed_snapshot_nor_revives_a_call_ended_meanwhile() -> None:
    feed = Feed()
    call = feed.answered()
    resync = CstaResync(feed.normalizer)
    resync.begin()
    listing = snapshots(feed.switch, MONITORED)
    feed.switch.clear_connection(call, "6001")  # live, after the snapshot was taken
    count = len(feed.events)
    resync.finish(listing, 3000.0)
    assert len(feed.events) == count
    other = feed.answered("5550000009")
    resync.begin()
    resync.finish({device: None for device in MONITORED}, 3001.0)
    assert feed.normalizer.book.calls.keys() == {"call-2"}
    del other
