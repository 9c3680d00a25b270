"""The event log (ctilink.store) and the database layer (ctilink.db), on real databases.

Every main test runs twice, on SQLite and on PostgreSQL (``backend`` and the databases of
``tests/store_fixtures.py``). Scheduling uses ``task.Clock`` (nothing is written until a
test advances it or flushes); I/O is real. Database outages: ``test_store_outages.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater

from ctilink import db
from ctilink.errors import ConfigError
from ctilink.hub import Hub
from ctilink.model.events import AgentNotReady, Event, LinkUp, ScreenPop
from ctilink.model.states import AgentState, LocalConnectionState
from ctilink.model.wire import event_json
from ctilink.store import EventLog
from tests.stores import T0, aio, count_inserts, delivered, publish, stored_rows, until

pytest_plugins = ["tests.store_fixtures"]


# -- db: URLs, engines, migrations -----------------------------------------------------


def test_urls_pick_asyncio_drivers_for_runtime_and_sync_ones_for_migrations() -> None:
    assert db.async_url("sqlite:///var/ctilink.db").drivername == "sqlite+aiosqlite"
    assert db.sync_url("sqlite+aiosqlite:///var/ctilink.db").drivername == "sqlite"
    for url in ("postgresql://u:p@h/d", "postgres://u:p@h/d", "postgresql+psycopg2://u@h/d"):
        assert db.async_url(url).drivername == "postgresql+psycopg"
        assert db.sync_url(url).drivername == "postgresql+psycopg"
    assert db.async_url("postgresql://u:p%40ss@h/d").password == "p@ss"


def test_masked_urls_and_url_errors_never_show_the_password() -> None:
    assert db.masked("postgresql://ctilink:s3cret@db:5432/cti") == (
        "postgresql://ctilink:***@db:5432/cti"
    )
    with pytest.raises(ConfigError) as bad:
        db.async_url("postgresql//ctilink:s3cret@db/cti")
    assert "s3cret" not in str(bad.value)
    with pytest.raises(ConfigError) as unsupported:
        db.create_engine("mysql://ctilink:s3cret@db/cti")
    assert "s3cret" not in str(unsupported.value)
    assert "mysql" in str(unsupported.value)


@pytest_twisted.ensureDeferred
async def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(
    tmp_path: Path, make_engine: Callable[..., AsyncEngine]
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout=2.5)

    async def pragmas() -> dict[str, Any]:
        async with engine.connect() as connection:
            return {
                name: await connection.scalar(sa.text(f"PRAGMA {name}"))
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }

    assert await aio(pragmas()) == {
        "journal_mode": "wal",
        "busy_timeout": 2500,
        "foreign_keys": 1,
        "synchronous": 1,  # NORMAL
    }


def test_upgrade_creates_the_event_log_and_is_idempotent(db_url: str) -> None:
    assert db.current_revision(db_url) is None
    db.upgrade(db_url)
    assert db.current_revision(db_url) == db.head_revision()
    db.upgrade(db_url)  # nothing to do, no error
    assert db.current_revision(db_url) == db.head_revision()

    engine = db.create_sync_engine(db_url)
    try:
        inspector = sa.inspect(engine)
        columns = {c["name"]: c for c in inspector.get_columns("event_log")}
        assert list(columns) == ["seq", "time", "logged_at", "switch", "type", "call_id", "body"]
        assert [name for name, c in columns.items() if c["nullable"]] == ["call_id"]
        assert inspector.get_pk_constraint("event_log")["constrained_columns"] == ["seq"]
        if engine.dialect.name == "postgresql":  # SQLite does not keep constraint names
            assert inspector.get_pk_constraint("event_log")["name"] == "pk_event_log"
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("event_log")}
        assert indexes == {
            "ix_event_log_logged_at": ["logged_at"],
            "ix_event_log_call_id": ["call_id"],
        }
    finally:
        engine.dispose()

    db.downgrade(db_url, "base")
    assert db.current_revision(db_url) is None
    db.upgrade(db_url)
    assert db.current_revision(db_url) == db.head_revision()


# -- event log: storing, numbering, reading --------------------------------------------


@pytest_twisted.ensureDeferred
async def test_published_events_are_stored_with_their_seq_and_exact_wire_json(
    url: str, make_engine: Callable[..., AsyncEngine]
) -> None:
    clock = Clock()
    clock.advance(T0 + 5)
    log = EventLog(make_engine(url), clock=clock)
    hub = Hub()
    assert await log.start(hub) == 1
    events = [
        hub.publish(delivered(1, data={"crm_ref": "Zoë ☎ 42"})),
        hub.publish(
            AgentNotReady(
                switch="pbx1", time=T0 + 2, agent="1001", state=AgentState.NOT_READY, reason="lunch"
            )
        ),
        hub.publish(LinkUp(switch="pbx2", time=T0 + 3, detail="AMI 6.0")),
        hub.publish(
            ScreenPop(
                switch="pbx1",
                time=T0 + 4,
                call_id="call-1",
                device="201",
                calling_number="+33612345678",
                called_number="201",
                connection_state=LocalConnectionState.ALERTING,
                customer={"name": "Zoë", "vip": True, "balance": 12.5},
            )
        ),
    ]
    await log.flush()

    rows = await aio(stored_rows(url))
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert [r.body for r in rows] == [event_json(e) for e in events]
    assert [(r.type, r.switch, r.call_id) for r in rows] == [
        ("delivered", "pbx1", "call-1"),
        ("agent_not_ready", "pbx1", None),
        ("link_up", "pbx2", None),
        ("screen_pop", "pbx1", "call-1"),
    ]
    assert [r.time for r in rows] == [e.time for e in events]
    assert {r.logged_at for r in rows} == {T0 + 5}
    assert log.written == 4
    assert log.buffered == 0
    await log.close()


@pytest_twisted.ensureDeferred
async def test_numbering_continues_after_a_restart(
    url: str, make_engine: Callable[..., AsyncEngine]
) -> None:
    first = EventLog(make_engine(url), clock=Clock())
    hub = Hub()
    assert await first.start(hub) == 1
    publish(hub, 3)
    await first.close()  # flushes

    second = EventLog(make_engine(url), clock=Clock())
    restarted = Hub()
    assert await second.start(restarted) == 4
    assert await second.last_seq() == 3
    assert restarted.publish(delivered(9)).seq == 4
    assert await second.last_seq() == 4  # buffered events count
    await second.close()

    assert [r.seq for r in await aio(stored_rows(url))] == [1, 2, 3, 4]


@pytest_twisted.ensureDeferred
async def test_an_event_log_read_on_an_empty_database(
    url: str, make_engine: Callable[..., AsyncEngine]
) -> None:
    log = EventLog(make_engine(url), clock=Clock())
    assert await log.last_seq() == 0
    assert await log.oldest_seq() is None
    assert await log.events_since(0) == []
    await log.close()


@pytest_twisted.ensureDeferred
async def test_events_since_merges_stored_and_buffered_events_in_order(
    url: str, make_engine: Callable[..., AsyncEngine]
) -> None:
    log = EventLog(make_engine(url), clock=Clock())
    hub = Hub()
    await log.start(hub)
    published = publish(hub, 10)
    await log.flush()
    published += publish(hub, 5, start=10)  # still in memory
    assert log.buffered == 5

    def seqs(objects: list[dict[str, Any]]) -> list[int]:
        return [o["seq"] for o in objects]

    everything = await log.events_since(0, limit=100)
    assert everything == [json.loads(event_json(e)) for e in published]
    assert seqs(await log.events_since(7, limit=3)) == [8, 9, 10]
    assert seqs(await log.events_since(8, limit=4)) == [9, 10, 11, 12]
    assert seqs(await log.events_since(12)) == [13, 14, 15]
    assert await log.events_since(15) == []
    assert await log.oldest_seq() == 1

    # A read racing a flush sees every event exactly once.
    flushing = log.flush()
    racing = await log.events_since(8, limit=100)
    await flushing
    assert seqs(racing) == list(range(9, 16))
    assert seqs(await log.events_since(8, limit=100)) == list(range(9, 16))
    await log.close()


@pytest_twisted.ensureDeferred
async def test_events_are_written_in_batches_one_insert_each(
    url: str, make_engine: Callable[..., AsyncEngine]
) -> None:
    clock = Clock()
    engine = make_engine(url)
    inserts = count_inserts(engine)
    log = EventLog(engine, clock=clock, batch_size=100, flush_interval=0.2)
    hub = Hub()
    await log.start(hub)

    publish(hub, 250)  # a full batch starts the writer; it drains what is there
    await until(lambda: log.written == 250, "250 events written")
    assert inserts == [100, 100, 50]

    publish(hub, 3, start=250)  # a short batch waits for the flush interval
    clock.advance(0.1)
    await deferLater(reactor, 0.05, lambda: None)
    assert inserts == [100, 100, 50]
    clock.advance(0.1)
    await until(lambda: log.written == 253, "the timed flush")
    assert inserts == [100, 100, 50, 3]
    assert [r.seq for r in await aio(stored_rows(url))] == list(range(1, 254))
    await log.close()


@pytest_twisted.ensureDeferred
async def test_prune_keeps_recent_events_and_always_the_newest(
    url: str, make_engine: Callable[..., AsyncEngine]
) -> None:
    clock = Clock()
    log = EventLog(make_engine(url), clock=clock, retention=60.0, prune_interval=200.0)
    hub = Hub()
    await log.start(hub)
    publish(hub, 3)  # logged at t=0
    clock.advance(5)  # (also fires the flush timer)
    publish(hub, 3, start=3)  # logged at t=5
    await log.flush()

    assert await log.prune(older_than=2) == 3
    assert await log.oldest_seq() == 4
    assert [o["seq"] for o in await log.events_since(0)] == [4, 5, 6]

    # The periodic prune (retention 60 s) empties an idle log but for its newest row,
    # so numbering survives a restart.
    clock.advance(1000)

    async def remaining() -> list[int]:
        return [r.seq for r in await stored_rows(url)]

    deadline = time.monotonic() + 10
    while await aio(remaining()) != [6]:
        assert time.monotonic() < deadline, "periodic prune did not run"
        clock.advance(200)
        await deferLater(reactor, 0.01, lambda: None)
    assert await log.last_seq() == 6
    await log.close()


@pytest_twisted.ensureDeferred
async def test_close_writes_what_is_buffered(
    url: str, make_engine: Callable[..., AsyncEngine]
) -> None:
    log = EventLog(make_engine(url), clock=Clock())
    hub = Hub()
    await log.start(hub)
    publish(hub, 7)
    await log.close()
    await log.close()  # idempotent
    assert [r.seq for r in await aio(stored_rows(url))] == list(range(1, 8))
    publish(hub, 1, start=7)  # unsubscribed: the log no longer sees events
    assert log.buffered == 0


@pytest_twisted.ensureDeferred
async def test_numbering_collision_is_reported_once(
    url: str, make_engine: Callable[..., AsyncEngine], logged_errors: list[logging.LogRecord]
) -> None:
    first = EventLog(make_engine(url), clock=Clock())
    hub = Hub()
    await first.start(hub)
    publish(hub, 3)
    await first.close()

    careless = EventLog(make_engine(url), clock=Clock())
    other = Hub()
    other.subscribe(careless)  # without start(): numbering starts at 1 again
    publish(other, 2)
    await careless.flush()
    publish(other, 2, start=2)
    await careless.flush()
    assert [r.getMessage() for r in logged_errors] == [
        "event log: 2 of 2 events (seq 1..2) were already stored, so not logged; "
        "was the hub's numbering continued from last_seq()?"
    ]
    await careless.close()


@pytest_twisted.ensureDeferred
async def test_an_unserializable_event_is_reported_and_never_reaches_the_hub(
    url: str, make_engine: Callable[..., AsyncEngine], logged_errors: list[logging.LogRecord]
) -> None:
    log = EventLog(make_engine(url), clock=Clock())
    hub = Hub()
    await log.start(hub)
    seen: list[Event] = []
    hub.subscribe(seen.append)
    circular: dict[str, Any] = {}
    circular["self"] = circular
    broken = ScreenPop(
        switch="pbx1",
        time=T0,
        call_id="call-1",
        device="201",
        calling_number=None,
        called_number="201",
        connection_state=LocalConnectionState.ALERTING,
        customer=circular,  # not JSON
    )
    published = [hub.publish(delivered(1)), hub.publish(broken), hub.publish(delivered(2))]
    assert seen == published
    await log.flush()
    assert [r.seq for r in await aio(stored_rows(url))] == [1, 3]
    assert log.dropped == 1
    assert [r.getMessage() for r in logged_errors] == [
        "event log: cannot serialize event seq=2 (screen_pop)"
    ]
    await log.close()
