"""End to end over TCP: a WebSocket client of the event socket receives the same call for
the inbound ACD story whether the switch is a CSTA switch (ctilink's simulator, spoken to
by ``CstaAdapter`` over a real socket, BER or XML) or Asterisk 22 (the real
``inbound-answered`` trace, replayed through the Asterisk adapter).

What "the same" means (``normalize``), stated so that nothing is hidden:

* kept: for each party (the events' ``device``), its events in order, each with every
  field a client reads (type, connection state, calling/called numbers, queue, agent,
  cause and Q.850 code, queue position and count, last redirection device, call data);
  the device-less events (``call_cleared``) in order; for each agent, its events in order
  with ``state``, ``queue`` and ``reason``; and the call's final shape (the last value of
  every call field, each party's last connection state).
* required on each side, not compared across: every call event carries one and the same
  ctilink ``call_id`` (a stable id, whatever the switch's own ids did).
* ignored: ``seq`` and ``time`` (numbering and clocks of two runs), ``switch`` (the
  switch's name), ``call_id`` and ``switch_call_id`` (ids: a UUID, a Linkedid, a callID),
  ``agent_name`` (Asterisk's queue member name; CSTA carries no agent names), link events,
  and the interleaving of different parties' and agents' events (Asterisk reports the
  agent idle before it reports the hang-up; a CSTA switch after).
* XML only: ``data`` (ctilink's ECMA-323 codec cannot send ``userData`` yet, so the
  simulator sends no call data in XML).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import pytest
import websockets
from twisted.internet import reactor

from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.web import make_site
from tests.aio import aio_test, deferred_result, until
from tests.conftest import TRACES
from tests.cstasim import Rig

IGNORED = frozenset({"seq", "time", "switch", "call_id", "switch_call_id", "agent_name"})
MARKER = "end-of-story"


class Listener:
    """An event socket in front of ``hub`` and one WebSocket client reading it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.socket = EventSocket(hub, reactor)
        tcp: Any = reactor  # IReactorTCP's stub wants a ServerFactory; a Site is a factory
        self.port: Any = tcp.listenTCP(0, make_site(self.socket), interface="127.0.0.1")
        self.url = f"ws://127.0.0.1:{self.port.getHost().port}/events"

    async def read_to_marker(self, ws: Any) -> list[dict[str, Any]]:
        """Everything after the snapshot, up to the marker this publishes now."""
        self.hub.publish(ev.LinkUp(switch=MARKER, time=0.0))
        out: list[dict[str, Any]] = []
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message.get("switch") == MARKER:
                return out
            out.append(message)

    async def stop(self) -> None:
        self.socket.close_all()
        await deferred_result(self.port.stopListening())


def normalize(messages: list[dict[str, Any]], *, data: bool = True) -> dict[str, Any]:
    ignored = IGNORED if data else IGNORED | {"data"}
    calls = [m for m in messages if "call_id" in m]
    agents = [m for m in messages if "agent" in m and "call_id" not in m]
    assert len({m["call_id"] for m in calls}) == 1, "one ctilink call id for the whole call"
    parties: dict[str, list[dict[str, Any]]] = defaultdict(list)
    whole_call: list[dict[str, Any]] = []
    shape: dict[str, Any] = {"connections": {}}
    for message in calls:
        body = {k: v for k, v in message.items() if k not in ignored}
        (parties[message["device"]] if message["device"] else whole_call).append(body)
        for key in ("calling_number", "called_number", "queue", "agent", "data"):
            if message.get(key) and key not in ignored:
                shape[key] = message[key]
        if message["device"] and message["connection_state"]:
            shape["connections"][message["device"]] = message["connection_state"]
    by_agent: dict[str, list[tuple[str, str, str | None, str | None]]] = defaultdict(list)
    for message in agents:
        by_agent[message["agent"]].append(
            (message["type"], message["state"], message.get("queue"), message["reason"])
        )
    return {"parties": dict(parties), "call": whole_call, "shape": shape, "agents": dict(by_agent)}


async def asterisk_story() -> list[dict[str, Any]]:
    hub = Hub()
    listener = Listener(hub)
    replay = ReplayAdapter(
        "asterisk", load_replay([TRACES / "inbound-answered.jsonl"]), hub.publish, clock=reactor
    )
    try:
        async with websockets.connect(listener.url) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            await until(lambda: len(listener.socket.clients) == 1)
            replay.start()
            await deferred_result(replay.finished())
            return await listener.read_to_marker(ws)
    finally:
        await listener.stop()


async def csta_story(use_xml: bool) -> list[dict[str, Any]]:
    hub = Hub()
    listener = Listener(hub)
    rig = Rig(reactor, xml=use_xml, pace=0.05, hub=hub)
    try:
        await rig.up()
        async with websockets.connect(listener.url) as ws:
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot" and snapshot["calls"] == []
            await until(lambda: len(listener.socket.clients) == 1)
            await rig.play("inbound_answered")
            await until(lambda: rig.count("call_cleared") == 1 and rig.count("agent_ready") == 1)
            return await listener.read_to_marker(ws)
    finally:
        await rig.stop()
        await listener.stop()


def test_normalize_keeps_what_matters() -> None:
    story = [
        {"seq": 1, "type": "delivered", "call_id": "a", "device": "800", "connection_state":
         "alerting", "calling_number": "1", "time": "t", "switch_call_id": "x"},
        {"seq": 2, "type": "call_cleared", "call_id": "a", "device": None,
         "connection_state": None, "cause": "normal_clearing"},
        {"seq": 3, "type": "agent_busy", "agent": "6001", "state": "busy", "reason": None,
         "agent_name": "Alice"},
    ]  # fmt: skip
    assert normalize(story) == {
        "parties": {"800": [{"type": "delivered", "device": "800",
                             "connection_state": "alerting", "calling_number": "1"}]},
        "call": [{"type": "call_cleared", "device": None, "connection_state": None,
                  "cause": "normal_clearing"}],
        "shape": {"calling_number": "1", "connections": {"800": "alerting"}},
        "agents": {"6001": [("agent_busy", "busy", None, None)]},
    }  # fmt: skip
    with pytest.raises(AssertionError, match="one ctilink call id"):
        normalize([story[0], {**story[1], "call_id": "b"}])


@pytest.mark.parametrize("use_xml", [False, True], ids=["ber", "xml"])
@aio_test
async def test_a_websocket_client_gets_the_same_call_from_csta_as_from_asterisk(
    use_xml: bool,
) -> None:
    asterisk = normalize(await asterisk_story(), data=not use_xml)
    csta = normalize(await csta_story(use_xml), data=not use_xml)
    assert csta["parties"] == asterisk["parties"]
    assert csta["call"] == asterisk["call"]
    assert csta["shape"] == asterisk["shape"]
    assert csta["agents"] == asterisk["agents"]
    # What the comparison is about, so that an empty match cannot pass.
    assert list(asterisk["parties"]) == ["800", "support", "6001", "5551234567"]
    assert [e["type"] for e in asterisk["parties"]["6001"]] == [
        "delivered", "established", "connection_cleared"]  # fmt: skip
    if not use_xml:
        assert asterisk["shape"]["data"] == {"CUSTOMER_ACCOUNT": "ACME-001"}
