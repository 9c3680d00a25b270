"""Resuming a stream: a client that reconnects with ``?since=SEQ`` gets what it missed.

Theory of operation
-------------------
The event log (``ctilink.store.EventLog``) holds every published event, numbered, for its
retention (an hour by default), in the database, so across daemon restarts too; its
``events_since`` also returns events not yet flushed. A ``Catchup`` brings one client from
``since`` to the live stream without a gap or a duplicate at the seam:

1. *Chase*: while the client is more than a page behind the hub, read a page from the log,
   send what the client's view sees, and wait until the client's socket has taken it
   (so a long catch-up never piles up in memory). Live events are not held meanwhile:
   the log will have them.
2. *Seam*: close to the head, note ``live_from`` (the next seq the hub will assign) and
   from then on hold the live events the client sees; read the log up to ``live_from - 1``
   (a page or two); then, in the same reactor turn, send the held events and let the
   client stream live. Stored events have seq < ``live_from``, held ones seq >=
   ``live_from``: each event is sent once, in order.

The seqs read must follow each other: a seq older than the log's oldest, a hole (events
the log dropped during a database outage, or pruned under our feet), a seq the daemon
never assigned (a client of another daemon, a wiped database), an unreachable database,
or too many live events held at the seam all end the catch-up with a ``Gap``; the event
socket then sends ``{"type": "gap", "since": SEQ, "oldest": N, "reason": ...}`` and a
fresh snapshot.

Filtering an event read back needs to know who was on its call at the time
(``ctilink.screenpop.filters``); the parties of calls from before this run are learnt from
the log once, by ``PastLoader``, the first time a filtered client resumes from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred

from ctilink.model.wire import dumps
from ctilink.screenpop.filters import Audiences, CallParties, View

log = logging.getLogger(__name__)

PAGE = 1000  # events read from the log at a time
DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)  # what reading the log may raise


class EventSource(Protocol):
    """What a catch-up reads: ``ctilink.store.EventLog``."""

    def oldest_seq(self) -> Deferred[int | None]: ...

    def events_since(self, seq: int, limit: int = 1000) -> Deferred[list[dict[str, Any]]]: ...


class Target(Protocol):
    """The client being caught up (``EventSocketProtocol``)."""

    @property
    def view(self) -> View: ...

    @property
    def streaming(self) -> bool: ...

    def deliver(self, payloads: Sequence[bytes]) -> None: ...

    def writable(self) -> Deferred[None]: ...


@dataclass(frozen=True, slots=True)
class Gap:
    since: int
    oldest: int
    reason: str  # expired | missing | unknown | unavailable | overflow

    def to_wire(self) -> dict[str, Any]:
        return {"type": "gap", "since": self.since, "oldest": self.oldest, "reason": self.reason}


class Catchup:
    """One client's way from ``since`` to the live stream; see the module docstring."""

    def __init__(
        self,
        client: Target,
        since: int,
        *,
        source: EventSource | None,
        audiences: Audiences,
        last_seq: Callable[[], int],
        max_held: int,
        page: int = PAGE,
    ) -> None:
        self.client = client
        self.since = since
        self.source = source
        self.audiences = audiences
        self.last_seq = last_seq
        self.max_held = max_held
        self.page = page
        self.held: list[bytes] | None = None  # live events (framed), from the seam on
        self.overflowed = False
        self.cancelled = False
        self.replayed = 0

    def offer(self, frame: bytes) -> None:
        """A live event the client sees (framed), published while it catches up."""
        if self.held is None or self.overflowed:
            return
        if len(self.held) >= self.max_held:
            self.overflowed = True
            self.held = []
        else:
            self.held.append(frame)

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def stopped(self) -> bool:
        return self.cancelled or not self.client.streaming

    async def run(self, go_live: Callable[[list[bytes]], None]) -> Gap | None:
        """Replay; then call ``go_live(held)`` in the same turn as the last read and return
        None, or return the ``Gap`` that stopped it (nothing called). Returns None without
        calling anything if cancelled or the client went away."""
        try:
            return await self._run(go_live)
        except DATABASE_ERRORS as exc:  # the client gets a gap, not silence
            log.warning("event socket: cannot read the event log to resume (%s)", exc)
            return Gap(self.since, self.last_seq() + 1, "unavailable")

    async def _run(self, go_live: Callable[[list[bytes]], None]) -> Gap | None:
        last = self.last_seq()
        if self.since > last:
            return await self._gap("unknown")
        if self.since < last:
            if self.source is None:
                return Gap(self.since, last + 1, "expired")
            oldest = await self.source.oldest_seq()
            if oldest is None or oldest > self.since + 1:
                return await self._gap("expired", oldest)
        cursor = self.since
        while not self.stopped and self.last_seq() - cursor > self.page:  # chase
            assert self.source is not None
            events = await self.source.events_since(cursor, self.page)
            if not events:
                return await self._gap("missing")
            cursor, gap = self._send(events, cursor)
            if gap is not None:
                return gap
            await self.client.writable()
        live_from = self.last_seq() + 1  # seam: hold live events from here on
        self.held = []
        while not self.stopped and cursor < live_from - 1:
            assert self.source is not None
            events = await self.source.events_since(cursor, self.page)
            cursor, gap = self._send(events, cursor, live_from)
            if gap is not None:
                return gap
            if not events:
                return await self._gap("missing")
        if self.stopped:
            return None
        if self.overflowed:
            return await self._gap("overflow")
        held, self.held = self.held, None
        go_live(held)
        return None

    def _send(
        self, events: list[dict[str, Any]], cursor: int, live_from: int | None = None
    ) -> tuple[int, Gap | None]:
        audience_of, sees = self.audiences.audience_of, self.client.view.sees
        payloads: list[bytes] = []
        gap = None
        for wire in events:
            seq = wire["seq"]
            if live_from is not None and seq >= live_from:
                break
            if seq != cursor + 1:
                gap = Gap(self.since, seq, "missing")
                break
            cursor = seq
            if sees(audience_of(wire)):
                payloads.append(dumps(wire).encode("utf-8"))
        if payloads and not self.stopped:
            self.client.deliver(payloads)
            self.replayed += len(payloads)
        return cursor, gap

    async def _gap(self, reason: str, oldest: int | None = None) -> Gap:
        if oldest is None and self.source is not None:
            oldest = await self.source.oldest_seq()
        return Gap(self.since, oldest if oldest is not None else self.last_seq() + 1, reason)


