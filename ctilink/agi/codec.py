"""Sans-I/O FastAGI codec, the server side of one session: bytes in, events out.

Theory of operation
-------------------
Asterisk's ``AGI(agi://host:port/script,arg1,arg2)`` connects to us and sends the
environment: ``agi_<name>: <value>`` lines (LF, not CRLF) ended by an empty line, the
arguments last as ``agi_arg_1``, ``agi_arg_2``... Then it waits. We send one command line
at a time; Asterisk answers each with one reply line (``200 result=1``,
``200 result=1 (data) endpos=...``, ``510 Invalid or unknown command``, ``511 Command Not
Permitted on a dead channel or intercept routine``) or with the multi-line syntax error
(``520-...`` lines up to ``520 End of proper usage.``). A ``1xx`` reply (``100 result=0
Trying...``) is provisional: the final one follows. When the channel hangs up, Asterisk
writes ``HANGUP`` on its own, between replies, never inside one.

The session is a small state machine, all of it here:

    ENVIRONMENT --empty line--> IDLE --send()--> AWAITING_REPLY --final reply--> IDLE
                                 |  HANGUP is an event in IDLE and AWAITING_REPLY  |
    any state --EOF with nothing pending--> CLOSED;  any broken input --> ERROR

Usage, as in h11::

    conn = AgiServerConnection()
    conn.receive_data(chunk)            # b"" when the peer closed
    while (event := conn.next_event()) is not NEED_DATA:
        ...                             # AgiEnvironment, AgiReply, AgiHangup or CLOSED
    transport.write(conn.send(set_variable("ROUTE_QUEUE", "sales")))

Input is bounded: an environment over ``MAX_ENVIRONMENT_SIZE`` bytes, a line over
``MAX_LINE_SIZE`` or a multi-line reply over ``MAX_ENVIRONMENT_SIZE`` is a
``RemoteProtocolError``, and so is a reply nobody asked for. Output is checked: ``send``
refuses (``LocalProtocolError``) a command before the environment is complete or while a
reply is awaited, and the command builders refuse anything that would break the line or
Asterisk's argument parsing (CR, LF, NUL, an unquotable name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final
from urllib.parse import urlsplit

from ctilink.errors import LocalProtocolError, RemoteProtocolError

MAX_ENVIRONMENT_SIZE: Final = 16 * 1024
MAX_LINE_SIZE: Final = 8 * 1024
# Asterisk reads a command with fgets() into a 2048-byte buffer: a longer line is split.
MAX_COMMAND_SIZE: Final = 2047

_ENV_LINE = re.compile(r"agi_(?P<name>[A-Za-z0-9_]+): ?(?P<value>.*)", re.DOTALL)
_ARG_NAME = re.compile(r"arg_(?P<index>[1-9][0-9]*)")
_REPLY = re.compile(r"(?P<code>[1-5][0-9]{2})(?P<sep>[ -])(?P<text>.*)", re.DOTALL)
_RESULT = re.compile(r"result=(?P<result>\S*)(?P<rest>.*)", re.DOTALL)
_ATTRIBUTES = re.compile(r"(?: [A-Za-z_]+=\S*)*")  # " endpos=1234 digit=5"
_NAME = re.compile(r'[^\s"\\\x00]+')
_BREAKS_LINE = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` block, names without the prefix, in the order Asterisk sent them."""

    variables: Mapping[str, str]
    script: str  # "route" for agi://host:4573/route,support
    args: tuple[str, ...]  # ("support",): agi_arg_1, agi_arg_2, ...

    def get(self, name: str) -> str | None:
        """A variable's value, ``None`` when absent, empty or Asterisk's ``unknown``."""
        value = self.variables.get(name)
        return None if value in (None, "", "unknown") else value

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> AgiEnvironment:
        script = variables.get("network_script")
        if script is None:
            script = urlsplit(variables.get("request", "")).path.lstrip("/")
        numbered = []
        for name, value in variables.items():
            match = _ARG_NAME.fullmatch(name)
            if match is not None:
                numbered.append((int(match["index"]), value))
        return cls(dict(variables), script, tuple(value for _, value in sorted(numbered)))


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply. ``result`` is the text after ``result=`` (``"1"``, ``"-1"``, ``"*12"``,
    ``""``), ``None`` when there is none (``510 ...``); ``data`` the parenthesised part, or
    the free text of a reply without one (``Invalid or unknown command``, the usage text of
    a ``520``); ``lines`` the reply as received, without line ends."""

    code: int
    result: str | None
    data: str | None
    lines: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.code == 200


@dataclass(frozen=True, slots=True)
class AgiHangup:
    """Asterisk's unsolicited ``HANGUP``: the channel hung up; replies may still follow."""


