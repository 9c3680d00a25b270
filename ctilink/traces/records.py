"""The values every trace reader returns: a trace is sessions, a session is records.

A record is one chunk of bytes that crossed the link in one direction at one moment, as
seen from ctilink: ``rx`` came from the switch, ``tx`` went to it. ``t`` counts seconds from
the moment the session (the TCP connection) opened, so a replay can keep the original
pacing. ``position`` says where in the file the record came from ("line 12", "packet 57")
so that whoever finds something wrong in the bytes later can name the place. A session read
from a capture that began after its connection opened is ``mid_stream``: it starts wherever
the capture caught it. A JSON Lines trace is never mid-stream (ctilink records from the
banner on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Direction = Literal["rx", "tx"]
DIRECTIONS: Final[tuple[Direction, ...]] = ("rx", "tx")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """Bytes that crossed the link in one direction; ``t`` is seconds since the session opened."""

    t: float
    direction: Direction
    data: bytes
    position: str


@dataclass(frozen=True, slots=True)
class TraceSession:
    """One conversation (one TCP connection), its records in the order they happened.

    ``start_time`` is the absolute POSIX time of ``t == 0`` when the file says (pcap), else
    None. ``peer`` names the connection, client first: ``"127.0.0.1:45664 -> 127.0.0.1:5038"``.
    ``mid_stream`` is True when the file holds only the tail of the conversation (a capture
    that began after the connection opened): the bytes of a direction may then start in the
    middle of a message, and whatever was said before is unknown.
    """

    index: int
    records: tuple[TraceRecord, ...]
    start_time: float | None
    peer: str | None
    mid_stream: bool = False

    def data(self, direction: Direction) -> bytes:
        """Every byte sent in one direction, in stream order."""
        return b"".join(r.data for r in self.records if r.direction == direction)


@dataclass(frozen=True, slots=True)
class Trace:
    """A whole trace file; sessions are ordered by the time each one began."""

    path: str
    sessions: tuple[TraceSession, ...]
