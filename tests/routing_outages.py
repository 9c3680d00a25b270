"""Real database outages for the routing tests: a TCP forwarder to PostgreSQL that a test
switches off and on, and a "black hole" that accepts connections and never answers."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols import portforward

from tests.stores import PG_HOST, PG_PORT, pg_url


class _Forwarder(portforward.ProxyServer):
    def connectionMade(self) -> None:
        self.factory.live.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.live.discard(self)
        super().connectionLost(reason)


class Forwarder:
    """PostgreSQL through a local port: ``down`` aborts every connection and closes it."""

    def __init__(self, database: str) -> None:
        self.factory = portforward.ProxyFactory(PG_HOST, PG_PORT)
        self.factory.protocol = _Forwarder
        self.factory.live = set()
        self.port: IListeningPort = reactor.listenTCP(0, self.factory, interface=PG_HOST)
        self.number = self.port.getHost().port  # type: ignore[attr-defined]
        self.url = pg_url(database, port=self.number)

    async def down(self) -> None:
        await self.port.stopListening()
        for forwarder in list(self.factory.live):
            forwarder.transport.abortConnection()
            if forwarder.peer is not None:
                forwarder.peer.transport.abortConnection()

    async def up(self) -> None:
        self.port = reactor.listenTCP(self.number, self.factory, interface=PG_HOST)

    async def close(self) -> None:
        if self.port.connected:  # type: ignore[attr-defined]
            await self.down()


class _Silent(Protocol):
    def connectionMade(self) -> None:
        self.factory.live.append(self)  # type: ignore[attr-defined]


class BlackHole:
    """A port that accepts TCP connections and never says a word (a hung server)."""

    def __init__(self, database: str) -> None:
        self.factory = Factory.forProtocol(_Silent)
        self.factory.live = []  # type: ignore[attr-defined]
        self.port: IListeningPort = reactor.listenTCP(0, self.factory, interface=PG_HOST)
        self.url = pg_url(database, port=self.port.getHost().port)  # type: ignore[attr-defined]

    async def close(self) -> None:
        for protocol in self.factory.live:  # type: ignore[attr-defined]
            protocol.transport.abortConnection()
        await self.port.stopListening()


def closed_port_url(database: str) -> str:
    """A PostgreSQL URL on a local port where nothing listens (connections refused)."""
    with socket.socket() as probe:
        probe.bind((PG_HOST, 0))
        number = probe.getsockname()[1]
    return pg_url(database, port=number)
