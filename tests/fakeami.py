"""A fake Asterisk for tests: real AMI bytes over a real TCP socket.

Theory of operation
-------------------
``FakeAsterisk`` listens on 127.0.0.1 and speaks the server side of AMI the way Asterisk 22
(AMI 11.0.0) does: the banner on connect, Login (plain or MD5 challenge), per-session event
classes, and the actions ctilink uses, worded as ``main/manager.c``, ``main/manager_bridges.c``
and ``apps/app_queue.c`` word them and shaped as the captures in ``tests/fixtures/pbx-traces/``.

Each TCP connection is a ``FakeConnection``. Its bytes go through ctilink's own ``AmiCodec``
(server side: no banner); every action is appended to ``FakeAsterisk.actions`` and answered
by an override (``on_action``) or by the built-in handler of the dispatch table. As in
``process_message``, only Login, Challenge and Logoff are allowed before login. Events a
handler raises (QueueMemberAdded, SuccessfulAuth...) go out after its response, as from
Asterisk.

This module is the server: connections, sessions (Login, Challenge, Logoff, Ping, Events),
event masks, the dispatch of actions, ``emit()`` and the life cycle. The switch's state is
in ``tests.fakeami_state``: ``FakeState``, a mixin of ``FakeAsterisk``, holds what the list
actions report, plain state that tests edit directly or through the ``add_*`` builders:
``channels`` (Uniqueid -> the CoreShowChannel headers after ActionID), ``bridges``
(BridgeUniqueid -> member Uniqueids) and ``queues`` (name -> ``FakeQueue``), with the list,
queue and call action handlers. Actions that act on calls (Originate, Hangup, Redirect,
transfers) only answer: a test scripts the call's events with ``emit()``. Queue member
actions update ``queues`` and emit the member events, as app_queue does. ``FakeQueue``,
``response`` and ``originate_response`` are re-exported here.

``emit()`` reaches every logged-in session whose event mask covers the event's class (its
``Privilege`` header, added from the event name when missing), as ``process_events`` does.
``drop()`` resets every connection (TCP RST), ``go_silent()`` keeps sockets open but mute and
deaf, ``restart()`` drops and forgets live state. Nothing a client sends makes the fake
raise: malformed input is logged at WARNING and skipped. Delays run on the injected clock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from typing import Final, cast

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure

from ctilink.ami.codec import AmiCodec, serialize
from ctilink.ami.message import AmiMessage
from ctilink.errors import RemoteProtocolError
from ctilink.traces import read_trace
from tests.fakeami_state import (
    _FALSE,
    _TRUE,
    FakeQueue,
    FakeState,
    Headers,
    originate_response,
    response,
)

__all__ = [
    "ALL_EVENTS",
    "CLASSES",
    "FakeAsterisk",
    "FakeConnection",
    "FakeQueue",
    "Handler",
    "Headers",
    "event_class",
    "event_mask",
    "originate_response",
    "response",
    "trace_events",
]

log = logging.getLogger(__name__)

Handler = Callable[["FakeConnection", AmiMessage], "list[AmiMessage] | None"]


# fmt: off
# perms[] of main/manager.c with the EVENT_FLAG_* bits of include/asterisk/manager.h.
CLASSES: Final[dict[str, int]] = {
    "system": 1 << 0, "call": 1 << 1, "log": 1 << 2, "verbose": 1 << 3, "command": 1 << 4,
    "agent": 1 << 5, "user": 1 << 6, "config": 1 << 7, "dtmf": 1 << 8, "reporting": 1 << 9,
    "cdr": 1 << 10, "dialplan": 1 << 11, "originate": 1 << 12, "agi": 1 << 13, "cc": 1 << 15,
    "aoc": 1 << 16, "test": 1 << 17, "security": 1 << 18, "message": 1 << 30,
    "all": 0x7FFFFFFF, "none": 0,
}
ALL_EVENTS: Final = 0x7FFFFFFF
_EVENT_CLASS: Final = {  # for emit() of an event without Privilege; anything else is call
    "FullyBooted": "system", "Reload": "system", "Shutdown": "system",
    "SuccessfulAuth": "security", "InvalidPassword": "security", "InvalidAccountID": "security",
    "ChallengeResponseFailed": "security", "Newexten": "dialplan", "VarSet": "dialplan",
    "UserEvent": "user", "Cdr": "cdr", "AGIExecStart": "agi", "AGIExecEnd": "agi",
}
_LOGIN_EVENTS: Final = frozenset({"FullyBooted", "SuccessfulAuth"})  # per login: not replayed
# fmt: on
_MAX_MESSAGE: Final = 64 * 1024
_UNKNOWN_ACTION: Final = (
    "Invalid/unknown command: {}. Use Action: ListCommands to show available commands."
)


def event_mask(text: str) -> int | None:
    """``strings_to_mask``: digits, on/off words, or a class list; None (keep) when empty."""
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return int(text)
    if text.lower() in _FALSE or text.lower() in _TRUE:
        return ALL_EVENTS if text.lower() in _TRUE else 0
    mask = 0
    for label in text.split(","):  # ast_instring: exact, case-sensitive items
        mask |= CLASSES.get(label, 0)
    return mask


def event_class(message: AmiMessage) -> int:
    """The EVENT_FLAG bits of an event, from its Privilege header (``all`` is no class)."""
    labels = message.get("Privilege", "").split(",")
    return sum(CLASSES.get(label, 0) for label in set(labels) - {"all"})


def trace_events(path: str | os.PathLike[str]) -> list[tuple[float, AmiMessage]]:
    """The switch's own events in a trace: rx events without ActionID, minus per-login ones."""
    out: list[tuple[float, AmiMessage]] = []
    for session in read_trace(path).sessions:
        first_line = session.data("rx").split(b"\r\n", 1)[0]
        codec = AmiCodec(expect_banner=b": " not in first_line)
        for record in (r for r in session.records if r.direction == "rx"):
            codec.receive_data(record.data)
            for item in codec.events():
                if (
                    isinstance(item, AmiMessage)
                    and item.kind == "event"
                    and "ActionID" not in item
                    and item.name not in _LOGIN_EVENTS
                ):
                    out.append(((session.start_time or 0.0) + record.t, item))
    return out


