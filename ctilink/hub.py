"""The hub: numbers every model event once and hands it on, in order.

Adapters publish; the hub assigns the daemon-wide ``seq`` (continuing from the last one
stored, so numbering survives a restart), applies the event to the state tracker first
(so a snapshot taken by a consumer already includes it), then calls each consumer in the
order they subscribed. A consumer that raises is logged and skipped for that event; the
others and the adapter carry on.

A consumer may publish (a screen pop, statistics, a callback's progress): such an event
is numbered at once but handed on only when the event being handed on has reached every
consumer, so every consumer sees every event in ``seq`` order, wherever it subscribed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from ctilink.model.events import Event
from ctilink.state import StateTracker

log = logging.getLogger(__name__)

Consumer = Callable[[Event], None]


class Hub:
    def __init__(self, tracker: StateTracker | None = None, *, first_seq: int = 1) -> None:
        self.tracker = tracker if tracker is not None else StateTracker()
        self._next_seq = first_seq
        self.tracker.last_seq = first_seq - 1
        self._consumers: list[Consumer] = []
        self._queued: deque[Event] = deque()  # published by consumers, handed on next
        self._dispatching = False

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def restart_numbering(self, first_seq: int) -> None:
        """Continue numbering after ``first_seq - 1`` (the last seq a previous run stored)."""
        if self._next_seq != self.tracker.last_seq + 1 or self.tracker.last_seq > first_seq - 1:
            raise RuntimeError("numbering can only be moved forward before any event")
        self._next_seq = first_seq
        self.tracker.last_seq = first_seq - 1

    def subscribe(self, consumer: Consumer) -> Callable[[], None]:
        """Call ``consumer(event)`` for every event from now on; returns an unsubscriber."""
        self._consumers.append(consumer)

        def unsubscribe() -> None:
            if consumer in self._consumers:
                self._consumers.remove(consumer)

        return unsubscribe

    def publish(self, event: Event) -> Event:
        event = replace(event, seq=self._next_seq)
        self._next_seq += 1
        if self._dispatching:  # from inside a consumer: after the current event
            self._queued.append(event)
            return event
        self._dispatching = True
        try:
            self._dispatch(event)
            while self._queued:
                self._dispatch(self._queued.popleft())
        finally:
            self._dispatching = False
        return event

    def _dispatch(self, event: Event) -> None:
        self.tracker.apply(event)
        for consumer in tuple(self._consumers):
            try:
                consumer(event)
            except Exception:
                log.exception(
                    "consumer %r failed on event seq=%d (%s)", consumer, event.seq, event.TYPE
                )
