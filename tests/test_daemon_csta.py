"""CSTA switches in the daemon: the factories that build their links (and CSTA replays), and
`ctilink run` against ctilink's CSTA switch simulator, BER and XML, over real sockets, as an
integrator would run it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail

from ctilink.adapters.csta import CstaAdapter, CstaSettings
from ctilink.adapters.csta_replay import CstaReplayAdapter
from ctilink.adapters.factories import build_adapter, resolve_replay
from ctilink.adapters.replay import ReplayAdapter
from ctilink.config import ReplayOptions, SwitchConfig
from ctilink.csta.simulator import CstaSimulator
from ctilink.csta.simulator_scenarios import Director, populate
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.routing import RouteDecision, RouteQuery, Routes, StaticRouter
from tests.aio import aio_test, deferred_result
from tests.conftest import FIXTURES, TRACES
from tests.cstasim import DEVICES, GROUPS, ROUTE_POINTS, ClockRig

READY = re.compile(r"ctilink ready: event socket on ([\d.]+):(\d+)")
CSTA_TRACE = FIXTURES / "csta" / "inbound-answered.jsonl"
AMI_TRACE = TRACES / "inbound-answered.jsonl"


def routes() -> Routes:
    return Routes(StaticRouter("support"), RouteDecision("support", None, 0, "default"))


# -- replays ------------------------------------------------------------------------------
def test_resolve_replay() -> None:
    assert resolve_replay("auto", [CSTA_TRACE]) == ("csta", 2555)
    assert resolve_replay("auto", [CSTA_TRACE, CSTA_TRACE], 4000) == ("csta", 4000)
    assert resolve_replay("auto", [AMI_TRACE]) == ("ami", 5038)
    assert resolve_replay("auto", [CSTA_TRACE, AMI_TRACE]) == ("ami", 5038)
    assert resolve_replay("auto", []) == ("ami", 5038)
    assert resolve_replay("csta", [AMI_TRACE]) == ("csta", 2555)  # said: not looked at
    assert resolve_replay("ami", [CSTA_TRACE], 15038) == ("ami", 15038)


def replayed(protocol: str, trace: Path) -> tuple[Any, list[ev.Event]]:
    hub = Hub()
    seen: list[ev.Event] = []
    hub.subscribe(seen.append)
    options = ReplayOptions((trace,), loop=False, speed=0.0, port=None, protocol=protocol)
    switch = SwitchConfig("pbx", "replay", "acme", replay=options)
    adapter: Any = build_adapter(switch, hub, reactor, routes())
    adapter.run_to_end()
    return adapter, seen


def test_a_replay_of_a_csta_trace_is_a_csta_replay() -> None:
    for protocol in ("auto", "csta"):
        adapter, seen = replayed(protocol, CSTA_TRACE)
        assert isinstance(adapter, CstaReplayAdapter) and adapter.tenant == "acme"
        types = [event.TYPE for event in seen]
        assert types[0] == "link_up" and types[-1] == "link_down"
        for kind in ("delivered", "established", "connection_cleared", "call_cleared"):
            assert kind in types, f"{kind} not among {types}"
        assert {event.switch for event in seen} == {"pbx"}


def test_a_replay_of_an_ami_trace_is_an_ami_replay() -> None:
    adapter, seen = replayed("auto", AMI_TRACE)
    assert type(adapter) is ReplayAdapter
    assert "established" in [event.TYPE for event in seen]


# -- live CSTA links ----------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "xml"), [("csta", False), ("csta-xml", True)])
def test_the_csta_factories_build_a_csta_link(kind: str, xml: bool) -> None:
    settings = CstaSettings("127.0.0.1", 2555, xml=xml, devices=("6001",))
    in_force = routes()
    adapter = build_adapter(
        SwitchConfig("pbx", kind, "acme", csta=settings), Hub(), reactor, in_force
    )
    assert isinstance(adapter, CstaAdapter)
    assert (adapter.name, adapter.tenant, adapter.settings) == ("pbx", "acme", settings)
    assert adapter.routing.router is in_force and adapter.routing.budget == 0.3


class FailingRouter:
    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        return fail(RuntimeError("routing service down"))


def test_the_default_route_in_force_is_answered(caplog: pytest.LogCaptureFixture) -> None:
    """With a ``Routes`` router, a failing router's call gets the default route in force when
    the switch asks, not the one the link was built with (a reload swaps it)."""
    in_force = Routes(FailingRouter(), RouteDecision("support", None, 0, "default"))
    rig = ClockRig(router=in_force, fallback=in_force.fallback)  # as the factory does
    rig.start()
    in_force.fallback = RouteDecision("sales", None, 0, "default")  # what a reload does
    rig.play("route_request")
    (answer,) = [m.argument for m in rig.simulator.requests if m.operation == "routeSelectRequest"]
    assert answer["routeSelected"] == {"deviceIdentifier": ("dialingNumber", "sales")}
    assert rig.of("route_selected")[0].destination == "queue:sales"
    assert "routing service down; answering the fallback queue:sales" in caplog.text
    with pytest.raises(AttributeError, match="set it there"):
        rig.adapter.routing.fallback = RouteDecision("other", None, 0, "default")


# -- ctilink run --------------------------------------------------------------------------
SWITCH = """
[[switch]]
name = "{name}"
kind = "{kind}"
tenant = "acme"
host = "127.0.0.1"
port = {port}
devices = {devices}
acd_groups = {groups}
route_points = {points}
heartbeat_interval = 5
reconnect_initial_delay = 0.1
reconnect_max_delay = 1
"""


def switch_table(name: str, kind: str, port: int) -> str:
    return SWITCH.format(
        name=name,
        kind=kind,
        port=port,
        devices=json.dumps(list(DEVICES)),
        groups=json.dumps(list(GROUPS)),
        points=json.dumps(list(ROUTE_POINTS)),
    )


def simulator(xml: bool) -> tuple[CstaSimulator, Director, int]:
    sim = CstaSimulator(reactor, xml=xml, pace=0.0, answer_delay=0.05)
    populate(sim.switch)
    port = sim.listen(reactor)
    return sim, Director(sim), port


async def http_get(base: tuple[str, int], path: str) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection(*base)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: ctilink\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def call_events(ws: Any, switch: str, until: str = "call_cleared") -> list[dict[str, Any]]:
    """The call events of ``switch`` the socket sends, up to its ``until`` event."""
    out: list[dict[str, Any]] = []

    async def read() -> None:
        while True:
            event = json.loads(await ws.recv())
            if event.get("switch") == switch and "call_id" in event:
                out.append(event)
                if event["type"] == until:
                    return

    await asyncio.wait_for(read(), 20)
    return out


def assert_inbound_answered(events: list[dict[str, Any]]) -> None:
    """The simulator's inbound_answered: 5551234567 calls the pilot, queued in support,
    delivered to and answered by 6001, who hangs up."""
    assert len({event["call_id"] for event in events}) == 1
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    for kind in ("delivered", "established", "connection_cleared", "call_cleared"):
        assert kind in by_type, f"no {kind} among {[e['type'] for e in events]}"
    delivered = by_type["delivered"][-1]
    established = by_type["established"][-1]
    assert (delivered["device"], delivered["calling_number"]) == ("6001", "5551234567")
    assert (established["device"], established["agent"]) == ("6001", "6001")
    assert events[-1]["type"] == "call_cleared"
    order = [event["type"] for event in events]
    assert order.index("delivered") < order.index("established") < order.index("call_cleared")


@aio_test
async def test_run_with_csta_switches_ber_and_xml(tmp_path: Path) -> None:
    ber, ber_director, ber_port = simulator(xml=False)
    xml, xml_director, xml_port = simulator(xml=True)
    config = tmp_path / "ctilink.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n'
        '[event_socket]\nlisten = "tcp:port=0:interface=127.0.0.1"\nauth = "none"\n'
        '[routing]\ndefault_queue = "support"\n'
        + switch_table("pbx-ber", "csta", ber_port)
        + switch_table("pbx-xml", "csta-xml", xml_port)
    )
    script = Path(sys.executable).parent / "ctilink"
    daemon = await asyncio.create_subprocess_exec(
        str(script), "run", "-c", str(config), stderr=asyncio.subprocess.PIPE
    )
    log: list[str] = []

    async def read_log_until(pattern: str) -> re.Match[str]:
        assert daemon.stderr is not None
        while not (found := re.search(pattern, line := (await daemon.stderr.readline()).decode())):
            assert line, f"the daemon ended before {pattern!r}: {''.join(log)}"
            log.append(line)
        log.append(line)
        return found

    try:
        ready = await asyncio.wait_for(read_log_until(READY.pattern), 30)
        base = (ready.group(1), int(ready.group(2)))
        for _ in range(2):  # both links associated, monitoring and resynced
            await asyncio.wait_for(read_log_until(r"switch pbx-(ber|xml): resynced"), 20)
        assert sorted(re.findall(r"switch (pbx-\w+): resynced", "".join(log))) == [
            "pbx-ber",
            "pbx-xml",
        ]
        status, body = await http_get(base, "/readyz")
        assert (status, body["links"]) == (200, {"pbx-ber": "up", "pbx-xml": "up"})
        assert body["ready"] is True
        assert set(DEVICES) | set(GROUPS) <= ber.monitored and set(DEVICES) <= xml.monitored

        async with websockets.connect(f"ws://{base[0]}:{base[1]}/events") as ws:
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot"
            links = {link["switch"]: link["state"] for link in snapshot["links"]}
            assert links == {"pbx-ber": "up", "pbx-xml": "up"}

            playing = Deferred.fromCoroutine(ber_director.play("inbound_answered"))
            assert_inbound_answered(await call_events(ws, "pbx-ber"))
            await deferred_result(playing)

            playing = Deferred.fromCoroutine(xml_director.play("inbound_answered"))
            assert_inbound_answered(await call_events(ws, "pbx-xml"))
            await deferred_result(playing)

            # A route point's call: the switch asks, the routing service in force answers
            # (a ready agent of support, else the queue) and the switch is told that.
            playing = Deferred.fromCoroutine(ber_director.play("route_request"))
            routed = await call_events(ws, "pbx-ber", until="route_selected")
            request = next(event for event in routed if event["type"] == "route_request")
            assert (request["device"], request["calling_number"]) == ("803", "5554446666")
            assert request["call_id"] == routed[-1]["call_id"]
            kind, _, target = routed[-1]["destination"].partition(":")
            assert (kind, target) in {("agent", "6001"), ("agent", "6002"), ("queue", "support")}
            await deferred_result(playing)
            (select,) = [m for m in ber.requests if m.operation == "routeSelectRequest"]
            selected = select.argument["routeSelected"]
            assert selected == {"deviceIdentifier": ("dialingNumber", target)}

        daemon.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(daemon.communicate(), 20)
        log.append(err.decode())
        assert daemon.returncode == 0, "".join(log)
        errors = [line for line in "".join(log).splitlines() if " ERROR " in line]
        assert not errors, errors
        # The links were released as a polite CTI application does.
        assert not ber.connections and not xml.connections
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        await deferred_result(ber.stop())
        await deferred_result(xml.stop())
