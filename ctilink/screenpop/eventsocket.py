"""The event socket (v1): a WebSocket at ``/events`` streaming model events to clients.

Theory of operation
-------------------
A client that connects receives one ``snapshot`` message (the state tracker's view at
``seq`` N) and then every event with ``seq`` > N, in order, as JSON text messages (the
objects of ``ctilink.model.wire``, described in ``schemas/``). Because the snapshot is
taken and the client registered in the same reactor turn, nothing falls between them and
nothing is sent twice.

Each event is serialized once and the same bytes go to every open client. Backpressure:
each client registers a push producer on its TCP transport, so Twisted tells it when the
socket's send buffer is full; from then on its events wait in a bounded backlog, written
out when the socket drains. A client that falls ``max_backlog`` events behind is closed
with 4408 ("too slow") and aborted shortly after: the daemon's memory stays bounded and
other clients and the switch links never wait for it. A client that is closing gets
nothing more.

Clients have nothing to say in v1. A text message gets an ``error`` reply and the
connection stays open; a binary message closes it with 4400; a message over 64 KiB is
refused by the WebSocket layer. ctilink's close codes are application codes mirroring
HTTP (4400 bad request, 4408 too slow; later 4401 unauthorized, 4403 forbidden), since
WebSocket reserves 1001-2999 for the protocol itself.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IReactorTime

from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.model.wire import dumps, event_to_wire

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400
CLOSE_TOO_SLOW = 4408
MAX_CLIENT_MESSAGE = 64 * 1024
MAX_BACKLOG = 10_000  # events a client may fall behind before it is closed
ABORT_AFTER = 2.0  # seconds a closed slow client gets to read its close frame


class _SocketPressure:
    """IPushProducer on a client's transport: Twisted pauses it when the buffer is full."""

    def __init__(self, client: EventSocketProtocol) -> None:
        self.client = client

    def pauseProducing(self) -> None:
        self.client.paused = True

    def resumeProducing(self) -> None:
        self.client.paused = False
        self.client.drain()

    def stopProducing(self) -> None:
        self.client.paused = True


class EventSocketProtocol(WebSocketServerProtocol):
    factory: EventSocket

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.backlog: deque[bytes] = deque()

    def onOpen(self) -> None:
        # twisted.web's HTTP channel registered itself on this transport before the
        # upgrade; the connection is ours now.
        transport: Any = self.transport
        if transport is not None and getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        self.registerProducer(_SocketPressure(self), True)
        self.factory.client_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            log.warning("event socket client %s sent binary data; closing (4400)", self.peer)
            self.factory.client_closed(self)
            self.sendClose(CLOSE_BAD_REQUEST, "binary messages are not supported")
            return
        log.warning("event socket client %s sent a message; v1 accepts none", self.peer)
        self.send_json(
            {
                "type": "error",
                "code": "unsupported",
                "message": "the event socket v1 does not accept client messages",
            }
        )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client_closed(self)

    @property
    def streaming(self) -> bool:
        return bool(self.state == self.STATE_OPEN)

    def send_json(self, obj: dict[str, Any]) -> None:
        self.deliver(dumps(obj).encode("utf-8"))

    def deliver(self, payload: bytes) -> None:
        """Send now, or queue behind what the socket could not take yet."""
        if self.paused or self.backlog:
            self.backlog.append(payload)
        else:
            self.sendMessage(payload, isBinary=False)

    def drain(self) -> None:
        while self.backlog and not self.paused and self.streaming:
            self.sendMessage(self.backlog.popleft(), isBinary=False)


class EventSocket(WebSocketServerFactory):
    """Factory for ``/events`` connections and the hub consumer that feeds them."""

    protocol = EventSocketProtocol  # type: ignore[assignment]

    def __init__(self, hub: Hub, clock: IReactorTime, *, max_backlog: int = MAX_BACKLOG) -> None:
        super().__init__()
        self.setProtocolOptions(
            autoPingInterval=30,
            autoPingTimeout=30,
            maxMessagePayloadSize=MAX_CLIENT_MESSAGE,
            maxFramePayloadSize=MAX_CLIENT_MESSAGE,
        )
        self.hub = hub
        self.clock = clock
        self.max_backlog = max_backlog
        self.clients: set[EventSocketProtocol] = set()
        self.events_sent = 0
        self.slow_clients_closed = 0
        self._unsubscribe = hub.subscribe(self)

    def client_opened(self, client: EventSocketProtocol) -> None:
        client.send_json(self.hub.tracker.snapshot(self.clock.seconds()))
        self.clients.add(client)
        log.info("event socket client %s connected (%d now)", client.peer, len(self.clients))

    def client_closed(self, client: EventSocketProtocol) -> None:
        if client in self.clients:
            self.clients.discard(client)
            log.info("event socket client %s disconnected (%d now)", client.peer, len(self.clients))

    def __call__(self, event: Event) -> None:
        if not self.clients:
            return
        payload = dumps(event_to_wire(event)).encode("utf-8")
        for client in tuple(self.clients):
            if not client.streaming:
                self.clients.discard(client)
            elif len(client.backlog) >= self.max_backlog:
                self._too_slow(client)
            else:
                client.deliver(payload)
                self.events_sent += 1

    def _too_slow(self, client: EventSocketProtocol) -> None:
        self.clients.discard(client)
        self.slow_clients_closed += 1
        log.warning(
            "event socket client %s is %d events behind; closing it (4408)",
            client.peer,
            len(client.backlog),
        )
        client.backlog.clear()
        client.sendClose(CLOSE_TOO_SLOW, "too slow: fell too far behind the event stream")
        self.clock.callLater(ABORT_AFTER, _abort_if_connected, client)

    def close_all(self, reason: str = "ctilink is stopping") -> None:
        for client in tuple(self.clients):
            client.sendClose(CLOSE_NORMAL, reason)
        self.clients.clear()
        self._unsubscribe()


def _abort_if_connected(client: EventSocketProtocol) -> None:
    if client.state != client.STATE_CLOSED:
        client.dropConnection(abort=True)
