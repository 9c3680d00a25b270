"""The event socket over real TCP with real WebSocket clients (the `websockets` library),
authentication off (as in the demo); tokens, filters and resume have their own files."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
import websockets
from twisted.internet import reactor

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.web import make_site
from tests._schemas import validate_wire
from tests.aio import aio_test, until


def delivered(call_id: str, device: str = "6001") -> ev.Delivered:
    return ev.Delivered(
        switch="pbx",
        time=1795355600.0,
        call_id=call_id,
        device=device,
        calling_number="5551234567",
        called_number="800",
        connection_state=LCS.ALERTING,
    )


class Server:
    def __init__(self) -> None:
        self.hub = Hub()
        self.socket = EventSocket(self.hub, reactor)
        self.port: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port.getHost().port}/events"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.port = reactor.listenTCP(0, make_site(srv.socket), interface="127.0.0.1")
    yield srv
    srv.socket.close_all()
    pytest_twisted.blockon(srv.port.stopListening())


async def recv_json(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=5))  # type: ignore[no-any-return]


@aio_test
async def test_snapshot_then_live_events_in_order(server: Server) -> None:
    server.hub.publish(delivered("c1"))  # before the client: must be in the snapshot
    async with websockets.connect(server.url) as ws:
        snapshot = await recv_json(ws)
        validate_wire(snapshot)
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == 1
        assert [c["call_id"] for c in snapshot["calls"]] == ["c1"]
        await until(lambda: len(server.socket.clients) == 1)
        for index in range(2, 6):
            server.hub.publish(delivered(f"c{index}"))
        received = [await recv_json(ws) for _ in range(4)]
        assert [e["seq"] for e in received] == [2, 3, 4, 5]
        assert [e["call_id"] for e in received] == ["c2", "c3", "c4", "c5"]
        for event in received:
            validate_wire(event)


@aio_test
async def test_two_clients_each_get_every_event(server: Server) -> None:
    async with websockets.connect(server.url) as one, websockets.connect(server.url) as two:
        await recv_json(one)
        await recv_json(two)
        await until(lambda: len(server.socket.clients) == 2)
        server.hub.publish(delivered("c1"))
        assert (await recv_json(one))["call_id"] == (await recv_json(two))["call_id"] == "c1"


@aio_test
async def test_client_garbage_gets_an_error_and_the_stream_goes_on(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ctilink.screenpop")
    async with websockets.connect(server.url) as ws:
        await recv_json(ws)
        for garbage, code in (
            ("{not json", "bad_request"),
            ("[1, 2]", "bad_request"),
            ('{"type": "hello"}', "unsupported"),
        ):
            await ws.send(garbage)
            error = await recv_json(ws)
            validate_wire(error)
            assert (error["type"], error["code"]) == ("error", code)
        server.hub.publish(delivered("c1"))
        assert (await recv_json(ws))["call_id"] == "c1"
    assert any("not a JSON object" in r.getMessage() for r in caplog.records)
    assert any("unsupported message" in r.getMessage() for r in caplog.records)


@aio_test
async def test_binary_message_closes_with_4400_others_unaffected(server: Server) -> None:
    async with websockets.connect(server.url) as bad, websockets.connect(server.url) as good:
        await recv_json(bad)
        await recv_json(good)
        await bad.send(b"\x00\x01")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(bad.recv(), timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        await until(lambda: len(server.socket.clients) == 1)
        server.hub.publish(delivered("c1"))
        assert (await recv_json(good))["call_id"] == "c1"


@aio_test
async def test_unknown_path_is_404(server: Server) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(server.url.replace("/events", "/nope")):
            pass
    assert refused.value.response.status_code == 404


def _stalled_client(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


@aio_test
async def test_a_client_that_stops_reading_is_closed_and_others_carry_on(
    server: Server,
) -> None:
    server.socket.max_backlog = 50
    stalled = _stalled_client(server.url)
    try:
        async with websockets.connect(server.url, max_size=None) as reader:
            await recv_json(reader)
            await until(lambda: len(server.socket.clients) == 2)

            async def read_all() -> list[str]:
                return [(await recv_json(reader))["call_id"] for _ in range(600)]

            reading = asyncio.ensure_future(read_all())
            bulky = {"NOTES": "x" * 20_000}
            for index in range(600):
                server.hub.publish(replace(delivered(f"c{index}"), data=bulky))
                if index % 10 == 9:
                    await asyncio.sleep(0.005)  # a steady stream, not one burst
            assert await reading == [f"c{index}" for index in range(600)]
        assert server.socket.slow_clients_closed == 1
        assert len(server.socket.clients) == 0
    finally:
        stalled.close()


@aio_test
async def test_publishing_while_a_client_closes_logs_no_error(server: Server) -> None:
    async with websockets.connect(server.url) as ws:
        await recv_json(ws)
        await until(lambda: len(server.socket.clients) == 1)
        (client,) = server.socket.clients
        client.sendClose(1000, "bye")
        server.hub.publish(delivered("c1"))  # the client is closing: nothing is sent
    await until(lambda: len(server.socket.clients) == 0)


@aio_test
async def test_an_oversized_client_message_is_refused(server: Server) -> None:
    async with websockets.connect(server.url, max_size=None) as ws:
        await recv_json(ws)
        await ws.send("x" * (200 * 1024))
        with pytest.raises(websockets.ConnectionClosed):  # autobahn fails the connection
            await asyncio.wait_for(ws.recv(), timeout=5)
    await until(lambda: len(server.socket.clients) == 0)


@aio_test
async def test_messages_of_every_frame_length_arrive_intact(server: Server) -> None:
    # Frames are built once per event (7-bit, 16-bit and 64-bit payload lengths).
    async with websockets.connect(server.url, max_size=None) as ws:
        await recv_json(ws)
        await until(lambda: len(server.socket.clients) == 1)
        sizes = [0, 10, 200, 70_000]
        for index, size in enumerate(sizes):
            server.hub.publish(replace(delivered(f"c{index}"), data={"NOTES": "é" * size}))
        for index, size in enumerate(sizes):
            event = await recv_json(ws)
            assert (event["call_id"], len(event.get("data", {}).get("NOTES", ""))) == (
                f"c{index}",
                size,
            )


@aio_test
async def test_under_load_writes_are_spaced_by_the_flush_interval(server: Server) -> None:
    server.socket.flush_interval = 0.3
    async with websockets.connect(server.url) as ws:
        await recv_json(ws)
        await until(lambda: len(server.socket.clients) == 1)
        loop = asyncio.get_running_loop()
        server.hub.publish(delivered("c1"))  # nothing written lately: at the end of the turn
        assert (await recv_json(ws))["call_id"] == "c1"
        first = loop.time()
        server.hub.publish(delivered("c2"))
        server.hub.publish(delivered("c3"))
        assert [(await recv_json(ws))["call_id"] for _ in range(2)] == ["c2", "c3"]
        # c2 and c3 waited out the interval after the write of c1.
        assert loop.time() - first >= 0.25
        sent = server.socket.events_sent
        await asyncio.sleep(0.35)  # a quiet moment: the next event is written at once
        server.hub.publish(delivered("c4"))
        started = loop.time()
        assert (await recv_json(ws))["call_id"] == "c4"
        assert loop.time() - started < 0.25 and server.socket.events_sent == sent + 1
