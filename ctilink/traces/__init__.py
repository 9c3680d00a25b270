"""Trace files: switch conversations on disk, read whole or not at all.

Theory of operation
-------------------
A trace is one or more sessions (connections), each a list of timed records of the bytes
that went one way or the other (``records.py``). Two file kinds carry them:

* JSON Lines (``jsonl.py``), the format ctilink writes when it records a live link: one
  session per file, no absolute time.
* pcap and pcapng captures (``pcap.py``, reassembled by ``tcp.py``): one session per TCP
  connection to or from the server port, with the capture's absolute time. A connection
  whose opening the capture missed is a ``mid_stream`` session that starts where the
  capture caught it.

``read_trace`` tells them apart by the first bytes (the pcap and pcapng magics), not by the
name; a file named like a capture that lacks the magic is refused rather than read as JSON.
Either the whole file is valid and the whole trace is returned, or ``TraceError`` names the
file and the position (line or packet) of the first problem.
"""

from __future__ import annotations

import os
from typing import Final

from ctilink.errors import TraceError
from ctilink.traces.jsonl import JsonlWriter, encode_record, read_jsonl, write_jsonl
from ctilink.traces.pcap import is_capture, read_capture
from ctilink.traces.records import Direction, Trace, TraceRecord, TraceSession

__all__ = [
    "AMI_PORT",
    "Direction",
    "JsonlWriter",
    "Trace",
    "TraceRecord",
    "TraceSession",
    "encode_record",
    "read_trace",
    "write_jsonl",
]

AMI_PORT: Final = 5038
_CAPTURE_SUFFIXES: Final = (".pcap", ".pcapng", ".cap")


def read_trace(path: str | os.PathLike[str], *, port: int = AMI_PORT) -> Trace:
    """Read a JSON Lines trace or a pcap/pcapng capture of TCP ``port`` (captures only)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            head = file.read(4)
    except OSError as exc:
        raise TraceError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    if is_capture(head):
        return read_capture(name, port=port)
    if name.lower().endswith(_CAPTURE_SUFFIXES):
        raise TraceError(
            f"{name}: not a pcap or pcapng capture (it starts with {head.hex() or 'nothing'})"
        )
    return read_jsonl(name)
