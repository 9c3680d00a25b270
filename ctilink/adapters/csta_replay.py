"""A CSTA trace as a switch: ``ctilink replay`` of CSTA conversations.

Theory of operation
-------------------
``ReplayAdapter`` (``ctilink.adapters.replay``) owns the timeline of a replay: sessions one
after another, ``link_up``/``link_down`` at their edges, each switch record at its time,
``speed``, ``loop``, ``stop``. ``CstaReplayAdapter`` keeps all of that and swaps what the
records go through: ``CstaTraceInbound`` instead of the AMI inbound path. It cuts the
switch's bytes into frames (``csta_taps.FrameSplitter``), decodes each
(``csta_trace.decode_frame``) and hands event reports to ``CstaNormalizer`` and route
requests to ``CstaRouting`` (which, replaying, only reports them: the answer the
recording client gave is not replayed): the code a live ``CstaAdapter`` runs.

A new session after the first is a reconnection; a trace cannot be asked for snapshots, so
the calls the previous session left open are cleared (cause ``resync``), agents kept.

``load_csta_replay`` reads and checks every trace first (``csta_trace.check_csta``), so a
bad trace fails before anything is emitted. The encoding (BER or XML) is that of each
trace's first bytes unless ``xml`` says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from ctilink.adapters.base import Tap
from ctilink.adapters.csta_events import CstaNormalizer
from ctilink.adapters.csta_routing import CstaRouting
from ctilink.adapters.csta_taps import FrameSplitter
from ctilink.adapters.csta_trace import (
    check_csta,
    decode_frame,
    detect_xml,
    read_csta_trace,
    resync,
)
from ctilink.adapters.replay import ReplayAdapter
from ctilink.ami.normalizer import new_call_id
from ctilink.csta import CstaMessage, rose
from ctilink.errors import RemoteProtocolError
from ctilink.model import events as ev
from ctilink.traces import Trace

log = logging.getLogger(__name__)

CSTA_PORT = 2555  # a common CSTA server port (Alcatel OmniPCX); give the switch's own


def load_csta_replay(
    paths: Sequence[str | os.PathLike[str]], port: int = CSTA_PORT, xml: bool | None = None
) -> list[Trace]:
    """Read and check CSTA traces (hex JSON Lines, ``data`` JSON Lines, pcap/pcapng)."""
    traces = [read_csta_trace(path, port=port) for path in paths]
    for trace in traces:
        check_csta(trace, detect_xml(trace) if xml is None else xml)
    return traces


class CstaTraceInbound:
    """A replayed session's switch bytes → frames → the live adapter's inbound code."""

    def __init__(self, normalizer: CstaNormalizer, routing: CstaRouting, xml: bool) -> None:
        self.normalizer = normalizer
        self.routing = routing
        self.xml = xml
        self.taps: list[Tap] = []
        self.banner_line = b""  # the switch's first frame: what a recording starts with
        self.frames = 0
        self.reset()

    def reset(self, mid_stream: bool = False) -> None:
        self._splitter: FrameSplitter | None = None
        self._waiting: bytes | None = b"" if mid_stream else None
        self.banner_line = b""

    def data_received(self, data: bytes, at: float) -> None:
        """Feed a record's bytes received at ``at``; RemoteProtocolError on a broken stream."""
        if self._waiting is not None:  # joined mid-stream: skip to the first whole frame
            self._waiting += data
            offset = resync(self._waiting, self.xml)
            if offset is None:
                return
            data, self._waiting = self._waiting[offset:], None
        if self._splitter is None:  # Alcatel's start byte "P" comes first, if at all
            alcatel = not self.xml and data[:1] == b"P"
            self._splitter = FrameSplitter(xml=self.xml, alcatel=alcatel)
        for frame in self._splitter.frames(data):
            self.frames += 1
            for tap in self.taps:
                tap(at, "rx", frame)
            self.banner_line = self.banner_line or frame
            self.frame(frame, at)

    def frame(self, frame: bytes, at: float) -> None:
        try:
            message = decode_frame(frame, self.xml)
        except rose.RoseProblem as problem:
            log.debug("replay: a PDU the live link would reject: %s", problem)
            return
        except RemoteProtocolError as exc:
            log.debug("replay: a frame the live link would drop: %s", exc)
            return
        if not isinstance(message, CstaMessage) or message.kind != "invoke":
            return
        self.normalizer.now = at
        if message.operation == "cSTAEventReport":
            self.normalizer.handle(message.argument, at)
        elif message.operation == "routeRequest":
            self.routing.route_request(message.argument)
        elif message.operation == "routeEndRequest":
            self.routing.route_end(message.argument)


class _ClearAtReconnect:
    """The replay's resync: nothing to ask, so every call left open is cleared."""

    def __init__(self, normalizer: CstaNormalizer) -> None:
        self.normalizer = normalizer

    def begin(self) -> None:
        pass

    def finish(self, _channels: Any, _queues: Any, time: float) -> str:
        self.normalizer.now = time
        calls = list(self.normalizer.book.calls.values())
        for call in calls:
            if call.announced:
                self.normalizer.end_call(call, "resync", None)
        return f"{len(calls)} calls left open by the previous session cleared"


class CstaReplayAdapter(ReplayAdapter):
    kind = "replay"

    def __init__(
        self,
        name: str,
        traces: Sequence[Trace],
        publish: Callable[[ev.Event], object],
        *,
        xml: bool | None = None,
        call_id_factory: Callable[[], str] = new_call_id,
        **options: Any,
    ) -> None:
        super().__init__(name, traces, publish, call_id_factory=call_id_factory, **options)
        encoding = xml if xml is not None else any(detect_xml(trace) for trace in traces)
        normalizer = CstaNormalizer(name, publish, call_id_factory=call_id_factory)
        routing = CstaRouting(name, normalizer, publish, None, None, router=None, fallback=None,
                              budget=0.0, now=lambda: normalizer.now)  # fmt: skip
        self.csta = CstaTraceInbound(normalizer, routing, encoding)
        self.csta.taps = self.taps
        # ReplayAdapter's timeline drives whatever sits in these two places.
        self.inbound = self.csta  # type: ignore[assignment]
        self._resync = _ClearAtReconnect(normalizer)  # type: ignore[assignment]

    @property
    def csta_normalizer(self) -> CstaNormalizer:
        return self.csta.normalizer
