"""A trace file as a switch.

Theory of operation
-------------------
``load_replay`` reads every trace first and checks that each session's switch-to-ctilink
bytes are whole AMI (``check_ami``), so a bad trace fails before a single event is
emitted, naming the file and the position. ``ReplayAdapter`` then plays the sessions one
after another as successive connections of one switch: ``link_up`` at the start of each
session, every received chunk through ``AmiInbound`` (the live link's inbound path) at
its time, ``link_down`` at the end. Bytes ctilink's side sent (``tx``) are not replayed.

A ``mid_stream`` session (a capture that began after the connection opened) is decoded in
the codec's mid-stream mode (no banner; the tail of the message in flight is skipped) and
its ``link_up`` says "joined mid-session", so that a reader knows that calls already in
progress when the capture began are not reported (the normalizer does not invent a call
whose start it did not see). Calls that start later replay as from any trace.

Event times are the trace's times: a session starts at ``start_time`` (or the capture's
own clock for pcap, or now) and each following session one second after the previous
one ended, so output is the same at any speed. ``speed`` only decides pacing: 0 replays as
fast as possible (yielding to the reactor every ``CHUNK`` records so a daemon stays
responsive), 1 in real time, 2 twice as fast. ``loop`` starts over after the last session.
"""

from __future__ import annotations

import logging
import os
import time as _time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ctilink.adapters.ami import AmiInbound
from ctilink.adapters.base import SwitchAdapter
from ctilink.ami.codec import CLOSED, AmiCodec
from ctilink.ami.normalizer import AmiNormalizer, new_call_id
from ctilink.ami.resync import Resync
from ctilink.errors import RemoteProtocolError, TraceError
from ctilink.model import events as ev
from ctilink.traces import Trace, TraceRecord, TraceSession, read_trace

log = logging.getLogger(__name__)

CHUNK = 500
SESSION_GAP = 1.0


def check_ami(trace: Trace) -> None:
    """Raise TraceError unless every session's rx bytes are a whole AMI stream."""
    name = trace.path
    for session in trace.sessions:
        codec = AmiCodec(mid_stream=session.mid_stream)
        record: TraceRecord | None = None
        try:
            for record in session.records:
                if record.direction == "rx":
                    codec.receive_data(record.data)
                    for _item in codec.events():
                        pass
            codec.receive_data(b"")
            if codec.next_event() is not CLOSED:
                raise RemoteProtocolError("session does not end cleanly")
        except RemoteProtocolError as exc:
            where = record.position if record is not None else "start"
            raise TraceError(f"{name}: {where}: not a valid AMI stream: {exc}") from exc


def load_replay(paths: Sequence[str | os.PathLike[str]], port: int = 5038) -> list[Trace]:
    traces = [read_trace(path, port=port) for path in paths]
    for trace in traces:
        check_ami(trace)
    return traces


@dataclass(frozen=True, slots=True)
class _Step:
    """One thing to do at ``at`` (trace time): deliver ``record``, or a link edge."""

    at: float
    session: TraceSession
    trace: Trace
    record: TraceRecord | None
    edge: type[ev.LinkEvent] | None = None


