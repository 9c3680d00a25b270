"""The event log (ctilink.store) and the database layer (ctilink.db), on real databases.

Every main test runs twice: on SQLite in ``tmp_path`` and on the PostgreSQL server at
127.0.0.1:5432, in a database created for this test session and dropped at its end. The
PostgreSQL tests fail (never skip) when the server is unreachable: CI must run them.

Scheduling uses ``task.Clock`` (nothing is written until a test advances it or flushes);
I/O is real. Outages are real too: PostgreSQL is reached through a TCP forwarder that the
test turns off (connections aborted, port refusing) and on again; SQLite is locked by
another connection holding an exclusive transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
import pytest
import pytest_twisted
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock, deferLater
from twisted.protocols import portforward

from ctilink import db
from ctilink.errors import ConfigError
from ctilink.hub import Hub
from ctilink.model.events import (
    AgentNotReady,
    Delivered,
    Event,
    LinkUp,
    ScreenPop,
)
from ctilink.model.states import AgentState, LocalConnectionState
from ctilink.model.wire import event_json
from ctilink.store import EventLog, event_log

T = TypeVar("T")

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_MAINTENANCE = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test"
T0 = 1_795_000_000.0


# -- helpers ---------------------------------------------------------------------------


def aio(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Await an asyncio coroutine from a Twisted-driven test."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.005, lambda: None)


def delivered(n: int = 0, **extra: Any) -> Delivered:
    return Delivered(
        switch="pbx1",
        time=T0 + n,
        call_id=f"call-{n}",
        device="201",
        calling_number="+33612345678",
        called_number="201",
        connection_state=LocalConnectionState.ALERTING,
        **extra,
    )


def publish(hub: Hub, count: int, start: int = 0) -> list[Event]:
    return [hub.publish(delivered(start + i)) for i in range(count)]


async def stored_rows(url: str) -> list[Any]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as connection:
            query = sa.select(event_log).order_by(event_log.c.seq)
            return list((await connection.execute(query)).all())
    finally:
        await engine.dispose()


def count_inserts(engine: AsyncEngine) -> list[int]:
    """Rows per INSERT statement executed on ``engine``, appended as they are executed."""
    inserts: list[int] = []

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EVENT_LOG"):
            inserts.append(len(parameters) if executemany else 1)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", before)
    return inserts


# -- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (no skip: unreachable is a failure)."""
    name = f"ctilink_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def pg_url(database: str, port: int = PG_PORT, password: str | None = None) -> str:
    auth = f"postgres:{password}" if password else "postgres"
    return f"postgresql://{auth}@{PG_HOST}:{port}/{database}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database (no tables) of the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ctilink.db'}"
    return empty_pg_url(request.getfixturevalue("pg_database"))


def empty_pg_url(database: str) -> str:
    """The session's PostgreSQL database, emptied of what earlier tests left."""
    with psycopg.connect(
        f"host={PG_HOST} port={PG_PORT} user=postgres dbname={database}", autocommit=True
    ) as connection:
        connection.execute("DROP TABLE IF EXISTS event_log, alembic_version")
    return pg_url(database)


@pytest.fixture
def url(db_url: str) -> str:
    """A database of the backend under test, migrated to head."""
    db.upgrade(db_url)
    return db_url


@pytest_twisted.async_yield_fixture()
async def make_engine() -> AsyncIterator[Callable[..., AsyncEngine]]:
    """create_engine that disposes what it made at the end of the test."""
    engines: list[AsyncEngine] = []

    def make(url: str, **kwargs: Any) -> AsyncEngine:
        engine = db.create_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await aio(engine.dispose())


# -- outages ---------------------------------------------------------------------------


class Outage(Protocol):
    url: str

    async def down(self) -> None: ...

    async def up(self) -> None: ...

    async def close(self) -> None: ...


class _Forwarder(portforward.ProxyServer):
    def connectionMade(self) -> None:
        self.factory.live.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.live.discard(self)
        super().connectionLost(reason)


