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

What the list actions report is plain state that tests edit directly or through the
``add_*`` builders: ``channels`` (Uniqueid -> the CoreShowChannel headers after ActionID),
``bridges`` (BridgeUniqueid -> member Uniqueids) and ``queues`` (name -> ``FakeQueue``).
Actions that act on calls (Originate, Hangup, Redirect, transfers) only answer: a test
scripts the call's events with ``emit()``. Queue member actions update ``queues`` and emit
the member events, as app_queue does.

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
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]
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
_TRUE: Final = frozenset({"yes", "true", "y", "t", "1", "on"})  # ast_true
_FALSE: Final = frozenset({"no", "false", "n", "f", "0", "off"})  # ast_false
_EVENT_CLASS: Final = {  # for emit() of an event without Privilege; anything else is call
    "FullyBooted": "system", "Reload": "system", "Shutdown": "system",
    "SuccessfulAuth": "security", "InvalidPassword": "security", "InvalidAccountID": "security",
    "ChallengeResponseFailed": "security", "Newexten": "dialplan", "VarSet": "dialplan",
    "UserEvent": "user", "Cdr": "cdr", "AGIExecStart": "agi", "AGIExecEnd": "agi",
}
_LOGIN_EVENTS: Final = frozenset({"FullyBooted", "SuccessfulAuth"})  # per login: not replayed
_STATE_DESC: Final = ("Down", "Rsrvd", "OffHook", "Dialing", "Ring", "Ringing", "Up", "Busy",
                      "Dialing Offhook", "Pre-ring")
_CORESHOW_ONLY: Final = ("Application", "ApplicationData", "Duration", "BridgeId")
_PARAMS: Final = (
    ("Max", "0"), ("Strategy", "ringall"), ("Calls", "0"), ("Holdtime", "0"), ("TalkTime", "0"),
    ("Completed", "0"), ("Abandoned", "0"), ("ServiceLevel", "0"), ("ServicelevelPerf", "0.0"),
    ("ServicelevelPerf2", "0.0"), ("Weight", "0"),
)
# fmt: on
_BLOB_NAMES: Final = {"Name": "MemberName", "Location": "Interface"}  # QueueMember -> events
_C_INT = re.compile(r"\s*[+-]?\d+")
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


def response(
    action: AmiMessage, status: str = "Success", message: str | None = None, *extra: tuple[str, str]
) -> AmiMessage:
    """``astman_send_response_full``: Response, ActionID when the action had one, Message."""
    text = [("Message", message)] if message is not None else []
    return AmiMessage([("Response", status), *_action_id(action), *text, *extra])


def originate_response(
    originate: AmiMessage,
    *,
    uniqueid: str,
    channel: str = "",
    status: str = "Success",
    reason: int = 4,
) -> AmiMessage:
    """The OriginateResponse an Async Originate ends with (``fast_originate``; 4 = answered)."""
    name, number = _caller_id(originate.get("CallerID", ""))
    target = ("Application", "Data") if originate.get("Application") else ("Context", "Exten")
    return AmiMessage([
        ("Event", "OriginateResponse"), ("Privilege", "call,all"), *_action_id(originate),
        ("Response", status), ("Channel", channel or originate.get("Channel", "")),
        *[(key, originate.get(key, "")) for key in target], ("Reason", str(reason)),
        ("Uniqueid", uniqueid), ("CallerIDNum", number or "<unknown>"),
        ("CallerIDName", name or "<unknown>"),
    ])  # fmt: skip


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


@dataclass
class FakeQueue:
    """One queue as QueueStatus lists it; ``Calls`` in params is always the live entry count."""

    params: Headers  # QueueParams after Queue
    members: list[Headers] = field(default_factory=list)  # QueueMember after Queue (+Ringinuse)
    entries: list[Headers] = field(default_factory=list)  # QueueEntry after Queue and Position


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


