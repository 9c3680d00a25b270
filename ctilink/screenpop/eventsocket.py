"""The event socket: a WebSocket at ``/events`` streaming model events to CRM clients.

Theory of operation
-------------------
*Connecting.* ``wss://host/events?access_token=TOKEN`` (or ``Authorization: Bearer TOKEN``)
with optional filters ``types=delivered,established``, ``agents=6001,6002``,
``queues=support``, ``devices=...``, ``calls=...`` and ``since=SEQ``. The handshake is
checked before the upgrade (autobahn's ``onConnect``): no, unknown or expired token → HTTP
401; a filter the token may not ask for → 403; a malformed request → 400; each with a JSON
body ``{"error": code, "message": ...}``. The token is never logged (this protocol's
autobahn logger is pinned at info: its debug handshake dumps would show it).

*What a client receives.* Without ``since``: one ``snapshot`` (the state tracker's view at
``seq`` N, filtered to what the client may and asked to see) and then every event with
``seq`` > N it sees, in order, as JSON text messages (``ctilink.model.wire``, ``schemas/``).
Snapshot and registration happen in the same reactor turn, so nothing falls between them.
With ``since``: every event after SEQ it sees, read back from the event log, then the live
ones, without snapshot; or ``gap`` + snapshot when the log no longer has them
(``ctilink.screenpop.resume``). Who sees what: ``ctilink.screenpop.filters``; tokens:
``ctilink.screenpop.auth``.

*Client messages.* ``{"type": "subscribe", "types": [...], "agents": [...], ...}`` replaces
the filter and is answered by a fresh snapshot (absent keys: no restriction); a filter the
token may not ask for gets ``error`` ``forbidden`` and the old filter stays. At most
``SUBSCRIBES_PER_MINUTE``. Any other text gets an ``error``; binary data closes with 4400;
a message over 64 KiB is refused by the WebSocket layer.

*Tokens change.* A token's expiry closes its clients with 4401 when it comes;
``replace_tokens`` (a SIGHUP reload) closes the clients whose token is gone or expired
(4401) or whose filter the new token no longer allows (4403) and keeps the others.

*Fan-out.* Clients are grouped by ``View`` (token and filter); an event is checked once
per view, serialized and framed once, and queued once per view for this reactor turn. At
the end of the turn each view's frames are joined once and written to each of its
clients in one write (``ctilink.screenpop.connection``): the cost per event does not grow
with the number of clients, and a client costs one write per turn, however busy.

*Backpressure.* A client whose socket is full keeps its chunks in a backlog; one
``max_backlog`` messages behind is closed with 4408 and aborted shortly after: memory stays
bounded and other clients and the switch links never wait for it.

Close codes mirror HTTP: 4400 bad request, 4401 unauthorized, 4403 forbidden, 4408 too
slow (WebSocket reserves 1001-2999 for the protocol itself).

The daemon (``ctilink.daemon``) builds it from ``[event_socket]`` (``auth``,
``tokens_file``, ``max_backlog``; TLS through an ``ssl:`` listen endpoint) and hands it a
new token store on reload (``replace_tokens``). Resume history is the event log's
retention (an hour by default; at least 600 s for the 10 minutes clients are promised).
Counters for ``ctilink.metrics``: ``clients``, ``events_sent``, ``slow_clients_closed``,
``resumed``, ``gaps``, ``refused`` (by status).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime

from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.model.wire import event_wire
from ctilink.screenpop.auth import AuthError, TokenStore, bad_request, presented_secret
from ctilink.screenpop.connection import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_NORMAL,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    Admission,
    EventSocketProtocol,
    text_frame,
)
from ctilink.screenpop.filters import Audiences, Selection, View, make_view, snapshot_for
from ctilink.screenpop.resume import Catchup, EventSource, PastLoader

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_NORMAL",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED",
    "EventSocket",
    "EventSocketProtocol",
]

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE = 64 * 1024
MAX_BACKLOG = 10_000  # messages a client may fall behind before it is closed
FLUSH_INTERVAL = 0.002  # seconds: the shortest time between two writes to the clients
SUBSCRIBES_PER_MINUTE = 30
QUERY_PARAMETERS = frozenset(
    {"access_token", "since", "types", "agents", "queues", "devices", "calls"}
)
Handler = Callable[[EventSocketProtocol, dict[str, Any]], None]


class EventSocket(WebSocketServerFactory):
    """Factory for ``/events`` connections and the hub consumer that feeds them.

    ``tokens``: the token store (None: authentication off, every client sees every
    tenant; for the demo and loopback-only setups). ``tenants``: switch name → tenant
    (an event of a switch not in it reaches no authenticated client). ``event_log``: the
    log to resume from (None: ``since`` older than now gets a gap). ``history``: how long
    call parties are remembered for filtering resumed events (the log's retention).
    """

    protocol = EventSocketProtocol  # type: ignore[assignment]

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        *,
        tokens: TokenStore | None = None,
        tenants: Mapping[str, str] | None = None,
        event_log: EventSource | None = None,
        max_backlog: int = MAX_BACKLOG,
        history: float = 3600.0,
        resume_page: int = 1000,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        super().__init__()
        self.setProtocolOptions(
            autoPingInterval=30,
            autoPingTimeout=30,
            maxMessagePayloadSize=MAX_CLIENT_MESSAGE,
            maxFramePayloadSize=MAX_CLIENT_MESSAGE,
            perMessageCompressionAccept=lambda offers: None,  # frames are prebuilt: no deflate
        )
        self.hub = hub
        self.clock = clock
        self.tokens = tokens
        self.source = event_log
        self.max_backlog = max_backlog
        self.resume_page = resume_page
        self.audiences = Audiences(tenants, history)
        self.audiences.live.seed(hub.tracker)
        self.past = (
            PastLoader(event_log, self.audiences, clock, history) if event_log is not None else None
        )
        self.clients: set[EventSocketProtocol] = set()  # every open client
        self.views: dict[View, set[EventSocketProtocol]] = {}  # the live ones, by view
        self.resuming: set[EventSocketProtocol] = set()  # the ones catching up
        self._turn: dict[View, list[bytes]] = {}  # frames queued this reactor turn
        self._flush: IDelayedCall | None = None
        self.flush_interval = flush_interval
        self._flushed_at = float("-inf")  # when the last turn was written
        self.events_sent = 0
        self.slow_clients_closed = 0
        self.resumed = 0  # clients caught up from the event log
        self.gaps = 0  # resumes answered with gap + snapshot
        self.refused: Counter[int] = Counter()  # handshakes refused, by HTTP status
        # Client message type -> handler(client, message); others may add theirs (e.g. an
        # acknowledgement of a screen pop).
        self.handlers: dict[str, Handler] = {"subscribe": self._subscribe}
        self._unsubscribe = hub.subscribe(self)
        if tokens is None:
            log.warning("event socket: authentication is off; every client sees everything")

    # -- admission -----------------------------------------------------------------------
    def admit(self, headers: Mapping[str, str], params: Mapping[str, Sequence[str]]) -> Admission:
        """Check a handshake; ``AuthError`` (400/401/403) refuses it."""
        try:
            return self._admit(headers, params)
        except AuthError as refusal:
            self.refused[refusal.status] += 1
            raise

    def _admit(self, headers: Mapping[str, str], params: Mapping[str, Sequence[str]]) -> Admission:
        unknown = sorted(set(params) - QUERY_PARAMETERS)
        if unknown:
            raise bad_request(f"unknown query parameter {unknown[0]!r}")
        secret = presented_secret(headers, params)
        token = None
        if self.tokens is not None:
            token = self.tokens.authenticate(secret, self.clock.seconds())
        selection = Selection.from_query(params)
        try:
            view = make_view(token, selection)
        except AuthError as refusal:
            assert token is not None
            refusal.message += f" (token {token.id})"
            raise
        return Admission(token, selection, view, _since(params.get("since")))

    def client_opened(self, client: EventSocketProtocol) -> None:
        admission = client.admission
        assert admission is not None
        self.clients.add(client)
        self._schedule_expiry(client)
        who = f"token {admission.token.id}" if admission.token is not None else "no token"
        log.info(
            "event socket client %s connected (%s%s; %d now)",
            client.peer,
            who,
            "" if admission.since is None else f", resuming after seq {admission.since}",
            len(self.clients),
        )
        if admission.since is None:
            self._go_live(client)
            client.send_json(self._snapshot(client.view))
        else:
            Deferred.fromCoroutine(self._resume(client, admission.since))

    def client_closed(self, client: EventSocketProtocol) -> None:
        if client.expiry is not None and client.expiry.active():
            client.expiry.cancel()
        client.expiry = None
        self._stop_catchup(client)
        self._leave_view(client)
        if client in self.clients:
            self.clients.discard(client)
            log.info("event socket client %s disconnected (%d now)", client.peer, len(self.clients))

    # -- view groups and the reactor turn ------------------------------------------------
    def _go_live(self, client: EventSocketProtocol) -> None:
        """Stream live events to ``client`` from the next one on."""
        view = client.view
        client.turn_from = len(self._turn.get(view, ()))
        self.views.setdefault(view, set()).add(client)

    def _leave_view(self, client: EventSocketProtocol) -> None:
        if client.admission is None:
            return
        members = self.views.get(client.view)
        if members is not None and client in members:
            members.discard(client)
            if not members:
                del self.views[client.view]

    def settle(self, client: EventSocketProtocol) -> None:
        """Send ``client`` this turn's frames of its view now, before a message of its own."""
        if client.admission is None or client not in self.views.get(client.view, ()):
            return
        frames = self._turn.get(client.view, [])
        if client.turn_from < len(frames):
            pending = frames[client.turn_from :]
            client.turn_from = len(frames)
            self._send_turn(client, b"".join(pending), len(pending))

    def _send_turn(
        self,
        client: EventSocketProtocol,
        chunk: bytes,
        count: int,
        busy: Container[object] | None = None,
    ) -> None:
        if client.behind + count > self.max_backlog:
            self._too_slow(client)
        else:
            client.send_chunk(chunk, count, busy)
            self.events_sent += count

    def _write_turn(self) -> None:
        """The end of a reactor turn: each view's frames, joined once, to its clients."""
        self._flush = None
        self._flushed_at = self.clock.seconds()
        turn, self._turn = self._turn, {}
        # Transports Twisted is still writing for (the others may be written to at once).
        busy = set(self.clock.getWriters()) if IReactorFDSet.providedBy(self.clock) else None
        for view, frames in turn.items():
            shared = b""
            for client in tuple(self.views.get(view, ())):
                start, client.turn_from = client.turn_from, 0
                if start >= len(frames):
                    continue
                if start:
                    chunk = b"".join(frames[start:])
                    self._send_turn(client, chunk, len(frames) - start, busy)
                    continue
                shared = shared or b"".join(frames)
                self._send_turn(client, shared, len(frames), busy)

    # -- events --------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        wire, text = event_wire(event)
        audience = self.audiences.observe(wire, self.clock.seconds())
        frame: bytes | None = None
        for view in self.views:
            if view.sees(audience):
                if frame is None:
                    frame = text_frame(text.encode("utf-8"))
                queued = self._turn.get(view)
                if queued is None:
                    queued = self._turn[view] = []
                queued.append(frame)
        for client in self.resuming:
            catchup = client.catchup
            if catchup is not None and client.view.sees(audience):
                if frame is None:
                    frame = text_frame(text.encode("utf-8"))
                catchup.offer(frame)
        if self._turn and self._flush is None:
            # At the end of this reactor turn; under load at most one turn per
            # flush_interval, so that a burst costs each client one write, not one per event.
            wait = self._flushed_at + self.flush_interval - self.clock.seconds()
            self._flush = self.clock.callLater(max(0.0, wait), self._write_turn)

    def _snapshot(self, view: View) -> dict[str, Any]:
        return snapshot_for(self.hub.tracker, view, self.audiences, self.clock.seconds())

    def _too_slow(self, client: EventSocketProtocol) -> None:
        self.slow_clients_closed += 1
        log.warning(
            "event socket client %s is %d messages behind; closing it (4408)",
            client.peer,
            client.behind,
        )
        client.close_with(CLOSE_TOO_SLOW, "too slow: fell too far behind the event stream")

    # -- client messages -----------------------------------------------------------------
    def client_message(self, client: EventSocketProtocol, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            log.info("event socket client %s sent a message that is not a JSON object "
                     "with a type", client.peer)  # fmt: skip
            client.send_json(_error("bad_request", "expected a JSON object with a 'type'"))
        elif message["type"] not in self.handlers:
            log.info("event socket client %s sent an unsupported message", client.peer)
            client.send_json(_error("unsupported", f"unknown message type {message['type']!r}"))
        else:
            self.handlers[message["type"]](client, message)

    def _subscribe(self, client: EventSocketProtocol, message: dict[str, Any]) -> None:
        now = self.clock.seconds()
        while client.subscribes and client.subscribes[0] <= now - 60:
            client.subscribes.popleft()
        if len(client.subscribes) >= SUBSCRIBES_PER_MINUTE:
            client.send_json(_error("rate_limited", "too many subscribe messages; wait"))
            return
        client.subscribes.append(now)
        admission = client.admission
        assert admission is not None
        try:
            selection = Selection.from_message(message)
            view = make_view(admission.token, selection)
        except AuthError as refusal:
            client.send_json(_error(refusal.code, refusal.message))
            return
        # What the old filter queued goes first; a fresh snapshot replaces any replay.
        self.settle(client)
        self._stop_catchup(client)
        self._leave_view(client)
        client.admission = Admission(admission.token, selection, view, None)
        self._go_live(client)
        client.send_json(self._snapshot(view))

    # -- tokens --------------------------------------------------------------------------
    def replace_tokens(self, tokens: TokenStore) -> None:
        """Use ``tokens`` from now on (a reload); connected clients are re-checked."""
        self.tokens = tokens
        now = self.clock.seconds()
        for client in tuple(self.clients):
            admission = client.admission
            assert admission is not None
            old = admission.token
            new = tokens.get(old.digest) if old is not None else None
            if new is None or new.expired(now):
                name = old.id if old is not None else "none"
                log.info("event socket client %s: token %s revoked; closing (4401)",
                         client.peer, name)  # fmt: skip
                client.close_with(CLOSE_UNAUTHORIZED, "token revoked")
                continue
            try:
                view = make_view(new, admission.selection)
            except AuthError:
                log.info("event socket client %s: token %s no longer allows its filter; "
                         "closing (4403)", client.peer, new.id)  # fmt: skip
                client.close_with(CLOSE_FORBIDDEN, "filter no longer allowed for this token")
                continue
            live = client.catchup is None
            if live:
                self.settle(client)
                self._leave_view(client)
            client.admission = Admission(new, admission.selection, view, admission.since)
            if live:
                self._go_live(client)
            self._schedule_expiry(client)

    def _schedule_expiry(self, client: EventSocketProtocol) -> None:
        if client.expiry is not None and client.expiry.active():
            client.expiry.cancel()
        client.expiry = None
        token = client.token
        if token is not None and token.expires is not None:
            delay = max(0.0, token.expires - self.clock.seconds())
            client.expiry = self.clock.callLater(delay, self._expired, client)

    def _expired(self, client: EventSocketProtocol) -> None:
        client.expiry = None
        token = client.token
        log.info("event socket client %s: token %s expired; closing (4401)",
                 client.peer, token.id if token else "?")  # fmt: skip
        client.close_with(CLOSE_UNAUTHORIZED, "token expired")

    # -- resuming ------------------------------------------------------------------------
    async def _resume(self, client: EventSocketProtocol, since: int) -> None:
        catchup = client.catchup = Catchup(
            client,
            since,
            source=self.source,
            audiences=self.audiences,
            last_seq=lambda: self.hub.last_seq,
            max_held=self.max_backlog,
            page=self.resume_page,
        )
        self.resuming.add(client)
        if self.past is not None and self.past.needed(since, client.view, self.hub.last_seq + 1):
            await self.past.load(self.hub.last_seq + 1)

        def go_live(held: list[bytes]) -> None:
            self._stop_catchup(client)
            if held:
                client.send_chunk(b"".join(held), len(held))
            self._go_live(client)
            self.events_sent += len(held) + catchup.replayed
            self.resumed += 1

        gap = await catchup.run(go_live)
        if gap is not None and client.catchup is catchup and client.streaming:
            self._stop_catchup(client)
            self.gaps += 1
            log.info("event socket client %s: cannot resume after seq %d (%s, oldest %d); "
                     "sending a snapshot", client.peer, since, gap.reason, gap.oldest)  # fmt: skip
            self._go_live(client)
            client.send_json(gap.to_wire())
            client.send_json(self._snapshot(client.view))

    def _stop_catchup(self, client: EventSocketProtocol) -> None:
        if client.catchup is not None:
            client.catchup.cancel()
            client.catchup = None
        self.resuming.discard(client)

    def close_all(self, reason: str = "ctilink is stopping") -> None:
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
            self._write_turn()
        for client in tuple(self.clients):
            self.client_closed(client)
            client.sendClose(CLOSE_NORMAL, reason)
        self.clients.clear()
        self._unsubscribe()


def _since(values: Sequence[str] | None) -> int | None:
    if values is None:
        return None
    if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 19:
        raise bad_request("since must be one event seq (a non-negative integer)")
    return int(values[0])


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
