"""``ctilink record``: tap a running daemon's link into trace files, rotating by size.

The daemon streams the link's traffic as JSON Lines over its control socket (see
``ctilink.control``); this client writes it to ``--out``, and when the file reaches
``--max-bytes`` it is rotated the way logrotate does (``out`` → ``out.1`` → ``out.2`` …,
``--keep`` files kept). Every file begins with the switch's first message (the AMI banner),
so each one replays on its own with ``ctilink replay``. It stops on Ctrl-C or SIGTERM, or
after ``--duration`` seconds, and says what it wrote. The link is never disturbed: the
daemon drops a recorder that cannot keep up rather than slow down.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ctilink.errors import CtilinkError


class RecordError(CtilinkError):
    """The daemon could not be reached or refused the recording."""


@dataclass
class Recording:
    out: Path
    max_bytes: int
    keep: int
    prologue: bytes = b""  # the banner record, repeated at the top of each new file
    records: int = 0
    written: int = 0
    rotations: int = 0
    cut: int = 0  # records of an unfinished message left out at the end

    def __post_init__(self) -> None:
        self._file = self.out.open("wb")
        self._size = 0
        self._held: list[bytes] = []
        self._whole = True

    def write(self, line: bytes) -> None:
        """Add one trace record. Records are held back while the switch's stream is in the
        middle of a message (a TCP read ends anywhere), so that a file never ends, and a
        rotation never cuts, inside a message: every file replays on its own."""
        self._held.append(line)
        self._whole = _ends_whole(line, self._whole, first=not self.prologue)
        if self._whole:
            self._write(b"".join(self._held), len(self._held))
            self._held.clear()

    def _write(self, lines: bytes, count: int) -> None:
        if not self.prologue and self.records == 0:
            self.prologue = lines
        elif self._size + len(lines) > self.max_bytes and self._size > len(self.prologue):
            self._rotate()
        self._file.write(lines)
        self._file.flush()
        self._size += len(lines)
        self.written += len(lines)
        self.records += count

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.keep - 1, 0, -1):
            older = self.out.with_name(f"{self.out.name}.{index}")
            if older.exists():
                os.replace(older, self.out.with_name(f"{self.out.name}.{index + 1}"))
        if self.keep > 0:
            os.replace(self.out, self.out.with_name(f"{self.out.name}.1"))
        self.rotations += 1
        self._file = self.out.open("wb")
        self._file.write(self.prologue)
        self._size = len(self.prologue)

    def close(self) -> None:
        self.cut = len(self._held)
        self._held.clear()
        self._file.close()


def _ends_whole(line: bytes, whole: bool, *, first: bool) -> bool:
    """Whether the received stream ends on a message boundary after ``line`` (``whole``:
    whether it did before). AMI text records are read; other records (CSTA frames in hex,
    sent actions) leave it as it was."""
    try:
        record = json.loads(line)
    except ValueError:
        return whole
    data = record.get("data") if isinstance(record, dict) else None
    if record.get("dir") != "rx" or not isinstance(data, str) or not data:
        return whole
    if first:  # the banner: one line
        return data.endswith("\r\n")
    return data.endswith("\r\n\r\n")


def record(
    control_socket: Path,
    switch: str,
    out: Path,
    *,
    max_bytes: int,
    keep: int,
    duration: float | None = None,
) -> Recording:
    """Record until interrupted (or ``duration`` seconds); returns what was written."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(control_socket))
    except OSError as exc:
        raise RecordError(
            f"cannot reach the daemon at {control_socket}: {exc.strerror or exc}"
            " (is ctilink running with this configuration, and may you read its state dir?)"
        ) from None
    conn.sendall(json.dumps({"op": "tap", "switch": switch}).encode() + b"\n")
    lines = _Lines(conn)
    answer = json.loads(lines.next(timeout=10) or b'{"ok": false, "error": "no answer"}')
    if not answer.get("ok"):
        conn.close()
        raise RecordError(f"the daemon refused: {answer.get('error')}")
    recording = Recording(out, max_bytes, keep)
    stop = _StopOn(duration)
    try:
        while not stop.now():
            line = lines.next(timeout=0.5)
            if line is None:
                continue
            if not line:
                break  # the daemon stopped or dropped us
            recording.write(line)
    finally:
        stop.restore()
        conn.close()
        recording.close()
    return recording


class _Lines:
    """Lines from a socket, waiting at most ``timeout`` for each (None: nothing yet)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.closed = False

    def next(self, timeout: float) -> bytes | None:
        while b"\n" not in self.buffer:
            if self.closed:
                rest, self.buffer = self.buffer, b""
                return rest
            ready, _, _ = select.select([self.conn], [], [], timeout)
            if not ready:
                return None
            chunk = self.conn.recv(65536)
            if not chunk:
                self.closed = True
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


class _StopOn:
    """Ctrl-C, SIGTERM or a deadline end the recording cleanly."""

    def __init__(self, duration: float | None) -> None:
        self.deadline = None if duration is None else time.monotonic() + duration
        self.stopped = False
        self._previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopped = True

    def now(self) -> bool:
        return self.stopped or (self.deadline is not None and time.monotonic() > self.deadline)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def report(recording: Recording) -> None:
    rotated = f" (+{recording.rotations} rotations)" if recording.rotations else ""
    print(
        f"ctilink record: {recording.records} records, {recording.written} bytes"
        f" into {recording.out}{rotated}"
        + (
            f"; {recording.cut} record(s) of an unfinished message left out"
            if recording.cut
            else ""
        ),
        file=sys.stderr,
    )