class FakeConnection(Protocol):
    """One AMI session, server side."""

    def __init__(self, server: FakeAsterisk) -> None:
        self.server = server
        self.authenticated = False
        self.username: str | None = None
        self.event_mask = ALL_EVENTS  # the session default (send_events = -1)
        self.challenge = ""
        self.silent = server.silent
        self.close_after_reply = False  # set by Logoff and a failed Login
        self.lost: Deferred[None] = Deferred()
        self._closed = False
        self._codec = AmiCodec(expect_banner=False, max_message_size=_MAX_MESSAGE)

    def connectionMade(self) -> None:
        self.server.connections.append(self)
        if (no_delay := getattr(self.transport, "setTcpNoDelay", None)) is not None:
            no_delay(True)  # as session_do does
        self.write(f"Asterisk Call Manager/{self.server.version}\r\n".encode())

    def dataReceived(self, data: bytes) -> None:
        try:
            if not (self.silent or self._closed):
                self._codec.receive_data(data)
            for item in self._codec.events():
                if self.silent or self._closed:
                    return
                if isinstance(item, AmiMessage):
                    if item.lines:
                        log.warning("fake Asterisk: ignoring non-header lines %r", item.lines)
                    self.server.process(self, item)
        except RemoteProtocolError as exc:  # too big: skip it, go on after its terminator
            log.warning("fake Asterisk: skipping malformed input: %s", exc)
            unread = data[max(len(data) - self._codec.pending, 0) :]
            self._codec = AmiCodec(expect_banner=False, max_message_size=_MAX_MESSAGE)
            if (end := unread.find(b"\r\n\r\n")) >= 0:
                self.dataReceived(unread[end + 4 :])

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        if self in self.server.connections:
            self.server.connections.remove(self)
        self.lost.callback(None)

    def wants(self, category: int) -> bool:
        """Whether this session receives events of ``category`` (process_events' test)."""
        return self.authenticated and (self.event_mask & category) == category

    def send(self, messages: Iterable[AmiMessage]) -> None:
        for message in messages:
            self.write(serialize(message))

    def write(self, data: bytes) -> None:
        if not (self.silent or self._closed) and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """Flush and close (FIN), as after Logoff."""
        if not self._closed and self.transport is not None:
            self._closed = True
            self.transport.loseConnection()

    def abort(self) -> None:
        """Close at once with a TCP RST, nothing flushed: a crash or a cut cable."""
        if self.transport is not None:
            self._closed = True
            cast(ITCPTransport, self.transport).abortConnection()


