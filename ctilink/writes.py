"""When a batched database writer writes: the schedule the event log and the routing
writers (decision audit, interactions) share.

A writer buffers rows and owns the writing; ``WriteSchedule`` only decides *when* its
``start`` callable runs:

* a full batch is written at once;
* otherwise the buffer waits ``flush_interval`` (rows arriving meanwhile join the batch);
* while writes fail (``failures`` > 0, counted by the writer), the next attempt waits a
  capped exponential backoff: ``retry_initial``, doubling, at most ``retry_max``.

The writer calls ``due`` when rows were added or a write ended (with nothing running),
``failed`` after a failed write, and ``cancel`` when it closes or writes now anyway.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class WriteSchedule:
    def __init__(
        self,
        clock: IReactorTime,
        start: Callable[[], object],
        *,
        flush_interval: float,
        retry_initial: float,
        retry_max: float,
    ) -> None:
        self.clock = clock
        self.start = start
        self.flush_interval = flush_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.failures = 0  # failed writes in a row: > 0 means an outage
        self._timer: IDelayedCall | None = None

    def due(self, pending: int, batch_size: int) -> None:
        """``pending`` rows wait: write them now, soon, or after the backoff."""
        if self.failures:
            if self._timer is None:
                self._timer = self.clock.callLater(self.backoff(), self._kick)
        elif pending >= batch_size:
            self.cancel()
            self.start()
        elif self._timer is None:
            self._timer = self.clock.callLater(self.flush_interval, self._kick)

    def failed(self) -> None:
        """A write failed: try again after the backoff."""
        self.cancel()
        self._timer = self.clock.callLater(self.backoff(), self._kick)

    def backoff(self) -> float:
        if not self.failures:
            return self.flush_interval
        return float(min(self.retry_max, self.retry_initial * 2 ** (self.failures - 1)))

    def cancel(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _kick(self) -> None:
        self._timer = None
        self.start()
