"""Batched writes off the hot path, with outage handling: the event log's pattern, reusable.

Theory of operation
-------------------
``BatchWriter.add(row)`` is synchronous and cheap: it appends to an in-memory buffer and
makes sure a write is coming, after ``flush_interval`` (an injectable clock's
``callLater``) or at once when ``batch_size`` rows wait. The write is an asyncio coroutine
on the reactor's loop (bridged with ``Deferred.fromFuture``); one runs at a time (an
asyncio lock), taking batches from the front of the buffer, each handed to the subclass's
``write_batch`` under ``write_timeout``.

When a write fails, ``on_failure`` decides what becomes of the batch: by default it goes
back to the front of the buffer (bounded by ``max_buffer``: beyond it the oldest rows are
dropped and counted); a subclass may instead put it somewhere durable (the interaction
recorder spools it to disk) and return True. ONE error is logged per outage, with the
reason (URL password masked); retries follow with capped exponential backoff; recovery is
logged at warning. ``before_writing`` runs under the lock before each round of batches
(the recorder replays its spool there), and a failure there is an outage like any other.
Nothing here raises into the caller of ``add``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ctilink.db import failure_reason, masked
from ctilink.reactor import deferred
from ctilink.writes import WriteSchedule

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatchWriter(Generic[T]):
    """Buffer rows and write them in batches; subclasses implement ``write_batch``."""

    what = "rows"  # in log messages: "routing decisions", "interactions"

    def __init__(
        self,
        engine: AsyncEngine,
        clock: IReactorTime,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 500,
        max_buffer: int = 100_000,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        write_timeout: float = 30.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.url = masked(engine.url)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.write_timeout = write_timeout
        self.written = 0
        self.dropped = 0
        self.pending: deque[T] = deque()
        self.inflight: list[T] = []
        self._lock = asyncio.Lock()
        self._writers = 0
        self._schedule = WriteSchedule(
            clock,
            lambda: self._start_writer(quiet=True),
            flush_interval=flush_interval,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )
        self.errors = 0  # failed batch writes since start (a metric)
        self._outage_since = 0.0
        self._closed = False

    # -- to implement --------------------------------------------------------------------
    async def write_batch(self, batch: list[T]) -> None:
        raise NotImplementedError

    async def before_writing(self) -> None:
        """Runs under the lock before the buffer is written (and on every retry)."""

    async def on_failure(self, batch: list[T]) -> bool:
        """A batch could not be written: True if it was kept elsewhere, False to requeue."""
        return False

    # -- the caller's side ---------------------------------------------------------------
    def add(self, row: T) -> None:
        if self._closed:
            self.dropped += 1
            return
        if len(self.pending) + len(self.inflight) >= self.max_buffer and self.pending:
            self._drop_oldest(1)
        self.pending.append(row)
        self._reschedule()

    @property
    def failing(self) -> bool:
        return self._schedule.failures > 0

    @property
    def buffered(self) -> int:
        return len(self.pending) + len(self.inflight)

    def flush(self) -> Deferred[None]:
        """Write what is buffered now; fails if the database does (the rows stay)."""
        return self._start_writer(quiet=False)

    def close(self) -> Deferred[None]:
        """Stop taking rows and write the buffer, giving failed batches to ``on_failure``."""
        return deferred(self.aclose())

    async def aclose(self) -> None:
        """``close`` for asyncio code."""
        self._closed = True
        self._schedule.cancel()
        try:
            await self._write()
        except Exception:
            if self.pending:
                batch = list(self.pending)
                self.pending.clear()
                if not await self._keep(batch):
                    self.dropped += len(batch)
                    log.error(
                        "%s: closing with %d %s not written to %s",
                        type(self).__name__,
                        len(batch),
                        self.what,
                        self.url,
                    )

    async def _keep(self, batch: list[T]) -> bool:
        try:
            return await self.on_failure(batch)
        except Exception:
            log.exception("%s: cannot keep %d %s", type(self).__name__, len(batch), self.what)
            return False

    # -- scheduling ----------------------------------------------------------------------
    def _reschedule(self) -> None:
        if self._closed or self._writers or not self.pending:
            return
        self._schedule.due(len(self.pending), self.batch_size)

    def _start_writer(self, *, quiet: bool) -> Deferred[None]:
        self._writers += 1

        def done(result: Any) -> Any:
            self._writers -= 1
            if not self._closed:
                if isinstance(result, Failure):
                    self._schedule.failed()
                elif self.pending:
                    self._reschedule()
            return None if quiet else result

        return deferred(self._write()).addBoth(done)

    # -- writing -------------------------------------------------------------------------
    async def _write(self) -> None:
        async with self._lock:
            try:
                async with asyncio.timeout(self.write_timeout):
                    await self.before_writing()
            except Exception as exc:
                self._note_failure(exc)
                await self._divert_pending()
                raise
            while self.pending:
                batch = self._take()
                self.inflight = batch
                try:
                    async with asyncio.timeout(self.write_timeout):
                        await self.write_batch(batch)
                except BaseException as exc:
                    self.inflight = []
                    kept = isinstance(exc, Exception) and await self._keep(batch)
                    if not kept:
                        self._requeue(batch)
                    if isinstance(exc, Exception):
                        self._note_failure(exc)
                        if kept:
                            await self._divert_pending()
                    raise
                self.inflight = []
                self.written += len(batch)
                self._note_success()

    async def _divert_pending(self) -> None:
        """Hand what is buffered to ``on_failure`` (a spool), batch by batch, while it takes."""
        while self.pending:
            batch = self._take()
            if not await self._keep(batch):
                self._requeue(batch)
                return

    def _take(self) -> list[T]:
        batch: list[T] = []
        while self.pending and len(batch) < self.batch_size:
            batch.append(self.pending.popleft())
        return batch

    def _requeue(self, batch: list[T]) -> None:
        self.pending.extendleft(reversed(batch))
        excess = len(self.pending) - self.max_buffer
        if excess > 0:
            self._drop_oldest(excess)

    def _drop_oldest(self, count: int) -> None:
        for _ in range(count):
            self.pending.popleft()
        if not self.dropped:
            log.error(
                "%s: %d %s waiting for %s, the most kept in memory; dropping the oldest",
                type(self).__name__,
                self.max_buffer,
                self.what,
                self.url,
            )
        self.dropped += count

    def _note_failure(self, exc: Exception) -> None:
        self._schedule.failures += 1
        self.errors += 1
        if self._schedule.failures == 1:
            self._outage_since = self.clock.seconds()
            log.error(
                "%s: cannot write %s to %s (%s); retrying",
                type(self).__name__,
                self.what,
                self.url,
                failure_reason(exc, self.engine, self.write_timeout),
            )
        else:
            failures = self._schedule.failures
            log.debug("%s: write attempt %d failed", type(self).__name__, failures)

    def _note_success(self) -> None:
        if self._schedule.failures:
            log.warning(
                "%s: writing %s to %s again after %.1f s",
                type(self).__name__,
                self.what,
                self.url,
                self.clock.seconds() - self._outage_since,
            )
            self._schedule.failures = 0

    def recovered(self) -> None:
        """For subclasses: a write outside ``write_batch`` (a spool replay) succeeded."""
        self._note_success()
