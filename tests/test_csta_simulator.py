"""The CSTA switch simulator: its scenarios as a client sees them, over memory and over real
TCP, in BER and in XML, and its command line."""

from __future__ import annotations

import socket

import pytest
from twisted.internet import reactor

from ctilink.adapters.csta import CstaAdapter, CstaSettings
from ctilink.csta import xml
from ctilink.csta.simulator import main, run_simulator
from ctilink.csta.simulator_scenarios import CALL_SCENARIOS, SCENARIOS
from ctilink.csta.xml_session import is_session
from ctilink.hub import Hub
from ctilink.model import events as ev
from tests.aio import aio_test, deferred_result, until
from tests.cstasim import ClockRig


def call_stream(rig: ClockRig, since: int) -> list[tuple[str, str | None]]:
    return [(e.TYPE, e.device) for e in rig.events[since:] if isinstance(e, ev.CallEvent)]


def agent_stream(rig: ClockRig, since: int) -> list[tuple[str, str, str | None]]:
    return [(e.TYPE, e.agent, e.reason) for e in rig.events[since:] if isinstance(e, ev.AgentEvent)]


@pytest.fixture
def rig() -> ClockRig:
    rig = ClockRig()
    rig.start()
    return rig


def test_inbound_abandoned(rig: ClockRig) -> None:
    start = len(rig.events)
    rig.play("inbound_abandoned")
    assert call_stream(rig, start) == [
        ("delivered", "800"), ("queued", "support"), ("connection_cleared", "5559876543"),
        ("call_cleared", None),
    ]  # fmt: skip
    assert rig.of("call_cleared")[0].cause == "abandoned"
    assert [a[:2] for a in agent_stream(rig, start)] == [
        ("agent_not_ready", "6001"), ("agent_not_ready", "6002"),
        ("agent_ready", "6001"), ("agent_ready", "6002"),
    ]  # fmt: skip


def test_transferred_and_conferenced(rig: ClockRig) -> None:
    start = len(rig.events)
    rig.play("transferred")
    stream = call_stream(rig, start)
    assert stream[4:9] == [
        ("held", "6001"), ("service_initiated", "6001"), ("originated", "6001"),
        ("delivered", "6002"), ("established", "6002"),
    ]  # fmt: skip
    assert stream[9:] == [("transferred", "6001"), ("connection_cleared", "6002"),
                          ("connection_cleared", "5557770001"), ("call_cleared", None)]  # fmt: skip
    start = len(rig.events)
    rig.play("conferenced")
    assert call_stream(rig, start)[9:] == [
        ("conferenced", "6001"), ("connection_cleared", "6002"), ("connection_cleared", "6001"),
        ("connection_cleared", "5557770002"), ("call_cleared", None),
    ]  # fmt: skip


def test_held_retrieved_and_agent_states(rig: ClockRig) -> None:
    start = len(rig.events)
    rig.play("held_retrieved")
    assert call_stream(rig, start)[4:6] == [("held", "6001"), ("retrieved", "6001")]
    start = len(rig.events)
    rig.play("agent_states")
    assert agent_stream(rig, start) == [
        ("agent_logged_on", "6004", None), ("agent_not_ready", "6004", "forced_pause"),
        ("agent_ready", "6004", None), ("agent_working_after_call", "6004", None),
        ("agent_ready", "6004", None), ("agent_logged_off", "6004", None),
    ]  # fmt: skip


def test_a_route_request_nobody_answers_goes_to_the_switchs_default(
    rig: ClockRig, caplog: pytest.LogCaptureFixture
) -> None:
    start = len(rig.events)
    rig.play("route_request")
    stream = call_stream(rig, start)
    assert stream[:3] == [("delivered", "803"), ("route_request", "803"), ("queued", "support")]
    assert "no router is configured; no fallback route: ending the dialogue" in caplog.text


def test_drop_and_silent_scenarios(rig: ClockRig) -> None:
    rig.play("drop")
    assert rig.count("link_down") == 1
    rig.advance(2)
    assert rig.count("link_resynced") == 2
    rig.play("silent")
    rig.advance(16)
    assert rig.count("link_down") == 2
    assert "heartbeat" in (rig.of("link_down")[-1].detail or "")


def test_the_xml_simulator_sends_ecma_323_documents() -> None:
    rig = ClockRig(xml=True)
    rig.start()
    for name in CALL_SCENARIOS:
        rig.play(name)
    assert rig.count("call_cleared") == 6
    documents = {xml.parse(frame[8:]).tag.rsplit("}", 1)[-1] for frame in rig.simulator.frames_out}
    assert {"MonitorStartResponse", "DeliveredEvent", "QueuedEvent", "EstablishedEvent",
            "TransferedEvent", "ConferencedEvent", "RouteRequest"} <= documents  # fmt: skip
    for frame in rig.simulator.frames_out + rig.simulator.frames_in:
        root = xml.parse(frame[8:], int(frame[4:8]))
        if not is_session(root):
            xml.decode_element(root, int(frame[4:8]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("use_xml", [False, True], ids=["ber", "xml"])
@aio_test
async def test_run_simulator_plays_its_scenarios_to_a_client_over_tcp(use_xml: bool) -> None:
    port = free_port()
    simulator = run_simulator(
        reactor, port, xml=use_xml, scenarios=["inbound_answered"], loop=False, pace=0.01
    )
    try:
        hub = Hub()
        events: list[ev.Event] = []
        hub.subscribe(events.append)
        settings = CstaSettings(host="127.0.0.1", port=port, xml=use_xml, devices=("6001",),
                                acd_groups=("support",), route_points=("800",))  # fmt: skip
        adapter = CstaAdapter("pbx", settings, hub.publish, reactor)
        adapter.start()
        await until(lambda: any(e.TYPE == "call_cleared" for e in events), timeout=15)
        calls = [e for e in events if isinstance(e, ev.CallEvent)]
        assert [e.TYPE for e in calls] == ["delivered", "queued", "delivered", "established",
                                           "connection_cleared", "connection_cleared",
                                           "call_cleared"]  # fmt: skip
        await deferred_result(adapter.stop())
    finally:
        await deferred_result(simulator.stop())


def test_the_command_line() -> None:
    with pytest.raises(SystemExit) as usage:
        main([])
    assert usage.value.code == 2
    assert set(CALL_SCENARIOS) < set(SCENARIOS)
