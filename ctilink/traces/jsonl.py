"""JSON Lines traces: one session, one JSON object per line, read whole or not at all.

Theory of operation
-------------------
The format is that of the real traces (``pbx-traces/asterisk-22/README.md``)::

    {"t": 0.502071, "dir": "rx", "data": "Event: Newchannel\\r\\n...\\r\\n\\r\\n"}

``t`` is seconds since the connection opened: a finite number, never negative, never smaller
than the line before. ``dir`` is ``rx`` (switch to ctilink) or ``tx`` (ctilink to switch).
``data`` is text and the bytes are its UTF-8 encoding. A byte that is not UTF-8 (an old
PBX's Latin-1 caller name) is written as the lone surrogate U+DC80+byte, escaped in JSON as
``\\udcXX`` (Python's ``surrogateescape``), so a recording keeps every byte and reads back
exactly; any other lone surrogate has no encoding and is refused. Other keys are ignored, so
the format can grow.

Reading checks every line before returning anything and names the first bad line. A file ends
with a newline; blank lines after the last record carry nothing and are allowed, a blank line
between records is an error. A last line without its newline that does not parse is what a
recorder killed in mid-write leaves behind: "truncated record". Beyond what JSON requires,
duplicate keys and the NaN/Infinity extensions of Python's ``json`` are refused.

Writing (``JsonlWriter``, ``write_jsonl``) produces the same format, one line per record,
each written whole and flushed, so a recorder that dies leaves whole lines. A record the
reader would refuse (``t`` going backwards) is refused with ``ValueError`` before anything
of it is written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import BinaryIO, Final

from ctilink.errors import TraceError
from ctilink.traces.records import DIRECTIONS, Direction, Trace, TraceRecord, TraceSession

_KEYS: Final = ("t", "dir", "data")


class _LineError(Exception):
    """What is wrong with one line; the reader adds the file name and line number."""


def read_jsonl(path: str | os.PathLike[str]) -> Trace:
    """Read a JSON Lines trace as one session; ``TraceError`` names the first bad line."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            content = file.read()
    except OSError as exc:
        raise TraceError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    records = tuple(_records(name, content))
    return Trace(name, (TraceSession(0, records, None, None),))


def _records(name: str, content: bytes) -> Iterator[TraceRecord]:
    lines = content.split(b"\n")
    # The last element is whatever follows the last newline: b"" in a well-ended file.
    last_filled = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    previous_t = 0.0
    for index, raw in enumerate(lines[: last_filled + 1]):
        number = index + 1
        try:
            if not raw.strip():
                raise _LineError("blank line between records")
            record = _parse_line(raw, number, previous_t, terminated=index < len(lines) - 1)
        except _LineError as exc:
            raise TraceError(f"{name}: line {number}: {exc}") from None
        previous_t = record.t
        yield record


def _parse_line(raw: bytes, number: int, previous_t: float, *, terminated: bool) -> TraceRecord:
    try:
        value = _load(raw)
    except _LineError as exc:
        if terminated:
            raise
        raise _LineError(f"truncated record ({exc})") from None
    if not isinstance(value, dict):
        raise _LineError(f"not a JSON object (got {_json_type(value)})")
    for key in _KEYS:
        if key not in value:
            raise _LineError(f"missing key {key!r}")
    t = _time(value["t"], previous_t)
    return TraceRecord(t, _direction(value["dir"]), _data(value["data"]), f"line {number}")


def _load(raw: bytes) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _LineError(f"not valid UTF-8 (byte {exc.start + 1} of the line)") from None
    try:
        value: object = json.loads(
            text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
        )
    except json.JSONDecodeError as exc:
        raise _LineError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise _LineError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise _LineError("not valid JSON (nested too deeply)") from None
    return value


def _refuse_constant(name: str) -> object:
    raise _LineError(f"not valid JSON ({name} is not a JSON number)")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _LineError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _time(value: object, previous_t: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _LineError(f"'t' must be a number (got {_json_type(value)})")
    try:
        t = float(value)
    except OverflowError:
        raise _LineError("'t' is out of range") from None
    if not math.isfinite(t):
        raise _LineError("'t' is out of range")
    if t < 0:
        raise _LineError(f"'t' is negative ({t})")
    if t < previous_t:
        raise _LineError(f"'t' goes backwards ({t} after {previous_t})")
    return t


def _direction(value: object) -> Direction:
    for direction in DIRECTIONS:
        if value == direction:
            return direction
    shown = json.dumps(value) if isinstance(value, str) else _json_type(value)
    raise _LineError(f'\'dir\' must be "rx" or "tx" (got {shown[:40]})')


def _data(value: object) -> bytes:
    if not isinstance(value, str):
        raise _LineError(f"'data' must be a string (got {_json_type(value)})")
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise _LineError(
            f"'data' cannot be encoded as UTF-8 ({exc.reason} at character {exc.start})"
        ) from None


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names = {dict: "an object", list: "an array", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# -- writing -------------------------------------------------------------------------------
class JsonlWriter:
    """Writes records to a JSON Lines trace as they happen, e.g. while recording a live link.

    The file is created (or emptied) on construction; each ``write`` adds one whole line and
    flushes it. Use as a context manager or call ``close``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._last_t = 0.0

    def write(self, record: TraceRecord) -> None:
        """Append one record; ``ValueError`` if the format cannot carry it (nothing written)."""
        self._file.write(encode_record(record, self._last_t))
        self._file.flush()
        self._last_t = record.t

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def write_jsonl(path: str | os.PathLike[str], records: Iterable[TraceRecord]) -> None:
    """Write records as a JSON Lines trace (one session)."""
    with JsonlWriter(path) as writer:
        for record in records:
            writer.write(record)


def encode_record(record: TraceRecord, previous_t: float = 0.0) -> bytes:
    """One record's line, newline included; ``ValueError`` if the reader would refuse it."""
    t = record.t
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        raise ValueError(f"{record.position}: t must be a finite number >= 0, not {t!r}")
    if t < previous_t:
        raise ValueError(f"{record.position}: t goes backwards ({t} after {previous_t})")
    if record.direction not in DIRECTIONS:
        raise ValueError(f"{record.position}: direction must be rx or tx, not {record.direction!r}")
    text = record.data.decode("utf-8", "surrogateescape")
    line = json.dumps({"t": t, "dir": record.direction, "data": text}, ensure_ascii=False)
    # Lone surrogates (bytes that were not UTF-8) leave as JSON \\udcXX escapes.
    return line.encode("utf-8", "backslashreplace") + b"\n"
