"""One event-socket connection: the handshake check and the way out to the socket.

Theory of operation
-------------------
*Handshake.* autobahn parses the upgrade request and calls ``onConnect``; the factory's
``admit`` checks the token and the filter and returns an ``Admission`` or raises
``AuthError``, which becomes an HTTP 400/401/403 with a short JSON body (never the token).
autobahn's own logger is pinned at info for this protocol: its debug lines dump the
request line and headers, token included.

*The way out.* The factory frames each event once (``text_frame``) and hands the same bytes
to every client whose view sees it, as one chunk per reactor turn (``send_chunk``). A chunk
goes to the transport at once unless the socket is full: each connection registers a push
producer on its transport, so Twisted says when its buffer is full (``paused``); from then
on chunks wait in ``backlog``, written when Twisted resumes the producer. ``behind`` counts
the messages waiting; the factory closes a client too far behind (4408). Messages of the
client's own (snapshot, gap, error) go the same way through ``deliver``, so a client's
messages always leave in the order they were produced.

Frames are written to the transport rather than through autobahn's ``sendMessage``, which
would frame every message again for every client; this is valid because the factory
never negotiates a compression extension, and only while the connection is open.

*One write per client per turn, made cheap.* ``transport.write`` on Twisted's asyncio
reactor costs about four times the ``send()`` itself (it registers the socket for writing,
and unregisters it once written: two ``epoll_ctl`` and asyncio handles, per write). At the
end of a turn the factory asks the reactor which transports still have data waiting
(``IReactorFDSet.getWriters``, once); to a plain TCP transport that has none, a chunk is
sent at once with ``writeSomeData`` (the transport's own non-blocking send), and only what
the socket does not take goes through ``transport.write``, which keeps Twisted's buffering,
ordering and producer pauses for it. TLS transports always go through ``transport.write``.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import txaio
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall

from ctilink.model.wire import dumps
from ctilink.screenpop.auth import AuthError, Token
from ctilink.screenpop.filters import Selection, View

if TYPE_CHECKING:
    from ctilink.screenpop.eventsocket import EventSocket
    from ctilink.screenpop.resume import Catchup

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
ABORT_AFTER = 2.0  # seconds a closed client gets to read its close frame
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}


@dataclass(frozen=True, slots=True)
class Admission:
    """What a handshake was granted."""

    token: Token | None
    selection: Selection
    view: View
    since: int | None


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one final, unmasked text frame (RFC 6455 5.2), what a server sends."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 0x10000:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


class _SocketPressure:
    """IPushProducer on a client's transport: Twisted pauses it when the buffer is full."""

    def __init__(self, client: EventSocketProtocol) -> None:
        self.client = client

    def pauseProducing(self) -> None:
        self.client.paused = True

    def resumeProducing(self) -> None:
        self.client.paused = False
        self.client.write_backlog()

    def stopProducing(self) -> None:
        self.client.paused = True