class FakeAsterisk:
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
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else cast(IReactorTime, reactor)
        self.username, self.secret, self.version = username, secret, version
        self.port = 0
        self.connections: list[FakeConnection] = []
        self.actions: list[AmiMessage] = []  # every action, all connections, in order
        self.logins = 0
        self.channels: dict[str, Headers] = {}
        self.bridges: dict[str, list[str]] = {}
        self.queues: dict[str, FakeQueue] = {}
        self.originate_ids: dict[str, AmiMessage] = {}  # ChannelId -> its Originate
        self.silent = False
        self._overrides: dict[str, Handler] = {}
        self._listener: IListeningPort | None = None
        self._sleeps: dict[Deferred[None], IDelayedCall] = {}
        self._stopped = False
        self._after: list[AmiMessage] = []
        self._boot = self.clock.seconds()
        self._next_uid = 0
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
        self.channels.clear()
        self.bridges.clear()
        self.originate_ids.clear()
        for queue in self.queues.values():
            queue.entries.clear()
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

    # -- state builders ------------------------------------------------------------------
    def add_channel(
        self,
        channel: str,
        *,
        uniqueid: str | None = None,
        linkedid: str | None = None,
        state: int = 6,
        caller_num: str = "<unknown>",
        caller_name: str = "<unknown>",
        connected_num: str = "<unknown>",
        connected_name: str = "<unknown>",
        language: str = "en",
        account_code: str = "",
        context: str = "default",
        exten: str = "s",
        priority: int = 1,
        application: str = "",
        application_data: str = "",
        duration: str = "00:00:00",
        bridge_id: str = "",
    ) -> str:
        """A channel as CoreShowChannel lists it (an answered one by default); its Uniqueid."""
        if uniqueid is None:
            self._next_uid += 1
            uniqueid = f"{int(self._boot)}.{self._next_uid}"
        desc = _STATE_DESC[state] if 0 <= state < len(_STATE_DESC) else f"Unknown ({state})"
        self.channels[uniqueid] = [
            ("Channel", channel), ("ChannelState", str(state)), ("ChannelStateDesc", desc),
            ("CallerIDNum", caller_num), ("CallerIDName", caller_name),
            ("ConnectedLineNum", connected_num), ("ConnectedLineName", connected_name),
            ("Language", language), ("AccountCode", account_code), ("Context", context),
            ("Exten", exten), ("Priority", str(priority)), ("Uniqueid", uniqueid),
            ("Linkedid", linkedid or uniqueid), ("Application", application),
            ("ApplicationData", application_data), ("Duration", duration), ("BridgeId", bridge_id),
        ]  # fmt: skip
        if bridge_id:
            self.bridges.setdefault(bridge_id, []).append(uniqueid)
        return uniqueid

    def remove_channel(self, uniqueid: str) -> None:
        """Forget a channel, its bridge membership and its queue entries."""
        self.channels.pop(uniqueid, None)
        for members in self.bridges.values():
            if uniqueid in members:
                members.remove(uniqueid)
        for queue in self.queues.values():
            queue.entries = [e for e in queue.entries if _get(e, "Uniqueid") != uniqueid]

    def add_bridge(self, *uniqueids: str, bridge_id: str | None = None) -> str:
        """A basic bridge holding ``uniqueids`` (their BridgeId follows); returns its id."""
        bridge_id = bridge_id or str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        self.bridges[bridge_id] = list(uniqueids)
        for uid in uniqueids:
            if uid in self.channels:
                self.channels[uid] = _replace(self.channels[uid], "BridgeId", bridge_id)
        return bridge_id

    def add_queue(self, name: str, **params: str | int) -> FakeQueue:
        """A queue; QueueParams (Strategy, Holdtime...) default to an idle ringall queue."""
        values = {key: str(value) for key, value in params.items()}
        ordered = [(key, values.pop(key, default)) for key, default in _PARAMS]
        self.queues[name] = FakeQueue([*ordered, *values.items()])
        return self.queues[name]

    def add_member(
        self,
        queue: str,
        interface: str,
        *,
        name: str | None = None,
        state_interface: str | None = None,
        membership: str = "static",
        penalty: int = 0,
        status: int = 1,
        paused: bool = False,
        paused_reason: str = "",
        in_call: bool = False,
        calls_taken: int = 0,
        last_call: int = 0,
        last_pause: int = 0,
        login_time: int | None = None,
        wrapuptime: int = 0,
        ringinuse: bool = False,
    ) -> Headers:
        """A queue member (and the queue if new); returns its QueueMember headers."""
        login = int(self.clock.seconds()) if login_time is None else login_time
        member: Headers = [
            ("Name", name or interface), ("Location", interface),
            ("StateInterface", state_interface or interface), ("Membership", membership),
            ("Penalty", str(penalty)), ("CallsTaken", str(calls_taken)),
            ("LastCall", str(last_call)), ("LastPause", str(last_pause)),
            ("LoginTime", str(login)), ("InCall", str(int(in_call))), ("Status", str(status)),
            ("Paused", str(int(paused))), ("PausedReason", paused_reason),
            ("Wrapuptime", str(wrapuptime)), ("Ringinuse", str(int(ringinuse))),
        ]  # fmt: skip
        (self.queues.get(queue) or self.add_queue(queue)).members.append(member)
        return member

    def add_entry(self, queue: str, uniqueid: str, *, wait: int = 0, priority: int = 0) -> Headers:
        """A caller waiting in ``queue``: channel and caller id from ``channels[uniqueid]``."""
        block = self.channels.get(uniqueid, [])
        ids = [(key, _get(block, key)) for key in ("CallerIDNum", "CallerIDName")]
        ids += [(key, _get(block, key)) for key in ("ConnectedLineNum", "ConnectedLineName")]
        entry = [("Channel", _get(block, "Channel")), ("Uniqueid", uniqueid)]
        entry += [(key, "unknown" if v in ("", "<unknown>") else v) for key, v in ids]
        entry += [("Wait", str(wait)), ("Priority", str(priority))]
        (self.queues.get(queue) or self.add_queue(queue)).entries.append(entry)
        return entry

    def find_channel(self, name: str) -> str | None:
        """The Uniqueid of channel ``name`` (as ast_channel_get_by_name: name or Uniqueid)."""
        for uid, block in self.channels.items():
            if _get(block, "Channel").lower() == name.lower() or uid == name:
                return uid
        return None

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

    def _originate(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        channel, priority, timeout = (action.get(k, "") for k in ("Channel", "Priority", "Timeout"))
        sync = action.get("Async", "").lower() not in _TRUE
        error = _first_error(
            (not channel, "Channel not specified"),
            (bool(priority) and not _C_INT.match(priority), "Invalid priority"),
            (bool(timeout) and not _C_INT.match(timeout), "Invalid timeout"),
            ("/" not in channel, "Invalid channel"),
            (sync and not action.get("Application") and not priority,
             "Originate with 'Exten' requires 'Context' and 'Priority'"),
        )  # fmt: skip
        if not error and (channel_id := action.get("ChannelId")):
            self.originate_ids[channel_id] = action
        return _answer(action, error, "Originate successfully queued")

    def _hangup(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name = action.get("Channel", "")
        error = _first_error(
            (not name, "No channel specified"), (self.find_channel(name) is None, "No such channel")
        )
        return _answer(action, error, "Channel Hungup")

    def _redirect(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name, extra = action.get("Channel", ""), action.get("ExtraChannel", "")
        keys = ("Channel", "Context", "Exten", "Priority")
        error = _first_error(
            *[(not action.get(key), f"{key} not specified") for key in keys],
            (_int(action.get("Priority", "")) < 1, "Priority is invalid"),
            (self.find_channel(name) is None, f"Channel does not exist: {name}"),
            (bool(extra) and self.find_channel(extra) is None,
             f"ExtraChannel does not exist: {extra}"),
        )  # fmt: skip
        return _answer(
            action, error, "Dual Redirect successful" if extra else "Redirect successful"
        )

    def _transfer_error(self, action: AmiMessage) -> str | None:
        """BlindTransfer's and Atxfer's checks, in their order."""
        name = action.get("Channel", "")
        return _first_error(
            (not name, "No channel specified"), (not action.get("Exten"), "No extension specified"),
            (self.find_channel(name) is None, "Channel specified does not exist"),
        )  # fmt: skip

    def _blind_transfer(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        uid = self.find_channel(action.get("Channel", ""))
        bridged = any(uid in members for members in self.bridges.values())
        error = self._transfer_error(action) or (None if bridged else "Transfer invalid")
        return _answer(action, error, "Transfer succeeded")

    def _atxfer(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        return _answer(action, self._transfer_error(action), "Atxfer successfully queued")

    def _queue(self, name: str) -> tuple[str, FakeQueue] | tuple[None, None]:
        """Queue names match case-insensitively, as in app_queue."""
        found = [(n, q) for n, q in self.queues.items() if n.lower() == name.lower()]
        return found[0] if found else (None, None)

    def _member_event(self, event: str, queue: str, member: Headers) -> AmiMessage:
        """The queue member blob (queue_member_blob_create) from QueueMember headers."""
        blob = [
            (_BLOB_NAMES.get(k, k), v) for k, v in member if k not in ("Ringinuse", "Wrapuptime")
        ]
        ring, wrap = (_get(member, key) or "0" for key in ("Ringinuse", "Wrapuptime"))
        return AmiMessage([("Event", event), ("Privilege", "agent,all"), ("Queue", queue), *blob,
                           ("Ringinuse", ring), ("Wrapuptime", wrap)])  # fmt: skip

    def _queue_add(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name, interface = action.get("Queue", ""), action.get("Interface", "")
        queue_name, queue = self._queue(name)
        error = _first_error(
            (not name, "'Queue' not specified."), (not interface, "'Interface' not specified."),
            (queue is None, "Unable to add interface to queue: No such queue"),
            (queue is not None and _member(queue, interface) is not None,
             "Unable to add interface: Already there"),
        )  # fmt: skip
        if error or queue_name is None:
            return _answer(action, error, "")
        paused = action.get("Paused", "").lower() in _TRUE
        member = self.add_member(
            queue_name, interface, name=action.get("MemberName") or None,
            state_interface=action.get("StateInterface") or None, membership="dynamic",
            penalty=max(_int(action.get("Penalty", "")), 0), paused=paused,
            paused_reason=action.get("Reason", "") if paused else "",
            wrapuptime=max(_int(action.get("Wrapuptime", "")), 0),
        )  # fmt: skip
        self._after.append(self._member_event("QueueMemberAdded", queue_name, member))
        return _answer(action, None, "Added interface to queue")

    def _queue_remove(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name, interface = action.get("Queue", ""), action.get("Interface", "")
        queue_name, queue = self._queue(name)
        member = _member(queue, interface) if queue is not None else None
        error = _first_error(
            (not name or not interface, "Need 'Queue' and 'Interface' parameters."),
            (queue is None, "Unable to remove interface from queue: No such queue"),
            (member is None, "Unable to remove interface: Not there"),
            (member is not None and _get(member, "Membership") != "dynamic", "Member not dynamic"),
        )  # fmt: skip
        if not error and queue_name and queue and member:
            queue.members.remove(member)
            self._after.append(self._member_event("QueueMemberRemoved", queue_name, member))
        return _answer(action, error, "Removed interface from queue")

    def _queue_pause(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        interface, paused_text = action.get("Interface", ""), action.get("Paused", "")
        if not interface or not paused_text:
            return _answer(action, "Need 'Interface' and 'Paused' parameters.", "")
        paused, wanted = paused_text.lower() in _TRUE, action.get("Queue", "").lower()
        hits = 0
        for name, queue in self.queues.items():
            member = _member(queue, interface)
            if member is None or wanted not in ("", name.lower()):
                continue
            hits += 1
            updated = _replace(member, "Paused", str(int(paused)))
            updated = _replace(updated, "PausedReason", action.get("Reason", "") if paused else "")
            if paused:
                updated = _replace(updated, "LastPause", str(int(self.clock.seconds())))
            queue.members[queue.members.index(member)] = updated
            self._after.append(self._member_event("QueueMemberPause", name, updated))
        error = None if hits else "Interface not found"
        return _answer(action, error, f"Interface {'' if paused else 'un'}paused successfully")

    def _core_show_channels(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        items = [_item("CoreShowChannel", action, block) for block in self.channels.values()]
        return _listing(action, "Channels will follow", items, "CoreShowChannelsComplete")

    def _queue_status(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        wanted, who = action.get("Queue", "").lower(), action.get("Member", "")
        items: list[AmiMessage] = []
        for name, queue in self.queues.items():
            if wanted and name.lower() != wanted:
                continue
            params = [(k, str(len(queue.entries)) if k == "Calls" else v) for k, v in queue.params]
            items.append(_item("QueueParams", action, [("Queue", name), *params], id_last=True))
            for member in queue.members:
                if not who or who in (_get(member, "Location"), _get(member, "Name")):
                    shown = [("Queue", name), *[(k, v) for k, v in member if k != "Ringinuse"]]
                    items.append(_item("QueueMember", action, shown, id_last=True))
            for position, entry in enumerate(queue.entries, 1):
                shown = [("Queue", name), ("Position", str(position)), *entry]
                items.append(_item("QueueEntry", action, shown, id_last=True))
        return _listing(action, "Queue status will follow", items, "QueueStatusComplete")

    def _queue_summary(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        wanted = action.get("Queue", "").lower()
        items: list[AmiMessage] = []
        for name, queue in self.queues.items():
            if wanted and name.lower() != wanted:
                continue
            logged_in = [m for m in queue.members if _get(m, "Status") not in ("4", "5")]
            free = [
                m for m in logged_in if _get(m, "Status") in ("0", "1") and _get(m, "Paused") == "0"
            ]
            longest = max((_int(_get(e, "Wait")) for e in queue.entries), default=0)
            items.append(_item("QueueSummary", action, [
                ("Queue", name), ("LoggedIn", str(len(logged_in))), ("Available", str(len(free))),
                ("Callers", str(len(queue.entries))), ("HoldTime", _get(queue.params, "Holdtime")),
                ("TalkTime", _get(queue.params, "TalkTime")), ("LongestHoldTime", str(longest)),
            ], id_last=True))  # fmt: skip
        return _listing(action, "Queue summary will follow", items, "QueueSummaryComplete")

    def _bridge_block(self, bridge_id: str) -> Headers:
        return [
            ("BridgeUniqueid", bridge_id), ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"), ("BridgeNumChannels", str(len(self.bridges[bridge_id]))),
            ("BridgeVideoSourceMode", "none"),
        ]  # fmt: skip

    def _bridge_list(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        wanted = action.get("BridgeType", "")  # compared with the bridge technology
        bridges = [b for b in self.bridges if wanted in ("", "simple_bridge")]
        items = [_item("BridgeListItem", action, self._bridge_block(b)) for b in bridges]
        return _listing(action, "Bridge listing will follow", items, "BridgeListComplete")

    def _bridge_info(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        bridge_id = action.get("BridgeUniqueid", "")
        error = _first_error(
            (not bridge_id, "BridgeUniqueid must be provided"),
            (bridge_id not in self.bridges, "Specified BridgeUniqueid not found"),
        )
        if error:
            return [response(action, "Error", error)]
        blocks = [self.channels[uid] for uid in self.bridges[bridge_id] if uid in self.channels]
        items = [
            _item("BridgeInfoChannel", action, [h for h in b if h[0] not in _CORESHOW_ONLY])
            for b in blocks
        ]
        listing = _listing(
            action, "Bridge channel listing will follow", items, "BridgeInfoComplete"
        )
        listing[-1] = AmiMessage([*listing[-1].headers, *self._bridge_block(bridge_id)])
        return listing


# -- message helpers -----------------------------------------------------------------------
def _action_name(action: AmiMessage) -> str:
    """The first non-empty Action header (GET_HEADER_SKIP_EMPTY)."""
    return next((value for key, value in action.headers if key.lower() == "action" and value), "")


def _action_id(action: AmiMessage) -> Headers:
    """The ActionID header to echo: none when the action had none or an empty one."""
    action_id = action.get("ActionID")
    return [("ActionID", action_id)] if action_id else []


def _first_error(*checks: tuple[bool, str]) -> str | None:
    return next((text for failed, text in checks if failed), None)


def _answer(action: AmiMessage, error: str | None, success: str) -> list[AmiMessage]:
    """astman_send_error with ``error``, else astman_send_ack with ``success``."""
    return [response(action, "Error", error) if error else response(action, "Success", success)]


def _get(headers: Headers, key: str) -> str:
    return next((v for k, v in headers if k == key), "")


def _replace(headers: Headers, key: str, value: str) -> Headers:
    return [(k, value if k == key else v) for k, v in headers]


def _int(text: str) -> int:
    """sscanf("%d"): the leading integer, 0 when there is none."""
    match = _C_INT.match(text)
    return int(match.group()) if match else 0


def _member(queue: FakeQueue, interface: str) -> Headers | None:
    return next(
        (m for m in queue.members if _get(m, "Location").lower() == interface.lower()), None
    )


def _item(event: str, action: AmiMessage, headers: Headers, *, id_last: bool = False) -> AmiMessage:
    """A list item: ActionID right after Event, or last as app_queue puts it."""
    if id_last:
        return AmiMessage([("Event", event), *headers, *_action_id(action)])
    return AmiMessage([("Event", event), *_action_id(action), *headers])


def _listing(action: AmiMessage, text: str, items: list[AmiMessage], done: str) -> list[AmiMessage]:
    """astman_send_listack, the items, astman_send_list_complete."""
    action_id = _action_id(action)
    start = [("Response", "Success"), *action_id, ("EventList", "start"), ("Message", text)]
    end = [("Event", done), *action_id, ("EventList", "Complete"), ("ListItems", str(len(items)))]
    return [AmiMessage(start), *items, AmiMessage(end)]


def _caller_id(text: str) -> tuple[str, str]:
    """(name, number) of ``"Name" <number>``, ``Name <number>`` or a bare number."""
    if match := re.match(r'\s*"?([^"<]*?)"?\s*<([^>]*)>', text):
        return match.group(1).strip(), match.group(2).strip()
    text = text.strip()
    return ("", text) if re.fullmatch(r"[0-9+*#()\-. ]*", text) else (text, "")
