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

Joining a stream in the middle (``mid_stream=True``): a capture that began after the
connection opened holds neither the banner nor, usually, the start of the message in
flight, and nothing says whether its first bytes begin a message. No banner is expected,
and nothing is decoded until the first ``\r\n\r\n`` has arrived. The bytes before it are
taken for a whole message only if, at the very start of the stream (after any CR and LF,
the end of the previous message's terminator), they begin with the line every AMI message
begins with: ``Event: <name>``, ``Response: <name>`` or ``Action: <name>``. Otherwise they
are the tail of a message whose start was not captured and are discarded, terminator
included; ``bytes_skipped`` counts what was discarded. Always discarding would be simpler
but would lose the first message of the usual capture, which begins at a TCP segment and so,
Asterisk writing each message whole, at a message: a capture whose first bytes are a call's
``Newchannel`` reports that call. The rule errs only when a segment begins exactly at a line
inside a message that looks like a first line (a ``UserEvent: ...`` header cut after
``User``, the ``Response`` header of a ``ChallengeResponseFailed`` event): that tail is then
decoded as a message of its own, one stray message and never a framing error. The outcome
does not depend on how the bytes are split.

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
# The first line of any AMI message: what makes the bytes met first in mid-stream a message.
_FIRST_LINE = re.compile(rb"(?:Event|Response|Action): [A-Za-z][A-Za-z0-9_\-]*\r\n")
_CRLF: Final = b"\r\n"


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
    """One direction of an AMI session. ``expect_banner`` is True for what a client reads.

    ``mid_stream`` joins a stream whose start was not seen (see the top): no banner, and
    the bytes up to the first message boundary that can be recognised are skipped.
    """

    def __init__(
        self,
        *,
        expect_banner: bool = True,
        mid_stream: bool = False,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._await_banner = expect_banner and not mid_stream
        self._joining = mid_stream
        self._max = max_message_size
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self.bytes_received = 0
        self.bytes_skipped = 0
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
            if self._await_banner:
                item = self._banner()
            elif self._joining and not self._join():
                item = NEED_DATA
            else:
                item = self._message()
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
        self.last_frame = bytes(self._buffer[: end + 2])
        del self._buffer[: end + 2]
        self._await_banner = False
        return AmiBanner(match["product"], match["version"])

    def _join(self) -> bool:
        """Skip to the first recognisable message boundary; False until it is known."""
        end = self._buffer.find(_TERMINATOR, self._scan_from)
        if end < 0:
            self._scan_from = max(0, len(self._buffer) - 3)
            self._check_bound("message")
            return False
        start = len(self._buffer) - len(self._buffer.lstrip(_CRLF))
        whole = start < end and _FIRST_LINE.match(self._buffer, start) is not None
        skip = start if whole else end + len(_TERMINATOR)
        del self._buffer[:skip]
        self.bytes_skipped += skip
        self._scan_from = 0
        self._joining = False
        return True

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
                self.last_frame = raw + _TERMINATOR
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
