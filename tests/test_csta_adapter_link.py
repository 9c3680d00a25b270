"""The live CSTA link against the simulator, on a ``Clock`` (in-memory transports): link
life, heartbeats, broken streams, drops and resync, call control and its failures,
routeing. Every timing claim is made by advancing the clock, never by waiting."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from ctilink.csta import CstaMessage, acse, rose
from ctilink.csta.operations import CstaError
from ctilink.errors import CommandError
from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.routing.static import RouteDecision, RouteQuery
from tests.cstasim import ClockRig

T = TypeVar("T")


def result(rig: ClockRig, deferred: Deferred[T]) -> T:
    """What ``deferred`` fired with once the bytes have moved (raises its failure)."""
    rig.pump()
    out: list[Any] = []
    deferred.addBoth(out.append)
    assert out, "no answer"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]  # type: ignore[no-any-return]


def failure_of(rig: ClockRig, deferred: Deferred[Any]) -> BaseException:
    with pytest.raises(CommandError) as caught:
        result(rig, deferred)
    return caught.value


def received(rig: ClockRig) -> list[CstaMessage]:
    """Every ROSE message the switch received."""
    pdus = (frame[2:] for frame in rig.simulator.frames_in)
    return [rose.decode(pdu) for pdu in pdus if rose.is_rose(pdu)]


def operations(rig: ClockRig) -> list[str | None]:
    return [message.operation for message in rig.simulator.requests]


@pytest.fixture
def rig() -> ClockRig:
    rig = ClockRig()
    rig.start()
    assert rig.types() == ["link_up", "agent_logged_on", "agent_logged_on", "agent_logged_on",
                           "link_resynced"]  # fmt: skip
    return rig


def test_link_up_starts_monitors_registers_route_points_and_resyncs(rig: ClockRig) -> None:
    link_up = rig.of("link_up")[0]
    assert link_up.detail == "CSTA versionFive (BER) at switch:1"
    asked = operations(rig)
    assert asked.count("monitorStart") == 8 and asked.count("snapshotDevice") == 8
    assert asked.count("routeRegister") == 2 and asked.count("getAgentState") == 4
    assert set(rig.adapter.monitors.values()) == set(rig.settings.monitored)
    assert rig.adapter.routing.registrations.keys() == {"800", "803"}
    assert [(e.agent, e.queue, e.state) for e in rig.of("agent_logged_on")] == [
        ("6001", "support", AgentState.READY),
        ("6002", "support", AgentState.READY),
        ("6003", "sales", AgentState.READY),
    ]


def test_heartbeats_both_ways_keep_an_idle_link_up(rig: ClockRig) -> None:
    rig.advance(60)
    assert rig.adapter.up and rig.count("link_down") == 0
    heartbeats = [m for m in received(rig) if m.operation == "systemStatus"]
    assert len(heartbeats) >= 10  # ours every 5 s; the switch's, answered, every 5 s too


def test_a_silent_switch_takes_the_link_down_after_the_heartbeat_timeout(
    rig: ClockRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.advance(2)  # a heartbeat cycle starts at t=5
    rig.simulator.go_silent()
    rig.advance(10)
    assert rig.count("link_down") == 0  # two heartbeats unanswered take 2 x 5 s...
    rig.advance(5)
    (down,) = rig.of("link_down")
    assert down.detail == "heartbeat: 2 heartbeats unanswered"  # ...found within 15 s
    assert "CSTA link heartbeat" in caplog.text
    rig.simulator.silent = False
    rig.advance(15)  # retries: association time-outs on the hung switch, then it is back
    assert rig.count("link_resynced") == 2 and rig.adapter.up


def test_a_malformed_frame_resets_the_link_and_keeps_the_calls(
    rig: ClockRig, logged_errors: list[logging.LogRecord]
) -> None:
    call = rig.simulator.switch.arrive("5551234567", "800")
    rig.pump()
    before = rig.count("delivered")
    rig.simulator.send_raw(b"\x00\x00")  # a frame of length 0
    rig.pump()
    assert [r.getMessage() for r in logged_errors] == [
        "switch pbx: broken CSTA stream (empty CSTA frame (length 0)); reconnecting"
    ]
    assert rig.of("link_down")[0].detail == "protocol_error: empty CSTA frame (length 0)"
    rig.advance(2)
    assert rig.count("link_resynced") == 2
    assert rig.count("delivered") == before and rig.count("call_cleared") == 0  # kept
    rig.simulator.switch.queue(call, "support")
    rig.pump()
    (queued,) = rig.of("queued")
    assert queued.call_id == rig.of("delivered")[0].call_id


def test_the_switch_dropping_mid_call_reconnects_and_resyncs(rig: ClockRig) -> None:
    sw = rig.simulator.switch
    kept = sw.arrive("5551234567", "800")
    ended = sw.arrive("5559876543", "800")
    rig.pump()
    kept_id, ended_id = (e.call_id for e in rig.of("delivered"))
    rig.simulator.drop()
    rig.pump()
    assert rig.count("link_down") == 1 and not rig.adapter.up
    sw.clear_call(ended)  # while nobody monitors
    sw.queue(kept, "support")
    rig.advance(2)
    assert rig.count("link_resynced") == 2
    (cleared,) = rig.of("call_cleared")
    assert (cleared.call_id, cleared.cause) == (ended_id, "resync")
    (queued,) = rig.of("queued")  # learnt from the snapshot of the group
    assert queued.call_id == kept_id
    sw.clear_call(kept)
    rig.pump()
    assert [e.call_id for e in rig.of("call_cleared")] == [ended_id, kept_id]


def test_a_pending_request_fails_with_link_down_when_the_switch_drops(rig: ClockRig) -> None:
    rig.simulator.go_silent()
    made = rig.adapter.make_call("6001", "6002")
    rig.pump()
    rig.simulator.drop()
    error = failure_of(rig, made)
    assert isinstance(error, CstaError) and error.code == "link_down"
    assert failure_of(rig, rig.adapter.make_call("6001", "6002")).code == "link_down"  # type: ignore[attr-defined]


def test_universal_failure_becomes_a_clear_error(rig: ClockRig) -> None:
    rig.simulator.fail_next["makeCall"] = ("operation", "invalidCalledDeviceID")
    error = failure_of(rig, rig.adapter.make_call("6001", "9999"))
    assert isinstance(error, CstaError)
    assert (error.code, error.failure) == ("invalid", ("operation", "invalidCalledDeviceID"))
    assert str(error) == "makeCall: refused (invalidCalledDeviceID)"
    assert not rig.adapter.normalizer.book.expected  # the promised call id is forgotten
    rig.simulator.fail_next["setAgentState"] = ("security", "generic")
    error = failure_of(rig, rig.adapter.set_agent_state("6001", "ready"))
    assert error.code == "not_allowed"  # type: ignore[attr-defined]


def test_commands_refused_before_reaching_the_switch(rig: ClockRig) -> None:
    assert failure_of(rig, rig.adapter.answer_call("nope", "6001")).code == "not_found"  # type: ignore[attr-defined]
    assert failure_of(rig, rig.adapter.make_call("6001", "12 34")).code == "invalid"  # type: ignore[attr-defined]
    assert failure_of(rig, rig.adapter.set_agent_state("6001", "asleep")).code == "invalid"  # type: ignore[attr-defined]


def call_of(rig: ClockRig, call_id: str) -> list[tuple[str, str | None]]:
    return [(e.TYPE, e.device) for e in rig.events
            if isinstance(e, ev.CallEvent) and e.call_id == call_id]  # fmt: skip


def test_make_call_answer_hold_retrieve_and_clear(rig: ClockRig) -> None:
    adapter = rig.adapter
    call_id = result(rig, adapter.make_call("6001", "6002"))
    rig.advance(1)
    assert call_of(rig, call_id) == [
        ("service_initiated", "6001"), ("originated", "6001"), ("delivered", "6002"),
        ("established", "6002"),
    ]  # fmt: skip
    result(rig, adapter.hold_call(call_id, "6002"))
    error = failure_of(rig, adapter.hold_call(call_id, "6002"))
    assert error.code == "not_allowed"  # type: ignore[attr-defined]
    result(rig, adapter.retrieve_call(call_id, "6002"))
    result(rig, adapter.clear_connection(call_id, "6002"))
    assert call_of(rig, call_id)[-5:] == [
        ("held", "6002"), ("retrieved", "6002"), ("connection_cleared", "6002"),
        ("connection_cleared", "6001"), ("call_cleared", None),
    ]  # fmt: skip


def test_answer_deflect_and_clear_call(rig: ClockRig) -> None:
    sw = rig.simulator.switch
    call = sw.arrive("5551234567", "6001")
    rig.pump()
    call_id = rig.of("delivered")[0].call_id
    result(rig, rig.adapter.answer_call(call_id, "6001"))
    sw.arrive("5550000001", "6002")
    rig.pump()
    other_id = rig.of("delivered")[-1].call_id
    result(rig, rig.adapter.deflect_call(other_id, "6002", "6003"))
    rig.advance(1)
    result(rig, rig.adapter.clear_call(call_id))
    assert call_of(rig, call_id)[-1] == ("call_cleared", None)
    assert ("diverted", "6002") in call_of(rig, other_id)
    assert call_of(rig, other_id)[-1] == ("established", "6003")
    del call


def test_consultation_transfer_conference_alternate_reconnect(rig: ClockRig) -> None:
    adapter, sw = rig.adapter, rig.simulator.switch
    customer = sw.arrive("5551234567", "6001")
    sw.answer(customer, "6001")
    rig.pump()
    first = rig.of("delivered")[0].call_id
    result(rig, adapter.consultation_call(first, "6001", "6002"))
    rig.advance(1)
    second = rig.of("service_initiated")[-1].call_id
    result(rig, adapter.alternate_call(second, first, "6001"))
    result(rig, adapter.alternate_call(first, second, "6001"))
    result(rig, adapter.transfer_call(first, second, "6001"))
    (transferred,) = rig.of("transferred")
    assert (transferred.call_id, transferred.secondary_call_id) == (first, second)
    result(rig, adapter.consultation_call(first, "6002", "6003"))
    rig.advance(1)
    third = rig.of("service_initiated")[-1].call_id
    result(rig, adapter.conference_call(first, third, "6002"))
    (conferenced,) = rig.of("conferenced")
    assert (conferenced.call_id, conferenced.added_device) == (first, "6003")
    result(rig, adapter.single_step_transfer(first, "6003", "6004"))
    assert rig.of("transferred")[-1].transferred_to == "6004"
    result(rig, adapter.consultation_call(first, "6002", "6001"))
    rig.advance(1)
    fourth = rig.of("service_initiated")[-1].call_id
    result(rig, adapter.reconnect_call(first, fourth, "6002"))
    assert call_of(rig, fourth)[-1] == ("call_cleared", None)
    assert call_of(rig, first)[-1] == ("retrieved", "6002")


def test_agent_state_set_and_read(rig: ClockRig) -> None:
    result(rig, rig.adapter.set_agent_state("6001", "not_ready", reason="lunch"))
    assert rig.of("agent_not_ready")[-1].state is AgentState.NOT_READY
    assert result(rig, rig.adapter.get_agent_state("6001")) == [
        {"queue": "support", "logged_on": True, "state": "not_ready"}
    ]
    result(rig, rig.adapter.set_agent_state("6004", "logged_on", queue="sales"))
    assert rig.of("agent_logged_on")[-1].agent == "6004"
    assert rig.simulator.requests[-1].argument["requestedAgentState"] == "loggedOn"


class Router:
    def __init__(self, answer: Deferred[RouteDecision] | None = None) -> None:
        self.answer = answer
        self.queries: list[RouteQuery] = []

    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        self.queries.append(query)
        return self.answer if self.answer is not None else Deferred()


FALLBACK = RouteDecision("support", None, 0, "fallback")


def route_call(rig: ClockRig) -> None:
    rig.play("route_request")


def selected(rig: ClockRig) -> list[Any]:
    return [m.argument for m in rig.simulator.requests if m.operation == "routeSelectRequest"]


def test_a_route_request_is_answered_by_the_router() -> None:
    router = Router(succeed(RouteDecision("sales", None, 7, "vip")))
    rig = ClockRig(router=router, fallback=FALLBACK)
    rig.start()
    route_call(rig)
    (query,) = router.queries
    (request,) = rig.of("route_request")
    assert (query.route_point, query.calling_number, query.call_id) == (
        "803", "5554446666", request.call_id)  # fmt: skip
    (answer,) = selected(rig)
    assert answer["routeSelected"] == {"deviceIdentifier": ("dialingNumber", "sales")}
    assert answer["routeRegisterReqID"] == rig.adapter.routing.registrations.get("803", b"RR10")
    (chosen,) = rig.of("route_selected")
    assert (chosen.destination, chosen.priority, chosen.rule) == ("queue:sales", 7, "vip")
    assert rig.of("queued")[0].device == "sales" and rig.of("queued")[0].call_id == request.call_id


def test_a_failing_router_gets_the_fallback_answered(caplog: pytest.LogCaptureFixture) -> None:
    rig = ClockRig(router=Router(fail(RuntimeError("database down"))), fallback=FALLBACK)
    rig.start()
    route_call(rig)
    assert selected(rig)[0]["routeSelected"] == {"deviceIdentifier": ("dialingNumber", "support")}
    assert rig.of("route_selected")[0].rule == "fallback"
    assert "the router failed: RuntimeError: database down; answering the fallback" in caplog.text


def test_a_late_router_gets_the_fallback_within_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router()
    rig = ClockRig(router=router, fallback=FALLBACK, routing_budget=0.3)
    rig.start()
    done = Deferred.fromCoroutine(rig.director.play("route_request"))
    rig.pump()
    assert router.queries and not selected(rig)
    rig.clock.advance(0.29)
    rig.pump()
    assert not selected(rig)
    rig.clock.advance(0.02)
    rig.pump()
    assert len(selected(rig)) == 1 and "did not answer within 0.3 s" in caplog.text
    rig.advance(2)
    assert done.called


def test_with_no_fallback_the_dialogue_ends_and_the_switch_routes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = ClockRig(router=Router(fail(RuntimeError("boom"))))
    rig.start()
    route_call(rig)
    ended = [m.argument for m in rig.simulator.requests if m.operation == "routeEndRequest"]
    assert len(ended) == 1 and ended[0]["errorValue"] == ("operation", "generic")
    assert "no fallback route: ending the dialogue" in caplog.text
    assert rig.of("queued")[0].device == "support"  # the switch's own default
    assert rig.count("route_selected") == 0


def test_a_wrong_password_is_refused_logged_once_as_error_and_retried(
    logged_errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture
) -> None:
    from ctilink.config.model import Secret

    rig = ClockRig(switch_password="right", password=Secret("wrong"))
    rig.start()
    rig.advance(3)
    assert [r.getMessage() for r in logged_errors] == [
        "switch pbx: CSTA association refused (rejected-permanent, authentication-failure);"
        " will retry"
    ]
    assert caplog.text.count("association refused") >= 3 and rig.count("link_up") == 0
    assert "wrong" not in caplog.text and "right" not in caplog.text


def test_stop_releases_the_association() -> None:
    rig = ClockRig()
    rig.start()
    stopped = rig.adapter.stop()
    rig.pump()
    assert stopped.called
    frames = [acse.decode(f[2:]) for f in rig.simulator.frames_in if acse.is_acse(f[2:])]
    assert isinstance(frames[-1], acse.ReleaseRequest)
    assert rig.of("link_down")[-1].detail is not None


@pytest.mark.parametrize("variant", ["xml", "xml_session", "alcatel"])
def test_xml_and_alcatel_links(variant: str) -> None:
    rig = ClockRig(xml=variant.startswith("xml"), alcatel=variant == "alcatel",
                   xml_application_session=variant == "xml_session")  # fmt: skip
    rig.start()
    rig.play("inbound_answered")
    assert rig.types()[-9:] == ["delivered", "queued", "delivered", "established", "agent_busy",
                                "connection_cleared", "connection_cleared", "call_cleared",
                                "agent_ready"]  # fmt: skip
    encoding = "XML" if variant.startswith("xml") else "BER"
    assert rig.of("link_up")[0].detail.startswith("CSTA ")
    assert encoding in rig.of("link_up")[0].detail


def test_taps_see_every_whole_frame_both_ways(rig: ClockRig) -> None:
    seen: list[tuple[str, bytes]] = []
    rig.adapter.taps.append(lambda _at, way, data: seen.append((way, data)))
    rig.play("inbound_answered")
    rig.advance(6)  # a heartbeat each way
    assert {way for way, _ in seen} == {"rx", "tx"}
    for _way, frame in seen:
        assert int.from_bytes(frame[:2], "big") == len(frame) - 2
    assert acse.decode(rig.adapter.first_bytes()[2:]).accepted  # type: ignore[union-attr]


def test_a_route_the_switch_cannot_use_is_asked_again_and_the_fallback_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = ClockRig(router=Router(succeed(RouteDecision("nowhere", None, 0, "odd"))),
                   fallback=FALLBACK)  # fmt: skip
    rig.start()
    route_call(rig)
    answers = [a["routeSelected"]["deviceIdentifier"][1] for a in selected(rig)]
    assert answers == ["nowhere", "support"]
    assert "the switch asked to re-route; answering the fallback queue:support" in caplog.text
    assert [e.rule for e in rig.of("route_selected")] == ["odd", "fallback"]
    assert rig.of("queued")[0].device == "support"


def test_stop_stops_the_monitors_first() -> None:
    rig = ClockRig()
    rig.start()
    rig.adapter.stop()
    rig.pump()
    asked = [m.operation for m in received(rig)]
    assert asked.count("monitorStop") == len(rig.settings.monitored)