class EventSocketProtocol(WebSocketServerProtocol):
    factory: EventSocket
    log = txaio.make_logger(level="info")  # type: ignore[attr-defined]  # (see above)

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.backlog: deque[tuple[bytes, int]] = deque()  # (chunk, messages) not written yet
        self.behind = 0  # messages in the backlog
        self.turn_from = 0  # this reactor turn's frames of its view already sent to it
        self.admission: Admission | None = None
        self.refusal: AuthError | None = None
        self.catchup: Catchup | None = None
        self.expiry: IDelayedCall | None = None
        self.subscribes: deque[float] = deque()
        self._waiting: list[Deferred[None]] = []

    @property
    def token(self) -> Token | None:
        return self.admission.token if self.admission is not None else None

    @property
    def view(self) -> View:
        assert self.admission is not None
        return self.admission.view

    # -- the handshake -------------------------------------------------------------------
    def onConnect(self, request: Any) -> None:
        try:
            self.admission = self.factory.admit(request.headers, request.params)
        except AuthError as refusal:
            self.refusal = refusal
            log.info(
                "event socket: refused %s: %s (%d)", self.peer, refusal.message, refusal.status
            )
            raise ConnectionDeny(refusal.status, refusal.message) from None

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Sequence[tuple[str, str]] | None = None
    ) -> None:
        # Refusals are logged once above; autobahn would add a warning for each one.
        self.wasClean = True
        super().failHandshake(reason, code, responseHeaders)

    def sendHttpErrorResponse(
        self, code: int, reason: str, responseHeaders: Sequence[tuple[str, str]] | None = None
    ) -> None:
        """A refused handshake: the status, a short JSON body, no token echoed."""
        refusal = self.refusal
        error = refusal.code if refusal is not None else "bad_request"
        body = json.dumps({"error": error, "message": reason}).encode("utf-8")
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *(responseHeaders or ()),
        ]
        if code == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="ctilink", error="invalid_token"'))
        head = f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        self.sendData(head.encode("utf-8") + body)

    # -- the connection ------------------------------------------------------------------
    def onOpen(self) -> None:
        # twisted.web's HTTP channel registered itself on this transport before the
        # upgrade; the connection is ours now.
        transport: Any = self.transport
        if transport is not None and getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        self.registerProducer(_SocketPressure(self), True)
        # Events are small and must leave at once: no Nagle delay waiting for an ACK.
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.factory.client_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            log.warning("event socket client %s sent binary data; closing (4400)", self.peer)
            self.factory.client_closed(self)
            self.sendClose(CLOSE_BAD_REQUEST, "binary messages are not supported")
            return
        self.factory.client_message(self, payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client_closed(self)
        self._release_waiters()

    @property
    def streaming(self) -> bool:
        return bool(self.state == self.STATE_OPEN)

    # -- the way out ---------------------------------------------------------------------
    def send_json(self, obj: dict[str, Any]) -> None:
        self.deliver([dumps(obj).encode("utf-8")])

    def deliver(self, payloads: Sequence[bytes]) -> None:
        """Send text messages (UTF-8 JSON) of this client's own, after what it was sent."""
        self.factory.settle(self)
        if payloads:
            self.send_chunk(b"".join(text_frame(p) for p in payloads), len(payloads))

    def send_chunk(self, chunk: bytes, count: int, busy: Container[object] | None = None) -> None:
        """Write ``count`` framed messages now, or queue them behind what is waiting.

        ``busy``: the transports the reactor is still writing for, when the caller knows
        (see the module docstring); None: let the transport buffer.
        """
        if not self.streaming:
            return
        if self.paused or self.backlog:
            self.backlog.append((chunk, count))
            self.behind += count
            return
        transport: Any = self.transport
        if busy is not None and _idle_tcp(transport, busy):
            sent = transport.writeSomeData(chunk)  # an int, or the error that closes it
            if isinstance(sent, int):
                if sent >= len(chunk):
                    return
                chunk = chunk[sent:]
        transport.write(chunk)

    def write_backlog(self) -> None:
        write = self.transport.write  # type: ignore[union-attr]
        while self.backlog and not self.paused and self.streaming:
            chunk, count = self.backlog.popleft()
            write(chunk)
            self.behind -= count
        if not self.backlog and not self.paused:
            self._release_waiters()

    def writable(self) -> Deferred[None]:
        """Fires once the socket has taken everything queued (or the client is gone)."""
        if (not self.backlog and not self.paused) or not self.streaming:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def _release_waiters(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    def close_with(self, code: int, reason: str) -> None:
        """Close (code 4xxx) and abort if the client does not answer the close."""
        self.factory.client_closed(self)
        self.backlog.clear()
        self.behind = 0
        self.sendClose(code, reason)
        self.factory.clock.callLater(ABORT_AFTER, _abort_if_connected, self)


def _idle_tcp(transport: Any, busy: Container[object]) -> bool:
    """A plain TCP transport, open, with nothing waiting to be written."""
    return (
        type(transport) is tcp.Server
        and transport not in busy
        and bool(transport.connected)
        and not transport.disconnecting
    )


def _abort_if_connected(client: EventSocketProtocol) -> None:
    if client.state != client.STATE_CLOSED:
        client.dropConnection(abort=True)