@dataclass(frozen=True, slots=True)
class AgiCommand:
    """One command line without its LF; build with ``set_variable``, ``verbose``, ``hangup``."""

    line: str


class _Sentinel(Enum):
    NEED_DATA = "need data"
    CLOSED = "closed"


NEED_DATA: Final = _Sentinel.NEED_DATA
CLOSED: Final = _Sentinel.CLOSED

AgiEvent = AgiEnvironment | AgiReply | AgiHangup | _Sentinel


class AgiState(Enum):
    ENVIRONMENT = "environment"
    IDLE = "idle"
    AWAITING_REPLY = "awaiting reply"
    CLOSED = "closed"
    ERROR = "error"


class AgiServerConnection:
    """The server side of one FastAGI session (what Asterisk connects to)."""

    def __init__(
        self,
        *,
        max_environment_size: int = MAX_ENVIRONMENT_SIZE,
        max_line_size: int = MAX_LINE_SIZE,
    ) -> None:
        self.state = AgiState.ENVIRONMENT
        self._buffer = bytearray()
        self._start = 0  # where the unread part of _buffer begins
        self._scan_from = 0  # where to look for the next LF
        self._max_env = max_environment_size
        self._max_line = max_line_size
        self._env: dict[str, str] = {}
        self._env_size = 0
        self._multiline: list[str] = []
        self._multiline_size = 0
        self._eof = False
        self._error: RemoteProtocolError | None = None

    # -- input -----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from Asterisk; ``b""`` means it closed the connection."""
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
        elif self._eof:
            raise RemoteProtocolError("data received after the connection was closed")
        else:
            self._buffer += data

    def next_event(self) -> AgiEvent:
        """The next event, ``NEED_DATA``, or ``CLOSED`` once the peer closed cleanly."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._error = exc
            self.state = AgiState.ERROR
            raise

    def _next(self) -> AgiEvent:
        while (line := self._line()) is not None:
            event = self._handle_line(line)
            if event is not None:
                return event
        if not self._eof:
            return NEED_DATA
        if len(self._buffer) > self._start or self._multiline or self._env:
            where = "the environment" if self.state is AgiState.ENVIRONMENT else "a reply"
            raise RemoteProtocolError(f"connection closed in the middle of {where}")
        self.state = AgiState.CLOSED
        return CLOSED

    def _line(self) -> str | None:
        buffer, start = self._buffer, self._start
        end = buffer.find(b"\n", self._scan_from)
        if end < 0:
            del buffer[:start]  # drop what was read, once per chunk rather than per line
            self._start = 0
            self._scan_from = len(buffer)
            self._check_line_bound(len(buffer))
            return None
        self._check_line_bound(end - start)
        raw = buffer[start:end]
        self._start = self._scan_from = end + 1
        if self.state is AgiState.ENVIRONMENT:
            self._env_size += end + 1 - start
            if self._env_size > self._max_env:
                raise RemoteProtocolError(f"AGI environment exceeds {self._max_env} bytes")
        return raw.removesuffix(b"\r").decode("utf-8", "replace")

    def _check_line_bound(self, size: int) -> None:
        if self.state is AgiState.ENVIRONMENT and self._env_size + size > self._max_env:
            raise RemoteProtocolError(f"AGI environment exceeds {self._max_env} bytes")
        if size > self._max_line:
            raise RemoteProtocolError(f"AGI line exceeds {self._max_line} bytes")

    def _handle_line(self, line: str) -> AgiEvent | None:
        if self.state is AgiState.ENVIRONMENT:
            return self._environment_line(line)
        if self._multiline:
            return self._multiline_reply(line)
        if line == "HANGUP":
            return AgiHangup()
        if self.state is not AgiState.AWAITING_REPLY:
            raise RemoteProtocolError(f"unsolicited AGI reply {line[:80]!r}")
        match = _REPLY.fullmatch(line)
        if match is None:
            raise RemoteProtocolError(f"expected an AGI reply, got {line[:80]!r}")
        if match["sep"] == "-":
            self._multiline.append(line)
            self._multiline_size = len(line) + 1
            return None
        return self._reply(int(match["code"]), match["text"], (line,))

    def _environment_line(self, line: str) -> AgiEvent | None:
        if line:
            match = _ENV_LINE.fullmatch(line)
            if match is None:
                raise RemoteProtocolError(f"expected an agi_* environment line, got {line[:80]!r}")
            self._env[match["name"]] = match["value"]
            return None
        if not self._env:
            raise RemoteProtocolError("empty AGI environment")
        environment = AgiEnvironment.from_variables(self._env)
        self._env = {}
        self.state = AgiState.IDLE
        return environment

    def _multiline_reply(self, line: str) -> AgiEvent | None:
        self._multiline.append(line)
        self._multiline_size += len(line) + 1  # a running total: no rescans of a long reply
        if self._multiline_size > self._max_env:
            raise RemoteProtocolError(f"multi-line AGI reply exceeds {self._max_env} bytes")
        code = self._multiline[0][:3]
        if not line.startswith(code + " "):
            return None
        lines, self._multiline = tuple(self._multiline), []
        text = "\n".join([lines[0][4:], *lines[1:-1]])
        return self._reply(int(code), text, lines)

    def _reply(self, code: int, text: str, lines: tuple[str, ...]) -> AgiReply:
        result: str | None = None
        data: str | None = text or None
        match = _RESULT.match(text)
        if match is not None:
            result, data = match["result"], _data(match["rest"])
        if code >= 200:  # a 1xx reply is provisional: the final reply is still due
            self.state = AgiState.IDLE
        return AgiReply(code, result, data, lines)

    # -- output ----------------------------------------------------------------------------
    def send(self, command: AgiCommand) -> bytes:
        """The wire bytes of ``command``; afterwards its reply is awaited."""
        if self.state is AgiState.ENVIRONMENT:
            raise LocalProtocolError("cannot send an AGI command before the environment")
        if self.state is AgiState.AWAITING_REPLY:
            raise LocalProtocolError("cannot send an AGI command while a reply is awaited")
        if self.state is not AgiState.IDLE:
            raise LocalProtocolError(f"cannot send an AGI command in state {self.state.value}")
        wire = _encode(command.line)
        self.state = AgiState.AWAITING_REPLY
        return wire


def _data(rest: str) -> str | None:
    """The ``(data)`` after ``result=N``, before any ``key=value`` attributes; else the free
    text (``Trying...``). Data may hold parentheses itself, so the last ``)`` that leaves
    only attributes wins, then the first: two linear checks, no regex backtracking."""
    if _ATTRIBUTES.fullmatch(rest):
        return None
    if rest.startswith(" ("):
        for end in (rest.rfind(")"), rest.find(")")):
            if end > 1 and _ATTRIBUTES.fullmatch(rest, end + 1):
                return rest[2:end]
    return rest.strip() or None


def _encode(line: str) -> bytes:
    if not line.strip():
        raise LocalProtocolError("empty AGI command")
    if _BREAKS_LINE.search(line):
        raise LocalProtocolError(f"AGI command {line[:40]!r} contains CR, LF or NUL")
    wire = line.encode("utf-8") + b"\n"
    if len(wire) > MAX_COMMAND_SIZE:
        raise LocalProtocolError(f"AGI command is {len(wire)} bytes, over {MAX_COMMAND_SIZE}")
    return wire


# -- command builders ------------------------------------------------------------------------
def quote(value: str) -> str:
    """A double-quoted AGI argument; backslash and double quote escaped as Asterisk reads."""
    if _BREAKS_LINE.search(value):
        raise LocalProtocolError(f"AGI argument {value[:40]!r} contains CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise LocalProtocolError(f"invalid {kind} {name!r} for an AGI command")
    return name


def set_variable(name: str, value: str) -> AgiCommand:
    """``SET VARIABLE NAME "value"``: set a channel variable for the dialplan."""
    return AgiCommand(f"SET VARIABLE {_name('variable name', name)} {quote(value)}")


def verbose(text: str, level: int = 1) -> AgiCommand:
    """``VERBOSE "text" level``: a line in Asterisk's verbose log (level 1 to 4)."""
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 4:
        raise LocalProtocolError(f"AGI verbose level must be 1 to 4, not {level!r}")
    return AgiCommand(f"VERBOSE {quote(text)} {level}")


def hangup(channel: str | None = None) -> AgiCommand:
    """``HANGUP [channel]``: hang up this channel (or the one named)."""
    if channel is None:
        return AgiCommand("HANGUP")
    return AgiCommand(f"HANGUP {_name('channel name', channel)}")
