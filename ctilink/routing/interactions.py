"""Interactions: the contact history, one row per call, built from the call events.

Theory of operation
-------------------
``InteractionRecorder`` is a hub consumer. Each call event updates the call's
``LiveInteraction`` in memory (visible through ``live``/``find`` while the call lives):
the first event gives the start, the direction (a call arriving at the switch, i.e. first
seen ``delivered``, is inbound; a device making a call is outbound) and the numbers; events
naming a queue or an agent set them (the agent is the one who answered, else the last one
offered); ``established`` gives the answer time; a ``failed`` is remembered;
call data is merged. ``call_cleared`` ends it with its cause and an outcome:

    answered (someone answered) | abandoned (cause "abandoned": the caller hung up while
    queued) | failed (a failed event or a failure cause) | unanswered (anything else)

A call merged into another by a transfer or conference ends as ``merged``; calls still
live when the recorder closes are stored as ``interrupted``. ctilink's own remarks
(route_request, route_selected, screen_pop) never create an interaction.

The ended interaction goes to the ``BatchWriter`` buffer and is written in batches
(``INSERT ... ON CONFLICT (call_id) DO NOTHING``: a replayed row is harmless). At write
time the customer is resolved through the directory (account from the call data, else the
customer's number: the caller's for inbound calls, the called one for outbound), and the
customer's cached history is invalidated so the next call sees it (last agent).

Outages: a batch that cannot be written is appended to the spool (``Spool``, fsync'd)
and leaves memory; before every later write the spool is replayed (and deleted once
written). An interaction is *committed* once written to the database or the spool: a crash
of the daemon after that loses nothing, since ``start`` replays what a previous run left
in the spool. Only calls that ended in the last ``flush_interval`` before a crash are
lost (as with the event log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ctilink.db import insert_for
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.reactor import deferred
from ctilink.routing.batching import BatchWriter
from ctilink.routing.directory import CallerKey, CustomerDirectory
from ctilink.routing.numbers import NumberNormalizer
from ctilink.routing.schema import interactions
from ctilink.routing.spool import Spool

FAILURE_CAUSES: Final = frozenset(
    {"busy", "congestion", "unallocated_number", "call_rejected", "no_route_destination"}
)
_REMARKS: Final = (ev.RouteRequest, ev.RouteSelected, ev.ScreenPop)


@dataclass
class LiveInteraction:
    call_id: str
    switch: str
    tenant: str
    direction: str
    started: float
    calling_number: str | None
    called_number: str | None
    answered: float | None = None
    ended: float | None = None
    queue: str | None = None
    agent: str | None = None
    offered_agent: str | None = None
    outcome: str | None = None
    cause: str | None = None
    switch_call_id: str | None = None
    failed: bool = False
    data: dict[str, str] = field(default_factory=dict)

    def end(self, time: float, cause: str | None, outcome: str | None = None) -> dict[str, Any]:
        self.ended = time
        self.cause = cause or self.cause
        self.outcome = outcome or self._outcome()
        return self.row()

    def _outcome(self) -> str:
        if self.answered is not None:
            return "answered"
        if self.cause == "abandoned":
            return "abandoned"
        if self.failed or self.cause in FAILURE_CAUSES:
            return "failed"
        return "unanswered"

    def row(self) -> dict[str, Any]:
        """The row to store (JSON-able: it may go to the spool)."""
        row = asdict(self)
        row["agent"] = self.agent or (self.offered_agent if self.answered else None)
        for internal in ("offered_agent", "failed"):
            del row[internal]
        return row


class InteractionRecorder(BatchWriter[dict[str, Any]]):
    """Hub consumer recording interactions (see the module docstring)."""

    what = "interactions"

    def __init__(
        self,
        engine: AsyncEngine,
        clock: IReactorTime,
        *,
        directory: CustomerDirectory,
        normalizer: NumberNormalizer,
        spool_dir: Path,
        tenants: Mapping[str, str] | None = None,
        account_keys: tuple[str, ...] = ("CUSTOMER_ACCOUNT", "account"),
        **options: Any,
    ) -> None:
        super().__init__(engine, clock, **options)
        self.directory = directory
        self.normalizer = normalizer
        self.spool = Spool(spool_dir, "interactions")
        self.tenants = dict(tenants or {})
        self.account_keys = account_keys
        self.calls: dict[str, LiveInteraction] = {}
        self._insert = (
            insert_for(engine.dialect.name, interactions)
            .on_conflict_do_nothing(index_elements=["call_id"])
            .execution_options(preserve_rowcount=True)
        )
        self._unsubscribe: Callable[[], None] | None = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self, hub: Hub) -> Deferred[None]:
        """Subscribe, and write what a previous run left in the spool (if the database is
        up; otherwise it waits for the retries)."""
        self._unsubscribe = hub.subscribe(self)
        return self.flush().addErrback(lambda _: None)

    async def aclose(self) -> None:
        """Unsubscribe, store live calls as interrupted, write (or spool) everything."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        now = self.clock.seconds()
        for live in list(self.calls.values()):
            self.add(live.end(now, "shutdown", "interrupted"))
        self.calls.clear()
        await super().aclose()

    # -- the hub side ------------------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        if not isinstance(event, ev.CallEvent) or isinstance(event, _REMARKS):
            return
        live = self.calls.get(event.call_id)
        if live is None:
            if isinstance(event, ev.CallCleared):
                return
            live = self._begin(event)
        self._update(live, event)
        if isinstance(event, ev.Transferred | ev.Conferenced) and event.secondary_call_id:
            merged = self.calls.pop(event.secondary_call_id, None)
            if merged is not None:
                self.add(merged.end(event.time, event.cause or "transfer", "merged"))
        if isinstance(event, ev.CallCleared):
            del self.calls[event.call_id]
            self.add(live.end(event.time, event.cause))

    def _begin(self, event: ev.CallEvent) -> LiveInteraction:
        direction = "inbound" if isinstance(event, ev.Delivered) else "outbound"
        if not isinstance(event, ev.Delivered | ev.ServiceInitiated | ev.Originated):
            direction = "unknown"
        live = LiveInteraction(
            call_id=event.call_id,
            switch=event.switch,
            tenant=self.tenants.get(event.switch, "default"),
            direction=direction,
            started=event.time,
            calling_number=event.calling_number,
            called_number=event.called_number,
        )
        self.calls[event.call_id] = live
        return live

    def _update(self, live: LiveInteraction, event: ev.CallEvent) -> None:
        live.calling_number = event.calling_number or live.calling_number
        live.called_number = event.called_number or live.called_number
        live.queue = event.queue or live.queue
        live.switch_call_id = event.switch_call_id or live.switch_call_id
        live.data.update(event.data)
        if event.cause:
            live.cause = event.cause
        if isinstance(event, ev.Delivered) and event.agent:
            live.offered_agent = event.agent
        elif isinstance(event, ev.Established):
            if live.answered is None:
                live.answered = event.time
            if event.agent:
                live.agent = event.agent
        elif isinstance(event, ev.Failed):
            live.failed = True

    # -- reads -------------------------------------------------------------------------------
    def live(self, call_id: str) -> dict[str, Any] | None:
        """The interaction of ``call_id`` while in memory (live, or ended and not yet
        stored), as a row; None otherwise."""
        found = self.calls.get(call_id)
        if found is not None:
            return found.row()
        for row in (*self.inflight, *self.pending):
            if row["call_id"] == call_id:
                return row
        return None

    def find(self, call_id: str) -> Deferred[dict[str, Any] | None]:
        """The interaction of ``call_id`` from memory or the database (None if neither)."""
        return deferred(self._find(call_id))

    async def _find(self, call_id: str) -> dict[str, Any] | None:
        found = self.live(call_id)
        if found is not None:
            return found
        query = sa.select(interactions).where(interactions.c.call_id == call_id)
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return dict(row._mapping) if row is not None else None

    # -- writing -----------------------------------------------------------------------------
    async def write_batch(self, batch: list[dict[str, Any]]) -> None:
        await self._store(batch)

    async def _store(self, rows: list[dict[str, Any]]) -> None:
        async with self.engine.begin() as connection:
            values = []
            for row in rows:
                customer = await self._customer(row, connection)
                values.append({**row, "customer_id": customer})
            await connection.execute(self._insert, values)
        for value in values:
            if value["customer_id"] is not None:
                self.directory.invalidate_customer(value["customer_id"])

    async def _customer(self, row: Mapping[str, Any], connection: AsyncConnection) -> int | None:
        data = row.get("data") or {}
        account = next((data[k] for k in self.account_keys if data.get(k)), None)
        number = row["called_number"] if row["direction"] == "outbound" else row["calling_number"]
        key = CallerKey(row["tenant"], account, self.normalizer.normalize(number))
        if not (key.account or key.number):
            return None
        caller = await self.directory.lookup(key, connection)
        return caller.customer.id if caller.customer is not None else None

    async def before_writing(self) -> None:
        replayed = False
        while True:
            path = await asyncio.to_thread(self.spool.take)
            if path is None:
                break
            replayed = True
            offset = 0
            while True:
                rows, offset = await asyncio.to_thread(
                    Spool.read_chunk, path, offset, self.batch_size
                )
                if not rows:
                    break
                await self._store(rows)
                self.written += len(rows)
            await asyncio.to_thread(self.spool.done, path)
        if replayed:
            self.recovered()

    async def on_failure(self, batch: list[dict[str, Any]]) -> bool:
        await asyncio.to_thread(self.spool.append, batch)
        return True