class FakeAsterisk(FakeState):
    """An Asterisk 22 manager interface on 127.0.0.1 with one user (read = write = all)."""

    def __init__(
        self,
        reactor: IReactorTCP,
        *,
        username: str = "ctilink",
        secret: str = "s3cret",
        version: str = "11.0.0",
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__()  # channels, bridges, queues, originate_ids
        self.reactor = reactor
        self.clock = clock if clock is not None else cast(IReactorTime, reactor)
        self.username, self.secret, self.version = username, secret, version
        self.port = 0
        self.connections: list[FakeConnection] = []
        self.actions: list[AmiMessage] = []  # every action, all connections, in order
        self.logins = 0
        self.silent = False
        self._overrides: dict[str, Handler] = {}
        self._listener: IListeningPort | None = None
        self._sleeps: dict[Deferred[None], IDelayedCall] = {}
        self._stopped = False
        self._after = []
        self._boot = self.clock.seconds()
        self._random = random.Random()
        self._handlers: dict[str, Callable[[FakeConnection, AmiMessage], list[AmiMessage]]] = {
            "login": self._login, "challenge": self._challenge, "logoff": self._logoff,
            "ping": self._ping, "events": self._events, "originate": self._originate,
            "hangup": self._hangup, "redirect": self._redirect, "atxfer": self._atxfer,
            "blindtransfer": self._blind_transfer, "queueadd": self._queue_add,
            "queueremove": self._queue_remove, "queuepause": self._queue_pause,
            "coreshowchannels": self._core_show_channels, "queuestatus": self._queue_status,
            "queuesummary": self._queue_summary, "bridgelist": self._bridge_list,
            "bridgeinfo": self._bridge_info,
        }  # fmt: skip

    # -- life cycle ------------------------------------------------------------------------
    def listen(self) -> int:
        self._stopped = False
        factory = ServerFactory()
        factory.protocol = lambda: FakeConnection(self)
        self._listener = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port = cast(IPv4Address, self._listener.getHost()).port
        return self.port

    def stop(self) -> Deferred[None]:
        """Close the listener and every connection; end emit_raw/play_trace delays early."""
        self._stopped = True
        for wake, call in list(self._sleeps.items()):
            call.cancel()
            wake.callback(None)
        waits = [conn.lost for conn in self.connections]
        self.drop()
        if self._listener is not None and (closed := self._listener.stopListening()) is not None:
            waits.append(closed)
        self._listener = None
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def drop(self) -> None:
        for conn in list(self.connections):
            conn.abort()

    def go_silent(self) -> None:
        """Accept and keep connections but never send a byte or read an action again."""
        self.silent = True
        for conn in self.connections:
            conn.silent = True

    def restart(self) -> None:
        """A crash and restart: drop, forget calls (queue members are config and stay)."""
        self.drop()
        self.silent = False
        self._forget_calls()
        self._boot = self.clock.seconds()

    def on_action(self, name: str, handler: Handler | None) -> None:
        """Answer ``name`` with ``handler`` (its None: never answer); None restores."""
        if handler is None:
            self._overrides.pop(name.lower(), None)
        else:
            self._overrides[name.lower()] = handler

    # -- events ----------------------------------------------------------------------------
    def emit(self, event: AmiMessage | Iterable[tuple[str, str]]) -> None:
        message = event if isinstance(event, AmiMessage) else AmiMessage(event)
        if "Privilege" not in message:
            name = message.name
            label = _EVENT_CLASS.get(
                name, "agent" if name.startswith(("Queue", "Agent")) else "call"
            )
            first, *rest = message.headers
            message = AmiMessage([first, ("Privilege", f"{label},all"), *rest])
        data, category = serialize(message), event_class(message)
        for conn in list(self.connections):
            if conn.wants(category):
                conn.write(data)

    def emit_raw(
        self, data: bytes, *, chunk: int | None = None, delay: float = 0.0
    ) -> Deferred[None]:
        """Exact bytes to every logged-in session; chunks go out on separate reactor turns."""
        targets = [conn for conn in self.connections if conn.authenticated]
        step = chunk or len(data) or 1

        async def run() -> None:
            for start in range(0, len(data), step):
                if start:
                    await self._sleep(delay)
                for conn in [] if self._stopped else targets:
                    conn.write(data[start : start + step])

        return defer.ensureDeferred(run())

    def play_trace(self, path: str | os.PathLike[str], *, speed: float = 0.0) -> Deferred[None]:
        """Emit a trace's events (``trace_events``) at ``speed`` times their pace; 0: at once."""
        events = trace_events(path)

        async def run() -> None:
            begin = self.clock.seconds()  # due times are absolute: no drift on a fake clock
            for t, message in events:
                due = begin + (t - events[0][0]) / speed if speed > 0 else begin
                if due > self.clock.seconds():
                    await self._sleep(due - self.clock.seconds())
                if not self._stopped:
                    self.emit(message)

        return defer.ensureDeferred(run())

    def _sleep(self, delay: float) -> Deferred[None]:
        """A delay on the clock that ``stop()`` ends early (and none after it)."""
        if self._stopped:
            return defer.succeed(None)
        wake: Deferred[None] = Deferred()
        self._sleeps[wake] = self.clock.callLater(max(delay, 0.0), wake.callback, None)
        wake.addCallback(lambda _: self._sleeps.pop(wake, None) and None)
        return wake

    # -- actions ---------------------------------------------------------------------------
    def process(self, conn: FakeConnection, action: AmiMessage) -> None:
        """Record and answer one action (``process_message``), then send the events it raised."""
        self.actions.append(action)
        name = _action_name(action)
        self._after = []
        reply: list[AmiMessage] | None
        if not name:
            log.warning("fake Asterisk: a message without Action: %r", action)
            reply = [response(action, "Error", "Missing action in request")]
        elif not conn.authenticated and name.lower() not in ("login", "challenge", "logoff"):
            reply = [response(action, "Error", "Permission denied")]
        elif (override := self._overrides.get(name.lower())) is not None:
            reply = override(conn, action)
        else:
            reply = self.default_response(conn, action)
        after, self._after = self._after, []
        if reply is not None:
            conn.send(reply)
            for event in after:
                self.emit(event)
            if conn.close_after_reply:
                conn.close()

    def default_response(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        """What Asterisk answers (an override may call this and add to it)."""
        handler = self._handlers.get(_action_name(action).lower())
        if handler is None:
            return [response(action, "Error", _UNKNOWN_ACTION.format(_action_name(action)))]
        return handler(conn, action)

    def _login(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        if conn.authenticated:
            return [response(action, "Success", "Already authenticated")]
        if not self._authenticate(conn, action):
            conn.close_after_reply = True  # action_login returns -1: the session ends
            return [response(action, "Error", "Authentication failed")]
        conn.authenticated, conn.username = True, action.get("Username", "")
        self.logins += 1
        if (mask := event_mask(action.get("Events", ""))) is not None:
            conn.event_mask = mask
        reply = [response(action, "Success", "Authentication accepted")]
        if conn.wants(CLASSES["system"]):
            uptime = str(int(self.clock.seconds() - self._boot))
            reply.append(AmiMessage([("Event", "FullyBooted"), ("Privilege", "system,all"),
                                     ("Uptime", uptime), ("LastReload", uptime),
                                     ("Status", "Fully Booted")]))  # fmt: skip
        self._after.append(self._successful_auth(conn))
        return reply

    def _authenticate(self, conn: FakeConnection, action: AmiMessage) -> bool:
        username = action.get("Username", "")
        if not username or username.lower() != self.username.lower():
            return False
        if action.get("AuthType", "").lower() == "md5":
            expected = hashlib.md5((conn.challenge + self.secret).encode()).hexdigest()
            return bool(conn.challenge) and action.get("Key", "") == expected
        return action.get("Secret", "") == self.secret

    def _successful_auth(self, conn: FakeConnection) -> AmiMessage:
        now = self.clock.seconds()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1000):03d}+0000"
        )
        assert conn.transport is not None
        ends = [cast(IPv4Address, a) for a in (conn.transport.getHost(), conn.transport.getPeer())]
        return AmiMessage([
            ("Event", "SuccessfulAuth"), ("Privilege", "security,all"), ("EventTV", stamp),
            ("Severity", "Informational"), ("Service", "AMI"), ("EventVersion", "1"),
            ("AccountID", conn.username or ""), ("SessionID", f"0x{id(conn):x}"),
            ("LocalAddress", f"IPV4/TCP/{ends[0].host}/{ends[0].port}"),
            ("RemoteAddress", f"IPV4/TCP/{ends[1].host}/{ends[1].port}"),
            ("UsingPassword", "0"), ("SessionTV", stamp),
        ])  # fmt: skip

    def _challenge(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        if action.get("AuthType", "").lower() != "md5":
            return [response(action, "Error", "Must specify AuthType")]
        if not conn.challenge:  # "%ld" of ast_random() into char[10]
            conn.challenge = str(self._random.randrange(1, 2**31))[:9]
        return [response(action, "Success", None, ("Challenge", conn.challenge))]

    def _logoff(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        conn.close_after_reply = True
        return [response(action, "Goodbye", "Thanks for all the fish.")]

    def _ping(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        stamp = f"{self.clock.seconds():.6f}"
        return [response(action, "Success", None, ("Ping", "Pong"), ("Timestamp", stamp))]

    def _events(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        mask = event_mask(action.get("EventMask", ""))
        if mask is None:
            return [response(action, "Error", "Invalid event mask")]
        conn.event_mask = mask
        return [response(action, "Success", None, ("Events", "On" if mask else "Off"))]


# -- message helpers -----------------------------------------------------------------------
def _action_name(action: AmiMessage) -> str:
    """The first non-empty Action header (GET_HEADER_SKIP_EMPTY)."""
    return next((value for key, value in action.headers if key.lower() == "action" and value), "")
