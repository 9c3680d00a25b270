"""Interactions (``ctilink.routing.interactions``) on SQLite and PostgreSQL: one row per call
built from real traces, visible while the call lives, spooled to disk during an outage and
written when the database returns, and recovered after a crash."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.task import Clock

from ctilink import db
from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.hub import Hub
from ctilink.model.events import Delivered
from ctilink.model.states import LocalConnectionState
from ctilink.routing.admin import seed_demo
from ctilink.routing.directory import CallerKey, CustomerDirectory
from ctilink.routing.interactions import InteractionRecorder
from ctilink.routing.numbers import NumberNormalizer
from ctilink.routing.schema import interactions
from tests.conftest import TRACES
from tests.routing_outages import Forwarder
from tests.stores import aio, until

pytest_plugins = ["tests.routing_fixtures"]

Engines = Callable[..., AsyncEngine]
T0 = 1_795_355_630.0


def stored(url: str) -> list[dict[str, Any]]:
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            query = sa.select(interactions).order_by(interactions.c.started)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def recorder_for(
    url: str, make_engine: Engines, spool: Path, clock: Clock | None = None, **engine: Any
) -> InteractionRecorder:
    clock = clock or Clock()
    directory = CustomerDirectory(make_engine(url), now=clock.seconds)
    return InteractionRecorder(
        make_engine(url, **engine),
        clock,
        directory=directory,
        normalizer=NumberNormalizer("US"),
        spool_dir=spool,
        tenants={"demo": "default"},
        retry_initial=1.0,
    )


def replay(hub: Hub, *names: str, start: float = T0) -> None:
    traces = load_replay([TRACES / f"{name}.jsonl" for name in names])
    ReplayAdapter("demo", traces, hub.publish, start_time=start).run_to_end()


@pytest_twisted.ensureDeferred
async def test_every_call_of_the_traces_becomes_one_interaction(
    routing_url: str, make_engine: Engines, tmp_path: Path
) -> None:
    seed_demo(routing_url)
    recorder = recorder_for(routing_url, make_engine, tmp_path / "spool")
    hub = Hub()
    await recorder.start(hub)
    replay(hub, "inbound-answered", "inbound-abandoned", "click-to-dial")
    assert recorder.calls == {}  # all ended
    await recorder.flush()
    rows = stored(routing_url)
    demo = [r for r in rows if not r["call_id"].startswith("demo-seed")]
    assert [(r["direction"], r["outcome"], r["cause"]) for r in demo] == [
        ("inbound", "answered", "normal_clearing"),
        ("inbound", "abandoned", "abandoned"),
        ("outbound", "unanswered", "normal_clearing"),
    ]
    answered, abandoned, outbound = demo
    assert (answered["queue"], answered["agent"], answered["calling_number"]) == (
        "support",
        "6001",
        "5551234567",
    )
    assert answered["started"] < answered["answered"] < answered["ended"]
    assert answered["data"] == {"CUSTOMER_ACCOUNT": "ACME-001"}
    assert answered["switch"] == "demo" and answered["tenant"] == "default"
    assert answered["switch_call_id"]
    assert (abandoned["queue"], abandoned["agent"], abandoned["answered"]) == (
        "support",
        None,
        None,
    )
    assert outbound["called_number"] == "5550001111" and outbound["customer_id"] is None
    # Customers: Alice by her IVR account, Bob by his number.
    customers = {r["calling_number"]: r["customer_id"] for r in demo[:2]}
    assert customers == {"5551234567": 1, "5559876543": 2}
    await recorder.close()


@pytest_twisted.ensureDeferred
async def test_an_interaction_is_visible_while_the_call_lives_and_after(
    routing_url: str, make_engine: Engines, tmp_path: Path
) -> None:
    recorder = recorder_for(routing_url, make_engine, tmp_path / "spool")
    hub = Hub()
    await recorder.start(hub)
    live: list[dict[str, Any] | None] = []

    def watch(event: Any) -> None:
        if getattr(event, "call_id", None) and event.TYPE == "established":
            live.append(recorder.live(event.call_id))

    hub.subscribe(watch)
    replay(hub, "inbound-answered")
    (during,) = live
    assert during is not None
    assert during["answered"] is not None and during["ended"] is None
    assert during["outcome"] is None and during["agent"] == "6001"
    call_id = during["call_id"]
    ended = recorder.live(call_id)  # ended, waiting for the batch
    assert ended is not None and ended["outcome"] == "answered"
    await recorder.flush()
    assert recorder.live(call_id) is None
    found = await recorder.find(call_id)
    assert found is not None and found["outcome"] == "answered" and found["id"] == 1
    assert await recorder.find("no-such-call") is None
    await recorder.close()


@pytest_twisted.ensureDeferred
async def test_writing_an_interaction_refreshes_the_customers_cached_history(
    routing_url: str, make_engine: Engines, tmp_path: Path
) -> None:
    seed_demo(routing_url)
    recorder = recorder_for(routing_url, make_engine, tmp_path / "spool")
    key = CallerKey("default", "ACME-001", "+15551234567")
    before = await aio(recorder.directory.lookup(key))
    hub = Hub()
    await recorder.start(hub)
    replay(hub, "inbound-answered")
    await recorder.flush()
    assert recorder.directory.peek(key) is None  # invalidated
    after = await aio(recorder.directory.lookup(key))
    assert len(after.history) == len(before.history) + 1
    assert after.history[0].agent == "6001"  # the newest first: the last agent
    await recorder.close()


# -- outages -----------------------------------------------------------------------------


class Outage:
    """The recorder's database, down and up: SQLite locked by another connection, or
    PostgreSQL behind a forwarder switched off."""

    def __init__(self, backend: str, url: str, pg_database: str | None) -> None:
        self.backend = backend
        self.forwarder = Forwarder(pg_database) if pg_database else None
        self.url = self.forwarder.url if self.forwarder else url
        if backend == "sqlite":
            path = sa.make_url(url).database
            assert path
            self.holder = sqlite3.connect(path, isolation_level=None)

    async def down(self) -> None:
        if self.forwarder:
            await self.forwarder.down()
        else:
            self.holder.execute("BEGIN EXCLUSIVE")

    async def up(self) -> None:
        if self.forwarder:
            await self.forwarder.up()
        else:
            self.holder.execute("ROLLBACK")

    async def close(self) -> None:
        if self.forwarder:
            await self.forwarder.close()
        else:
            if self.holder.in_transaction:
                self.holder.execute("ROLLBACK")
            self.holder.close()


@pytest_twisted.async_yield_fixture()
async def outage(
    routing_backend: str, routing_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Outage]:
    database = (
        request.getfixturevalue("routing_pg_database") if routing_backend == "postgresql" else None
    )
    switch = Outage(routing_backend, routing_url, database)
    yield switch
    await switch.close()


def retry_delays(clock: Clock) -> list[float]:
    return [round(call.getTime() - clock.seconds(), 6) for call in clock.getDelayedCalls()]


def spooled(spool: Path) -> list[dict[str, Any]]:
    """The rows on disk: the file being replayed (if any), then the spool."""
    rows = []
    for name in ("interactions.replay.jsonl", "interactions.spool.jsonl"):
        path = spool / name
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


@pytest_twisted.ensureDeferred
async def test_an_outage_spools_interactions_and_writes_them_when_back(
    routing_url: str,
    outage: Outage,
    make_engine: Engines,
    tmp_path: Path,
    logged_errors: list[logging.LogRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_demo(routing_url)
    spool = tmp_path / "spool"
    clock = Clock()
    recorder = recorder_for(outage.url, make_engine, spool, clock, busy_timeout=0.05)
    hub = Hub()
    await recorder.start(hub)
    await outage.down()
    replay(hub, "inbound-answered", "inbound-abandoned")
    assert recorder.buffered == 2
    clock.advance(0.2)  # the flush timer: the write fails, the batch goes to disk
    await until(lambda: retry_delays(clock) == [1.0], "the first retry")
    assert recorder.failing and recorder.buffered == 0
    assert [row["outcome"] for row in spooled(spool)] == ["answered", "abandoned"]
    assert len(logged_errors) == 1
    assert (
        logged_errors[0].getMessage().startswith("InteractionRecorder: cannot write interactions")
    )

    replay(hub, "click-to-dial", start=T0 + 100)  # still down: appended
    assert retry_delays(clock) == [1.0]
    clock.advance(1.0)  # the retry: replaying the spool fails first, the new batch follows it
    await until(lambda: retry_delays(clock) == [2.0], "the next retry")
    assert len(spooled(spool)) == 3 and recorder.buffered == 0
    assert len(logged_errors) == 1

    await outage.up()
    with caplog.at_level(logging.WARNING, logger="ctilink.routing.batching"):
        clock.advance(2.0)
        await until(lambda: not recorder.failing, "the spool written")
    assert not (spool / "interactions.spool.jsonl").exists()
    assert not (spool / "interactions.replay.jsonl").exists()
    rows = [r for r in stored(routing_url) if not r["call_id"].startswith("demo-seed")]
    assert [r["outcome"] for r in rows] == ["answered", "abandoned", "unanswered"]
    assert rows[0]["customer_id"] == 1  # resolved when written
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "again after" in warnings[0]
    await recorder.close()


@pytest_twisted.ensureDeferred
async def test_closing_during_an_outage_spools_live_and_buffered_calls(
    routing_url: str,
    outage: Outage,
    make_engine: Engines,
    tmp_path: Path,
    logged_errors: list[logging.LogRecord],
) -> None:
    spool = tmp_path / "spool"
    recorder = recorder_for(outage.url, make_engine, spool, busy_timeout=0.05)
    hub = Hub()
    await recorder.start(hub)
    await outage.down()
    replay(hub, "inbound-abandoned")
    hub.publish(
        Delivered(
            switch="demo", time=T0 + 60, call_id="live-1", device="800",
            calling_number="5551234567", called_number="800",
            connection_state=LocalConnectionState.ALERTING,
        )
    )  # fmt: skip
    await recorder.close()
    assert sorted(row["outcome"] for row in spooled(spool)) == ["abandoned", "interrupted"]
    assert len(logged_errors) == 1  # the failed write, nothing lost


@pytest_twisted.ensureDeferred
async def test_a_spool_left_by_a_crash_is_written_at_start_once(
    routing_url: str,
    make_engine: Engines,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    # A previous run: one batch spooled, a replay file half written to the database (the
    # first row is stored already), and a torn line at the end of the spool.
    first = recorder_for(routing_url, make_engine, tmp_path / "elsewhere")
    hub = Hub()
    await first.start(hub)
    replay(hub, "inbound-answered", "inbound-abandoned")
    rows = [dict(row) for row in first.pending]
    await first.flush()
    (spool / "interactions.replay.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    later = {**rows[1], "call_id": "later-call", "started": T0 + 500, "ended": T0 + 600}
    (spool / "interactions.spool.jsonl").write_text(json.dumps(later) + '\n{"call_id": "tor')

    with caplog.at_level(logging.WARNING, logger="ctilink.routing.spool"):
        recorder = recorder_for(routing_url, make_engine, spool)
        await recorder.start(Hub())
    assert [r["call_id"] for r in stored(routing_url)] == [
        rows[0]["call_id"],
        rows[1]["call_id"],
        "later-call",
    ]
    assert list(spool.iterdir()) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"spool {spool / 'interactions.replay.jsonl'}: skipping a torn line at byte"
        f" {len(json.dumps(later)) + 1}"
    ]
    await recorder.close()
    await first.close()