class PostgresOutage:
    """A TCP forwarder to the real server: down aborts every connection and closes the port."""

    def __init__(self, database: str) -> None:
        self.factory = portforward.ProxyFactory(PG_HOST, PG_PORT)
        self.factory.protocol = _Forwarder
        self.factory.live = set()
        self.port: IListeningPort = reactor.listenTCP(0, self.factory, interface=PG_HOST)
        self.number = self.port.getHost().port
        self.url = pg_url(database, port=self.number)

    async def down(self) -> None:
        await self.port.stopListening()
        for forwarder in list(self.factory.live):
            forwarder.transport.abortConnection()
            if forwarder.peer is not None:
                forwarder.peer.transport.abortConnection()

    async def up(self) -> None:
        self.port = reactor.listenTCP(self.number, self.factory, interface=PG_HOST)

    async def close(self) -> None:
        if self.port.connected:
            await self.down()


class SqliteOutage:
    """Another connection holding the write lock: writers get 'database is locked'."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = sa.make_url(url).database
        assert path
        self.holder = sqlite3.connect(path, isolation_level=None)

    async def down(self) -> None:
        self.holder.execute("BEGIN EXCLUSIVE")

    async def up(self) -> None:
        self.holder.execute("ROLLBACK")

    async def close(self) -> None:
        if self.holder.in_transaction:
            self.holder.execute("ROLLBACK")
        self.holder.close()


@pytest_twisted.async_yield_fixture()
async def outage(backend: str, url: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A way to take the migrated database of the backend under test down and up again."""
    switch: PostgresOutage | SqliteOutage
    if backend == "sqlite":
        switch = SqliteOutage(url)
    else:
        switch = PostgresOutage(request.getfixturevalue("pg_database"))
    yield switch
    await switch.close()


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
    assert db.current_revision(db_url) == "0001"
    db.upgrade(db_url)  # nothing to do, no error
    assert db.current_revision(db_url) == "0001"

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
    assert db.current_revision(db_url) == "0001"


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


# -- event log: outages ----------------------------------------------------------------


def retry_delays(clock: Clock) -> list[float]:
    """Delays of the timers pending on ``clock``, but for the pruning loop (every hour)."""
    delays = [call.getTime() - clock.seconds() for call in clock.getDelayedCalls()]
    return [round(delay, 6) for delay in delays if delay < 3000]


