"""Sans-I/O AMI codec: bytes in, messages out; messages in, bytes out.

Theory of operation
-------------------
An AMI session from the client's side is a banner line (``Asterisk Call Manager/11.0.0``,
CRLF) and then messages, each a run of ``Key: value`` lines ended by CRLF and terminated
by an empty line. The server's side of the same session (what a fake Asterisk reads) is the
same without the banner.

Bytes are buffered until a whole message (or the banner) is present and only then decoded,
so a UTF-8 character split across reads decodes whole. A byte that is not UTF-8 becomes
U+FFFD and the framing, which works on bytes, is unaffected. A value may contain ``": "``:
only the first separator splits. Nothing is stripped, so an empty last value (VarSet's
``Value: ``) survives. A message that grows past ``max_message_size`` without its
terminator is a ``RemoteProtocolError`` and the codec refuses further input: the buffer
never grows without bound.

Usage, as in h11::

    codec = AmiCodec()
    codec.receive_data(chunk)           # b"" when the peer closed
    while (item := codec.next_event()) is not NEED_DATA:
        ...                             # AmiBanner, AmiMessage or CLOSED

``serialize`` refuses (``LocalProtocolError``) keys or values that would break framing, so
a client cannot smuggle a second action through a CR/LF in a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ctilink.ami.message import AmiMessage
from ctilink.errors import LocalProtocolError, RemoteProtocolError

MAX_MESSAGE_SIZE: Final = 1 << 20
_TERMINATOR: Final = b"\r\n\r\n"
_BANNER = re.compile(r"^(?P<product>[^:/\r\n]+)/(?P<version>\S+)$")
_KEY = re.compile(r"^[A-Za-z0-9_()\-.]+$")


@dataclass(frozen=True, slots=True)
class AmiBanner:
    product: str
    version: str


class _Sentinel(Enum):
    NEED_DATA = "need data"
    CLOSED = "closed"


NEED_DATA: Final = _Sentinel.NEED_DATA
CLOSED: Final = _Sentinel.CLOSED

AmiItem = AmiBanner | AmiMessage | _Sentinel


class AmiCodec:
    """One direction of an AMI session. ``expect_banner`` is True for what a client reads."""

    def __init__(
        self, *, expect_banner: bool = True, max_message_size: int = MAX_MESSAGE_SIZE
    ) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._await_banner = expect_banner
        self._max = max_message_size
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self.bytes_received = 0
        self.messages_received = 0

    # -- input -----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the connection."""
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RemoteProtocolError("data received after the connection was closed")
        self._buffer += data
        self.bytes_received += len(data)

    def next_event(self) -> AmiItem:
        """The next banner or message, ``NEED_DATA``, or ``CLOSED`` after a clean EOF."""
        if self._error is not None:
            raise self._error
        try:
            item = self._banner() if self._await_banner else self._message()
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        if item is not NEED_DATA:
            return item
        if self._eof:
            if self._buffer.strip(b"\r\n"):
                self._error = RemoteProtocolError(
                    f"connection closed in the middle of a message ({len(self._buffer)} bytes"
                    " unterminated)"
                )
                raise self._error
            return CLOSED
        return NEED_DATA

    def events(self) -> Iterator[AmiBanner | AmiMessage]:
        """Every whole banner/message available now."""
        while True:
            item = self.next_event()
            if item is NEED_DATA or item is CLOSED:
                return
            assert not isinstance(item, _Sentinel)
            yield item

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole message."""
        return len(self._buffer)

    def _banner(self) -> AmiItem:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            self._check_bound("banner")
            return NEED_DATA
        line = bytes(self._buffer[:end]).decode("utf-8", "replace")
        match = _BANNER.match(line)
        if match is None:
            raise RemoteProtocolError(f"expected the AMI banner line, got {line[:80]!r}")
        del self._buffer[: end + 2]
        self._await_banner = False
        return AmiBanner(match["product"], match["version"])

    def _message(self) -> AmiItem:
        while True:
            # Blank lines between messages carry nothing; skip them.
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
                self._scan_from = 0
            end = self._buffer.find(_TERMINATOR, self._scan_from)
            if end < 0:
                self._scan_from = max(0, len(self._buffer) - 3)
                self._check_bound("message")
                return NEED_DATA
            if end > self._max:
                self._check_bound("message", size=end)
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            self._scan_from = 0
            message = parse_message(raw.decode("utf-8", "replace"))
            if message.headers or message.lines:
                self.messages_received += 1
                return message

    def _check_bound(self, what: str, size: int | None = None) -> None:
        size = len(self._buffer) if size is None else size
        if size > self._max:
            raise RemoteProtocolError(
                f"AMI {what} exceeds {self._max} bytes without its terminator"
            )


def parse_message(text: str) -> AmiMessage:
    """Parse one message's text (CRLF-separated lines, terminator removed)."""
    headers: list[tuple[str, str]] = []
    lines: list[str] = []
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            headers.append((key, value))
        elif line.endswith(":") and " " not in line and len(line) > 1:
            headers.append((line[:-1], ""))
        elif line:
            lines.append(line)
    return AmiMessage(headers, lines)


# -- output --------------------------------------------------------------------------------
def serialize(message: AmiMessage | Iterable[tuple[str, str]]) -> bytes:
    """The wire bytes of one message; refuses anything that would break AMI framing."""
    headers = message.headers if isinstance(message, AmiMessage) else tuple(message)
    if not headers:
        raise LocalProtocolError("an AMI message needs at least one header")
    out: list[str] = []
    for key, value in headers:
        if not _KEY.match(key):
            raise LocalProtocolError(f"invalid AMI header name {key!r}")
        if "\r" in value or "\n" in value:
            raise LocalProtocolError(f"AMI header {key!r} has a line break in its value")
        out.append(f"{key}: {value}\r\n")
    out.append("\r\n")
    return "".join(out).encode("utf-8")
