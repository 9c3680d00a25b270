"""CSTA traces: JSON Lines with hex payloads, pcap captures, and what their bytes mean.

Theory of operation
-------------------
A CSTA conversation is binary (BER) or XML behind a binary header, so its JSON Lines form
carries each frame as hex (``tests/fixtures/csta/README.md``)::

    {"t": 0.012873, "dir": "rx", "hex": "0029a127020101020115301f..."}

``t`` and ``dir`` are those of the Asterisk traces (seconds since the connection opened;
``rx`` from the switch, ``tx`` to it); ``hex`` is one whole frame exactly as it crossed the
wire, length prefix (BER) or 8-byte header (XML) included. ``read_csta_trace`` reads that
form itself and hands anything else to ``ctilink.traces.read_trace``: a capture (with the
CSTA port given), or JSON Lines of the ``data`` form (what ``ctilink record`` writes over
the control socket, bytes that are not UTF-8 kept as ``\\udcXX`` escapes).

Which encoding a trace speaks is seen in its first bytes from the switch
(``detect_xml``): an ECMA-323 frame starts ``00 00 <length> <4 digits> <``. A capture that
began mid-connection (``mid_stream``) starts wherever it caught the stream: ``resync``
finds the first offset from which a whole frame follows (for BER: a length prefix whose
PDU is an ACSE or ROSE PDU whose own BER length spans it exactly).

``check_csta`` reads every session's switch bytes through the framer and the decoders
before anything is replayed: a trace that is not CSTA fails with the file and position. A
PDU ROSE would reject (an operation ctilink does not know) is not an error: the live link
rejects it and carries on.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from typing import Final

from ctilink.adapters.csta_taps import FrameSplitter
from ctilink.csta import CstaMessage, acse, rose
from ctilink.errors import RemoteProtocolError, TraceError
from ctilink.traces import Trace, TraceRecord, TraceSession, read_trace
from ctilink.traces.pcap import is_capture

_XML_FRAME: Final = re.compile(rb"\x00\x00..\d{4}<", re.DOTALL)
_PDU_TAGS: Final = frozenset({*range(0x60, 0x65), *range(0xA1, 0xA5)})


# -- the hex JSON Lines form ---------------------------------------------------------------
def encode_hex_record(record: TraceRecord, previous_t: float = 0.0) -> bytes:
    """One record's line (newline included); ``ValueError`` if the reader would refuse it."""
    t = record.t
    if not math.isfinite(t) or t < max(0.0, previous_t):
        raise ValueError(f"{record.position}: t must be finite, >= 0 and >= {previous_t}")
    line = {"t": round(t, 6), "dir": record.direction, "hex": record.data.hex()}
    return json.dumps(line).encode("ascii") + b"\n"


def write_csta_jsonl(path: str | os.PathLike[str], records: Iterable[TraceRecord]) -> None:
    previous = 0.0
    with open(path, "wb") as file:
        for record in records:
            file.write(encode_hex_record(record, previous))
            previous = record.t


def _hex_records(name: str, content: bytes) -> list[TraceRecord]:
    records: list[TraceRecord] = []
    previous = 0.0
    lines = content.split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for index, raw in enumerate(lines[: last + 1]):
        where = f"line {index + 1}"
        try:
            value = json.loads(raw)
            t, direction, payload = value["t"], value["dir"], value["hex"]
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
                raise ValueError("'t' must be a number")
            if t < previous:
                raise ValueError(f"'t' goes backwards ({t} after {previous})")
            if direction not in ("rx", "tx"):
                raise ValueError('\'dir\' must be "rx" or "tx"')
            data = bytes.fromhex(payload)
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise TraceError(f"{name}: {where}: not a CSTA trace record ({problem})") from None
        previous = float(t)
        records.append(TraceRecord(float(t), direction, data, where))
    return records