class PastLoader:
    """Learns the call parties of events logged before this run (``Audiences.past``) once,
    for resuming filtered clients; forgets them after ``keep`` seconds."""

    def __init__(self, source: EventSource, audiences: Audiences, clock: Any, keep: float) -> None:
        self.source = source
        self.audiences = audiences
        self.clock = clock
        self.keep = keep
        self._loading: Deferred[None] | None = None

    def horizon(self, next_seq: int) -> int:
        """The first seq the live index knows (``next_seq`` if it has seen none yet)."""
        first = self.audiences.live.first_seq
        return first if first is not None else next_seq

    def needed(self, since: int, view: View, next_seq: int) -> bool:
        keyed = view.limits is not None or view.selectors is not None
        return keyed and since + 1 < self.horizon(next_seq) and self.audiences.past is None

    def load(self, next_seq: int) -> Deferred[None]:
        """Fires when ``audiences.past`` covers the log below the live index's first seq
        (never fails: without it, filtering falls back to the events' own fields)."""
        if self._loading is None:
            self._loading = Deferred.fromCoroutine(self._load(self.horizon(next_seq)))
        waiter: Deferred[None] = Deferred()

        def release(result: object) -> object:
            waiter.callback(None)
            return result

        self._loading.addBoth(release)
        return waiter

    async def _load(self, horizon: int) -> None:
        parties = CallParties(history=float("inf"), max_calls=10**9)
        try:
            oldest = await self.source.oldest_seq()
            cursor = (oldest if oldest is not None else horizon) - 1
            while cursor < horizon - 1:
                events = await self.source.events_since(cursor, PAGE)
                for wire in events:
                    if wire["seq"] >= horizon:
                        break
                    parties.apply(wire, 0.0)
                if not events or events[-1]["seq"] >= horizon - 1:
                    break
                cursor = events[-1]["seq"]
        except DATABASE_ERRORS as exc:
            log.warning("event socket: cannot read the event log's past calls (%s)", exc)
            self._loading = None  # try again on the next resume
            return
        self.audiences.past = parties
        self.clock.callLater(self.keep, self._forget)

    def _forget(self) -> None:
        self.audiences.past = None
        self._loading = None