@pytest_twisted.ensureDeferred
async def test_outage_buffers_logs_once_and_writes_everything_when_back(
    backend: str,
    outage: Outage,
    make_engine: Callable[..., AsyncEngine],
    logged_errors: list[logging.LogRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    engine = make_engine(outage.url, busy_timeout=0.05)
    log = EventLog(engine, clock=clock, retry_initial=1.0, retry_max=4.0, prune_interval=3600)
    hub = Hub()
    seen: list[Event] = []
    await log.start(hub)
    hub.subscribe(seen.append)
    published = publish(hub, 3)
    await log.flush()

    await outage.down()
    published += publish(hub, 5, start=3)
    clock.advance(0.2)  # the flush timer: the write fails
    await until(lambda: log.failing, "the first failed write")
    await until(lambda: retry_delays(clock) == [1.0], "the first retry")
    assert log.buffered == 5

    published += publish(hub, 5, start=8)  # no new write until the retry
    for expected in (2.0, 4.0, 4.0):  # capped exponential backoff
        clock.advance(retry_delays(clock)[0])
        await until(
            lambda expected=expected: retry_delays(clock) == [expected], f"a retry in {expected} s"
        )
    assert log.failing
    assert log.buffered == 10

    assert len(logged_errors) == 1, [r.getMessage() for r in logged_errors]
    message = logged_errors[0].getMessage()
    assert message.startswith(f"event log: cannot write to {db.masked(db.async_url(outage.url))} (")
    assert ("database is locked" if backend == "sqlite" else "refused") in message
    assert seen == published  # the hub and the other consumers carried on

    await outage.up()
    with caplog.at_level(logging.WARNING, logger="ctilink.store"):
        clock.advance(retry_delays(clock)[0])
        await until(lambda: not log.failing and log.buffered == 0, "the buffer written")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"event log: writing to {db.masked(db.async_url(outage.url))} again after 11.0 s; "
        "10 events were waiting, 0 dropped"
    ]
    rows = await aio(stored_rows(outage.url))
    assert [r.seq for r in rows] == list(range(1, 14))
    assert [r.body for r in rows] == [event_json(e) for e in published]
    assert len(logged_errors) == 1
    await log.close()


@pytest_twisted.ensureDeferred
async def test_reads_during_an_outage_are_served_from_the_buffer(
    outage: Outage,
    make_engine: Callable[..., AsyncEngine],
    logged_errors: list[logging.LogRecord],
) -> None:
    log = EventLog(make_engine(outage.url, busy_timeout=0.05), clock=Clock())
    hub = Hub()
    await log.start(hub)
    publish(hub, 2)
    await log.flush()
    await outage.down()
    publish(hub, 3, start=2)
    with pytest.raises(sa.exc.OperationalError):
        await log.flush()
    assert [o["seq"] for o in await log.events_since(2)] == [3, 4, 5]
    assert await log.last_seq() == 5
    assert len(logged_errors) == 1
    await outage.up()
    await log.flush()
    assert [o["seq"] for o in await log.events_since(0)] == [1, 2, 3, 4, 5]
    await log.close()


@pytest_twisted.ensureDeferred
async def test_a_full_buffer_drops_the_oldest_events_and_counts_them(
    outage: Outage,
    make_engine: Callable[..., AsyncEngine],
    logged_errors: list[logging.LogRecord],
) -> None:
    clock = Clock()
    log = EventLog(
        make_engine(outage.url, busy_timeout=0.05), clock=clock, max_buffer=5, prune_interval=3600
    )
    hub = Hub()
    await log.start(hub)
    publish(hub, 2)
    await log.flush()

    await outage.down()
    publish(hub, 8, start=2)  # seq 3..10; the buffer keeps 6..10
    clock.advance(0.2)
    await until(lambda: retry_delays(clock) == [0.5], "the failed write and its retry")
    publish(hub, 2, start=10)  # seq 11, 12; drops 6, 7
    assert log.dropped == 5
    assert log.buffered == 5
    messages = [r.getMessage() for r in logged_errors]
    assert len(messages) == 2, messages
    assert messages[0].startswith("event log: 5 events waiting for ")
    assert "dropping the oldest" in messages[0]
    assert messages[1].startswith("event log: cannot write to ")

    await outage.up()
    clock.advance(retry_delays(clock)[0])
    await until(lambda: not log.failing, "recovery")
    assert [r.seq for r in await aio(stored_rows(outage.url))] == [1, 2, 8, 9, 10, 11, 12]
    assert len(logged_errors) == 2
    await log.close()


@pytest_twisted.ensureDeferred
async def test_refused_connection_is_logged_with_the_password_masked(
    pg_database: str,
    make_engine: Callable[..., AsyncEngine],
    logged_errors: list[logging.LogRecord],
) -> None:
    refusing = pg_url(pg_database, port=_closed_port(), password="s3cret")
    clock = Clock()
    log = EventLog(make_engine(refusing), clock=clock)
    hub = Hub()
    hub.subscribe(log)
    publish(hub, 3)
    for _ in range(3):
        with pytest.raises(sa.exc.OperationalError):
            await log.flush()
    assert log.buffered == 3
    [record] = logged_errors
    assert "s3cret" not in record.getMessage()
    assert f"postgres:***@{PG_HOST}" in record.getMessage()
    assert "refused" in record.getMessage()

    await log.close()  # still down: the loss is reported, close does not fail
    assert log.dropped == 3
    assert len(logged_errors) == 2
    assert logged_errors[1].getMessage().startswith("event log: closing with 3 events not")


@pytest_twisted.ensureDeferred
async def test_a_hung_write_times_out_and_counts_as_an_outage(
    pg_database: str,
    make_engine: Callable[..., AsyncEngine],
    logged_errors: list[logging.LogRecord],
) -> None:
    url = empty_pg_url(pg_database)
    db.upgrade(url)
    log = EventLog(make_engine(url), clock=Clock(), write_timeout=0.3)
    hub = Hub()
    await log.start(hub)
    with psycopg.connect(
        f"host={PG_HOST} port={PG_PORT} user=postgres dbname={pg_database}"
    ) as locker:
        locker.execute("LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE")
        publish(hub, 2)
        with pytest.raises(TimeoutError):
            await log.flush()
        assert log.failing
        locker.rollback()
    await log.flush()
    assert [r.seq for r in await aio(stored_rows(url))] == [1, 2]
    [record] = logged_errors
    assert "(no answer within 0.3 s)" in record.getMessage()
    await log.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((PG_HOST, 0))
        return int(probe.getsockname()[1])