class ReplayAdapter(SwitchAdapter):
    kind = "replay"

    def __init__(
        self,
        name: str,
        traces: Sequence[Trace],
        publish: Callable[[ev.Event], object],
        *,
        clock: IReactorTime | None = None,
        speed: float = 0.0,
        loop: bool = False,
        start_time: float | None = None,
        tenant: str = "default",
        call_id_factory: Callable[[], str] = new_call_id,
    ) -> None:
        super().__init__(name, tenant)
        if loop and not any(session.records for trace in traces for session in trace.sessions):
            raise ValueError("cannot loop over traces without records")
        self.traces = tuple(traces)
        self._publish = publish
        self._clock = clock
        self.speed = speed
        self.loop = loop
        self._start_time = start_time
        self.normalizer = AmiNormalizer(name, publish, call_id_factory=call_id_factory)
        self.inbound = AmiInbound(self.normalizer)
        self.inbound.taps = self.taps
        self._pending: IDelayedCall | None = None
        self._done: Deferred[None] | None = None
        self._stopped = False
        self._open: _Step | None = None  # the link_up step of the session being played
        self._last_at = 0.0
        self.loops_completed = 0
        self.sessions_started = 0
        self._resync = Resync(self.normalizer)

    # -- the timeline ----------------------------------------------------------------------
    def _steps(self) -> Iterator[_Step]:
        base = self._start_time
        while True:
            for trace in self.traces:
                for session in trace.sessions:
                    if base is None:
                        base = session.start_time if session.start_time is not None else self._now()
                    yield _Step(base, session, trace, None, ev.LinkUp)
                    end = 0.0
                    for record in session.records:
                        end = record.t
                        if record.direction == "rx":
                            yield _Step(base + record.t, session, trace, record)
                    yield _Step(base + end, session, trace, None, ev.LinkDown)
                    base += end + SESSION_GAP
            self.loops_completed += 1
            if not self.loop:
                return

    def _now(self) -> float:
        return self._clock.seconds() if self._clock is not None else _time.time()

    def _do(self, step: _Step) -> None:
        self._last_at = step.at
        if step.edge is not None:
            self._open = step if step.edge is ev.LinkUp else None
            source = os.path.basename(step.trace.path)
            where = f"{source} session {step.session.index + 1}"
            if step.edge is ev.LinkDown:
                log.info("switch %s: link down (end of %s)", self.name, where)
                self._publish(ev.LinkDown(switch=self.name, time=step.at, detail=f"end of {where}"))
                return
            self.inbound.reset(mid_stream=step.session.mid_stream)
            detail = f"replaying {where}"
            if step.session.mid_stream:
                detail += " (joined mid-session: calls already in progress are not reported)"
            log.info("switch %s: link up (%s)", self.name, detail)
            self._publish(ev.LinkUp(switch=self.name, time=step.at, detail=detail))
            self.sessions_started += 1
            if self.sessions_started > 1:
                # A new connection to the switch: what the last one left open is unknown
                # now. A trace cannot be asked for the switch's channels, so they are cleared
                # (cause "resync"); agents are kept.
                self._resync.begin()
                report = self._resync.finish((), None, step.at)
                self._publish(ev.LinkResynced(switch=self.name, time=step.at, detail=str(report)))
            return
        assert step.record is not None
        self.inbound.data_received(step.record.data, step.at)

    def first_bytes(self) -> bytes:
        return self.inbound.banner_line

    # -- running ---------------------------------------------------------------------------
    def run_to_end(self) -> None:
        """Replay everything now, synchronously (no reactor needed). Not for ``loop``."""
        if self.loop:
            raise ValueError("run_to_end() would never return with loop=True")
        for step in self._steps():
            if self._stopped:
                return
            self._do(step)

    def use_clock(self, clock: IReactorTime) -> None:
        self._clock = clock

    def start(self) -> None:
        if self._clock is None:
            raise ValueError("a clock (reactor) is needed to start() a replay")
        self._done = Deferred()
        self._iter = self._steps()
        self._wall0 = self._clock.seconds()
        self._trace0: float | None = None
        self._advance()

    def finished(self) -> Deferred[None]:
        """Fires when the replay has played everything (never while looping)."""
        return self._done if self._done is not None else succeed(None)

    def _advance(self) -> None:
        assert self._clock is not None
        self._pending = None
        for done_in_turn, step in enumerate(self._iter, start=1):
            if self._stopped:
                return
            if self._trace0 is None:
                self._trace0 = step.at
            if self.speed > 0:
                due = self._wall0 + (step.at - self._trace0) / self.speed
                delay = due - self._clock.seconds()
                if delay > 0.001:
                    self._pending = self._clock.callLater(delay, self._resume, step)
                    return
            self._do(step)
            if done_in_turn >= CHUNK:
                self._pending = self._clock.callLater(0, self._advance)
                return
        if self._done is not None and not self._done.called:
            self._done.callback(None)

    def _resume(self, step: _Step) -> None:
        self._do(step)
        self._advance()

    def stop(self) -> Deferred[None]:
        """Stop playing; a session in progress ends with ``link_down`` ("stopped")."""
        if self._open is not None and not self._stopped:
            self._open = None
            self._publish(ev.LinkDown(switch=self.name, time=self._last_at, detail="stopped"))
        self._stopped = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if self._done is not None and not self._done.called:
            self._done.callback(None)
        return succeed(None)
