"""The event log: every published event, numbered, kept in the database for a while.

Theory of operation
-------------------
``EventLog`` is a hub consumer. Its ``__call__`` is synchronous and cheap: it turns the
event into the wire JSON (``ctilink.model.wire``, the one serializer) and appends a row to
an in-memory buffer. Writing happens later, off the hub's path:

* a timer (``flush_interval`` after the first buffered event, from an injectable Twisted
  clock) or a full batch (``batch_size`` events) starts a writer;
* the writer is an asyncio coroutine on the reactor's loop (bridged with
  ``Deferred.fromFuture``); it takes batches from the front of the buffer and writes each
  as one ``INSERT ... ON CONFLICT (seq) DO NOTHING`` executed for all its rows
  (SQLAlchemy's executemany: psycopg sends the batch in one pipelined round trip, SQLite
  steps one prepared statement; both beat a literal multi-VALUES statement, which
  SQLAlchemy cannot cache) in its own transaction. ``DO NOTHING`` makes a batch retried
  after an ambiguous failure (committed, but the reply was lost) harmless. One writer runs
  at a time (an asyncio lock), so rows go in in seq order and the database always holds a
  prefix of what was published; the buffer holds the rest.

When a write fails, the batch goes back to the front of the buffer, ONE error is logged for
the outage (with the reason and the URL, password masked), and the writer retries with
capped exponential backoff; recovery is logged at warning with how many events waited and
how many were dropped. The buffer is bounded (``max_buffer``): beyond it the oldest events
are dropped and counted in ``dropped`` (one error per episode). Nothing here ever raises
into the hub or blocks it.

Reads (``last_seq``, ``oldest_seq``, ``events_since``) merge the database with the buffer, so
an event is visible from the moment it is published, including during an outage.

Retention: ``prune`` deletes events logged (by the daemon's clock, not the switch's) more
than ``retention`` seconds ago, but always keeps the newest row so that numbering can
continue after a restart of an idle daemon; ``start`` runs it every ``prune_interval``.

Daemon wiring: ``upgrade(url)`` before the reactor runs; then ``log = EventLog(create_engine
(url))`` and ``await log.start(hub)`` (fires with the first seq of this run) before any
adapter publishes; ``await log.close()`` on stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any, NamedTuple, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from ctilink.db import failure_reason, insert_for, masked, metadata
from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.model.wire import event_json
from ctilink.reactor import deferred
from ctilink.writes import WriteSchedule

log = logging.getLogger(__name__)


event_log = sa.Table(
    "event_log",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("time", sa.Double(), nullable=False),
    sa.Column("logged_at", sa.Double(), nullable=False, index=True),
    sa.Column("switch", sa.Text(), nullable=False),
    sa.Column("type", sa.Text(), nullable=False),
    sa.Column("call_id", sa.Text(), nullable=True, index=True),
    sa.Column("body", sa.Text(), nullable=False),
)


class DelayedCall(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What ``EventLog`` needs of ``IReactorTime`` (the reactor, or ``task.Clock`` in tests)."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., Any], /) -> DelayedCall: ...


class _Row(NamedTuple):
    seq: int
    time: float
    logged_at: float
    switch: str
    type: str
    call_id: str | None
    body: str


class EventLog:
    """Hub consumer that stores events in ``event_log``; see the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock | None = None,
        flush_interval: float = 0.2,
        batch_size: int = 500,
        max_buffer: int = 100_000,
        retention: float = 3600.0,
        prune_interval: float = 60.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        write_timeout: float = 30.0,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(Clock, reactor)
        self._engine = engine
        self._clock = clock
        self._url = masked(engine.url)
        self._insert = (
            insert_for(engine.dialect.name, event_log)
            .on_conflict_do_nothing(index_elements=["seq"])
            .execution_options(preserve_rowcount=True)  # else an INSERT's count is not kept
        )
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.retention = retention
        self.prune_interval = prune_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.write_timeout = write_timeout

        self.written = 0  # events stored by this instance
        self.dropped = 0  # events never to be stored: buffer full, unserializable, closed

        self._pending: deque[_Row] = deque()
        self._inflight: list[_Row] = []  # the batch being written, older than _pending
        self._lock = asyncio.Lock()  # one writer at a time
        self._writers = 0  # writes started and not finished (waiting for the lock or running)
        self._schedule = WriteSchedule(
            cast(IReactorTime, clock),
            lambda: self._start_writer(None, quiet=True),
            flush_interval=flush_interval,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )
        self.errors = 0  # failed writes since start (a metric)
        self._outage_since = 0.0
        self._episode_dropped = 0
        self._drop_reported = False
        self._collision_reported = False
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._pruner = LoopingCall(self._prune_tick)
        self._pruner.clock = cast(IReactorTime, clock)

    # -- the hub side -------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if self._closed:
            self.dropped += 1
            return
        try:
            body = event_json(event)
        except Exception:  # a bug upstream; the hub must not see it from here
            self.dropped += 1
            log.exception("event log: cannot serialize event seq=%d (%s)", event.seq, event.TYPE)
            return
        call_id = getattr(event, "call_id", None)
        row = _Row(
            event.seq, event.time, self._clock.seconds(), event.switch, event.TYPE, call_id, body
        )
        if len(self._pending) + len(self._inflight) >= self.max_buffer and self._pending:
            self._drop_oldest(1)
        self._pending.append(row)
        self._reschedule()

    @property
    def buffered(self) -> int:
        """Events published and not yet known to be stored."""
        return len(self._pending) + len(self._inflight)

    @property
    def failing(self) -> bool:
        """True while writes fail (from the first failure to the next success)."""
        return self._schedule.failures > 0

    # -- life cycle ---------------------------------------------------------------------

    def start(self, hub: Hub) -> Deferred[int]:
        """Continue ``hub``'s numbering after the last stored seq, subscribe, start pruning.

        Call before anything publishes; fires with the first seq this run will assign
        (1 on an empty log).
        """
        return deferred(self._start(hub))

    async def _start(self, hub: Hub) -> int:
        first = await self._last_seq() + 1
        hub.restart_numbering(first)
        self._unsubscribe = hub.subscribe(self)
        if not self._pruner.running:
            self._pruner.start(self.prune_interval, now=False)
        return first

    def flush(self) -> Deferred[None]:
        """Write every event buffered now; fails (events stay buffered) if the DB refuses."""
        tail = chain(self._inflight, self._pending)
        upto = max((row.seq for row in tail), default=0)
        return self._start_writer(upto, quiet=False)

    def close(self) -> Deferred[None]:
        """Unsubscribe, stop timers, try once to write what is buffered, dispose the engine.

        Never fails: events that cannot be written are logged (error) and counted as dropped.
        Calling it again waits for the same close.
        """
        if self._closing is None:
            self._closed = True
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            if self._pruner.running:
                self._pruner.stop()
            self._schedule.cancel()
            self._closing = asyncio.ensure_future(self._close())
        return Deferred.fromFuture(asyncio.shield(self._closing))

    async def _close(self) -> None:
        try:
            await self._write(None)
        except Exception:
            lost = self.buffered
            self.dropped += lost
            self._pending.clear()
            log.error("event log: closing with %d events not written to %s", lost, self._url)
        finally:
            await self._engine.dispose()

    # -- reads --------------------------------------------------------------------------

    def last_seq(self) -> Deferred[int]:
        """The highest seq logged (stored or buffered); 0 on an empty log."""
        return deferred(self._last_seq())

    async def _last_seq(self) -> int:
        if self._pending or self._inflight:  # the database holds an older prefix
            return (self._pending or self._inflight)[-1].seq
        async with self._engine.connect() as connection:
            stored = await connection.scalar(sa.select(sa.func.max(event_log.c.seq)))
        return int(stored or 0)

    def oldest_seq(self) -> Deferred[int | None]:
        """The lowest seq still available (stored or buffered); None on an empty log."""
        return deferred(self._oldest_seq())

    async def _oldest_seq(self) -> int | None:
        oldest_buffered = next(chain(self._inflight, self._pending), None)
        async with self._engine.connect() as connection:
            stored = await connection.scalar(sa.select(sa.func.min(event_log.c.seq)))
        if stored is not None:
            return int(stored)
        return oldest_buffered.seq if oldest_buffered is not None else None

    def events_since(self, seq: int, limit: int = 1000) -> Deferred[list[dict[str, Any]]]:
        """Up to ``limit`` wire objects with a seq above ``seq``, in seq order.

        Seqs are consecutive unless events were dropped (buffer overflow during an outage)
        or pruned; a resuming client should compare the first seq with ``seq + 1``.
        """
        return deferred(self._events_since(seq, limit))

    async def _events_since(self, seq: int, limit: int) -> list[dict[str, Any]]:
        # Snapshot the buffer first: rows written while we query are then in one of the two.
        memory = self._memory_after(seq)
        if not (memory and memory[0].seq == seq + 1):
            query = (
                sa.select(event_log.c.seq, event_log.c.body)
                .where(event_log.c.seq > seq)
                .order_by(event_log.c.seq)
                .limit(limit)
            )
            async with self._engine.connect() as connection:
                stored = (await connection.execute(query)).all()
            last = stored[-1].seq if stored else seq
            bodies = [row.body for row in stored]
            bodies.extend(row.body for row in memory if row.seq > last)
        else:
            bodies = [row.body for row in memory]
        return [json.loads(body) for body in bodies[:limit]]

    def _memory_after(self, seq: int) -> list[_Row]:
        return [row for row in chain(self._inflight, self._pending) if row.seq > seq]

    # -- retention ----------------------------------------------------------------------

    def prune(self, older_than: float | None = None) -> Deferred[int]:
        """Delete events logged more than ``older_than`` (default ``retention``) seconds ago.

        The newest stored event is always kept (it carries the numbering across restarts).
        Fires with the number of events deleted.
        """
        keep = self.retention if older_than is None else older_than
        return deferred(self._prune(self._clock.seconds() - keep))

    async def _prune(self, cutoff: float) -> int:
        newest = sa.select(sa.func.max(event_log.c.seq)).scalar_subquery()
        statement = event_log.delete().where(
            event_log.c.logged_at < cutoff, event_log.c.seq < newest
        )
        async with asyncio.timeout(self.write_timeout), self._engine.begin() as connection:
            result = await connection.execute(statement)
        return result.rowcount

    def _prune_tick(self) -> Deferred[None]:
        def done(deleted: int) -> None:
            log.debug("event log: pruned %d events", deleted)

        def failed(failure: Any) -> None:
            # A down database is reported by the writer; don't fail the LoopingCall.
            log.warning("event log: pruning failed: %s", self._reason(failure.value))

        return self.prune().addCallbacks(done, failed)

    # -- the writer ---------------------------------------------------------------------

    def _reschedule(self) -> None:
        if self._closed or self._writers or not self._pending:
            return
        self._schedule.due(len(self._pending), self.batch_size)

    def _start_writer(self, upto: int | None, *, quiet: bool) -> Deferred[None]:
        """Write the buffer (up to seq ``upto``); ``quiet``: swallow the failure (logged)."""
        self._writers += 1

        def done(result: Any) -> Any:
            self._writers -= 1
            failed = isinstance(result, Failure)
            if not self._closed:
                if failed:
                    self._schedule.failed()
                elif self._pending:
                    self._reschedule()
                else:
                    self._schedule.cancel()
            return None if quiet else result

        return deferred(self._write(upto)).addBoth(done)

    async def _write(self, upto: int | None) -> None:
        async with self._lock:
            while self._pending and (upto is None or self._pending[0].seq <= upto):
                batch = self._take(upto)
                self._inflight = batch
                try:
                    async with asyncio.timeout(self.write_timeout):
                        inserted = await self._insert_batch(batch)
                except BaseException as exc:
                    self._inflight = []
                    self._requeue(batch)
                    if isinstance(exc, Exception):
                        self._note_failure(exc)
                    raise
                self._inflight = []
                self._note_success(batch, inserted)

    def _take(self, upto: int | None) -> list[_Row]:
        batch: list[_Row] = []
        pending = self._pending
        while pending and len(batch) < self.batch_size:
            if upto is not None and pending[0].seq > upto:
                break
            batch.append(pending.popleft())
        return batch

    async def _insert_batch(self, batch: list[_Row]) -> int:
        async with self._engine.begin() as connection:
            result = await connection.execute(self._insert, [row._asdict() for row in batch])
        return int(result.rowcount)

    def _requeue(self, batch: Iterable[_Row]) -> None:
        self._pending.extendleft(reversed(list(batch)))
        excess = len(self._pending) - self.max_buffer
        if excess > 0:
            self._drop_oldest(excess)

    def _drop_oldest(self, count: int) -> None:
        for _ in range(count):
            self._pending.popleft()
        self.dropped += count
        self._episode_dropped += count
        if not self._drop_reported:
            self._drop_reported = True
            log.error(
                "event log: %d events waiting for %s, the most kept in memory; dropping "
                "the oldest until writes catch up",
                self.max_buffer,
                self._url,
            )

    def _note_failure(self, exc: Exception) -> None:
        self._schedule.failures += 1
        self.errors += 1
        if self._schedule.failures == 1:
            self._outage_since = self._clock.seconds()
            log.error(
                "event log: cannot write to %s (%s); keeping up to %d events in memory "
                "and retrying",
                self._url,
                self._reason(exc),
                self.max_buffer,
            )
        else:
            failures = self._schedule.failures
            log.debug("event log: write attempt %d failed: %s", failures, self._reason(exc))

    def _note_success(self, batch: list[_Row], inserted: int) -> None:
        self.written += inserted
        if self._schedule.failures:
            log.warning(
                "event log: writing to %s again after %.1f s; %d events were waiting, %d dropped",
                self._url,
                self._clock.seconds() - self._outage_since,
                len(batch) + len(self._pending),
                self._episode_dropped,
            )
            self._schedule.failures = 0
            self._episode_dropped = 0
            self._drop_reported = False
            return  # a retried batch may be partly stored already: not a collision
        if inserted < len(batch) and not self._collision_reported:
            self._collision_reported = True
            log.error(
                "event log: %d of %d events (seq %d..%d) were already stored, so not "
                "logged; was the hub's numbering continued from last_seq()?",
                len(batch) - inserted,
                len(batch),
                batch[0].seq,
                batch[-1].seq,
            )
        if self._drop_reported and not self._pending:
            log.warning("event log: caught up; %d events were dropped", self._episode_dropped)
            self._episode_dropped = 0
            self._drop_reported = False

    def _reason(self, exc: BaseException) -> str:
        return failure_reason(exc, self._engine, self.write_timeout)
