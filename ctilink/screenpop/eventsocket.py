"""The event socket (v1): a WebSocket at ``/events`` streaming model events to clients.

Theory of operation
-------------------
A client that connects receives one ``snapshot`` message (the state tracker's view at
``seq`` N) and then every event with ``seq`` > N, in order, as JSON text messages (the
objects of ``ctilink.model.wire``, described in ``schemas/``). Because the snapshot is
taken and the client registered in the same reactor turn, nothing falls between them and
nothing is sent twice.

Each event is serialized once and the same text goes to every client. The hub calls
``EventSocket.__call__`` for each event; a client whose connection fails is dropped
without affecting the others.

Clients have nothing to say in v1. A text message gets an ``error`` reply and the
connection stays open; a binary message closes it with 4400. ctilink's close codes are
application codes mirroring HTTP (4400 bad request; later 4401 unauthorized, 4403
forbidden, 4408 too slow), since WebSocket reserves 1001-2999 for the protocol itself. Later
versions add authentication, filters and resume (``?since=SEQ``) at ``onConnect``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IReactorTime

from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.model.wire import dumps, event_to_wire

log = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_NORMAL = 1000


class EventSocketProtocol(WebSocketServerProtocol):
    factory: EventSocket

    def onOpen(self) -> None:
        self.factory.client_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        peer = self.peer
        if isBinary:
            log.warning("event socket client %s sent binary data; closing (4400)", peer)
            self.sendClose(CLOSE_BAD_REQUEST, "binary messages are not supported")
            return
        log.warning("event socket client %s sent a message; v1 accepts none", peer)
        self.send_json(
            {
                "type": "error",
                "code": "unsupported",
                "message": "the event socket v1 does not accept client messages",
            }
        )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client_closed(self)

    def send_json(self, obj: dict[str, Any]) -> None:
        self.sendMessage(dumps(obj).encode("utf-8"), isBinary=False)


class EventSocket(WebSocketServerFactory):
    """Factory for ``/events`` connections and the hub consumer that feeds them."""

    protocol = EventSocketProtocol  # type: ignore[assignment]

    def __init__(self, hub: Hub, clock: IReactorTime) -> None:
        super().__init__()
        self.setProtocolOptions(autoPingInterval=30, autoPingTimeout=30)
        self.hub = hub
        self.clock = clock
        self.clients: set[EventSocketProtocol] = set()
        self.events_sent = 0
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
            try:
                client.sendMessage(payload, isBinary=False)
                self.events_sent += 1
            except Exception:
                log.exception("event socket client %s failed; dropping it", client.peer)
                self.clients.discard(client)
                client.dropConnection(abort=True)

    def close_all(self, reason: str = "ctilink is stopping") -> None:
        for client in tuple(self.clients):
            client.sendClose(CLOSE_NORMAL, reason)
        self._unsubscribe()


def parse_client_message(text: str) -> dict[str, Any] | None:
    """A client's JSON object, or None if it is not one (used by later protocol versions)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