def is_hex_jsonl(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a CSTA hex JSON Lines trace (its first record has ``"hex"``)."""
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        return False  # the reader reports it
    first = next((line for line in head.split(b"\n") if line.strip()), b"")
    return not is_capture(head[:4]) and b'"hex"' in first


def read_csta_trace(path: str | os.PathLike[str], *, port: int) -> Trace:
    """A capture of TCP ``port``, a hex JSON Lines trace, or a ``data`` JSON Lines trace."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            content = file.read()
    except OSError as exc:
        raise TraceError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    first = next((line for line in content.split(b"\n") if line.strip()), b"")
    if is_capture(content[:4]) or b'"hex"' not in first:
        return read_trace(name, port=port)
    return Trace(name, (TraceSession(0, tuple(_hex_records(name, content)), None, None),))


# -- what the bytes are --------------------------------------------------------------------
def detect_xml(trace: Trace) -> bool:
    """Whether the switch speaks ECMA-323 XML in ``trace`` (by its first bytes)."""
    for session in trace.sessions:
        data = session.data("rx")[:4096]
        if data:
            return bool(_XML_FRAME.match(data)) or (
                session.mid_stream and bool(_XML_FRAME.search(data))
            )
    return False


def resync(data: bytes, xml: bool) -> int | None:
    """The offset of the first whole frame in ``data`` (None: none found yet)."""
    if xml:
        found = _XML_FRAME.search(data)
        return found.start() if found else None
    for offset in range(max(0, len(data) - 3)):
        length = int.from_bytes(data[offset : offset + 2], "big")
        pdu = data[offset + 2 : offset + 2 + length]
        if length >= 2 and len(pdu) == length and pdu[0] in _PDU_TAGS and _spans(pdu):
            return offset
    return None


def _spans(pdu: bytes) -> bool:
    """Whether the BER length of the TLV ``pdu`` starts with covers ``pdu`` exactly."""
    first = pdu[1]
    if first < 0x80:
        return 2 + first == len(pdu)
    count = first & 0x7F
    if not 1 <= count <= 2 or len(pdu) < 2 + count:
        return False
    return 2 + count + int.from_bytes(pdu[2 : 2 + count], "big") == len(pdu)


def decode_frame(frame: bytes, xml: bool) -> CstaMessage | acse.AcsePdu | None:
    """The message a whole frame carries; None for the Alcatel start bytes and ECMA-354
    session documents. ``RemoteProtocolError`` if it is not CSTA; ``rose.RoseProblem``
    for a PDU ROSE rejects."""
    if xml:
        from ctilink.csta import xml as codec
        from ctilink.csta.xml_session import is_session

        root = codec.parse(frame[8:], int(frame[4:8]))
        return None if is_session(root) else codec.decode_element(root, int(frame[4:8]))
    pdu = frame[2:]
    if not pdu:
        return None  # "B" / "P"
    return acse.decode(pdu) if acse.is_acse(pdu) else rose.decode(pdu)


def check_csta(trace: Trace, xml: bool) -> None:
    """Raise TraceError unless every session's switch bytes are whole CSTA frames."""
    for session in trace.sessions:
        splitter = FrameSplitter(xml=xml, alcatel=_alcatel(session))
        record: TraceRecord | None = None
        skip = session.mid_stream
        try:
            pending = b""
            for record in session.records:
                if record.direction != "rx":
                    continue
                if skip:
                    pending += record.data
                    offset = resync(pending, xml)
                    if offset is None:
                        continue
                    skip, data, pending = False, pending[offset:], b""
                else:
                    data = record.data
                for frame in splitter.frames(data):
                    _check_frame(frame, xml)
            if splitter.pending:
                raise RemoteProtocolError(
                    f"the session ends inside a frame ({splitter.pending} bytes)"
                )
        except RemoteProtocolError as exc:
            where = record.position if record is not None else "start"
            raise TraceError(f"{trace.path}: {where}: not a valid CSTA stream: {exc}") from exc


def _check_frame(frame: bytes, xml: bool) -> None:
    from ctilink.csta.xml import XmlProblem

    try:
        decode_frame(frame, xml)
    except rose.RoseProblem as problem:
        if problem.kind == "unknown":  # not a ROS PDU at all
            raise
    except XmlProblem:
        pass  # a document the live link answers with an error, or drops, and goes on


def _alcatel(session: TraceSession) -> bool:
    return next((r.data[:1] == b"P" for r in session.records if r.direction == "rx"), False)
