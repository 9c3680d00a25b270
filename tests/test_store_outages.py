"""The event log (ctilink.store) while its database is down, on real databases.

Every main test runs twice, on SQLite and on PostgreSQL (``backend`` and the databases of
``tests/store_fixtures.py``). Outages are real: PostgreSQL is reached through a TCP
forwarder that the test turns off (connections aborted, port refusing) and on again; SQLite
is locked by another connection holding an exclusive transaction. Scheduling uses
``task.Clock`` (nothing is written until a test advances it or flushes); I/O is real.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import psycopg
import pytest
import pytest_twisted
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.task import Clock

from ctilink import db
from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.model.wire import event_json
from ctilink.store import EventLog
from tests.routing_outages import Forwarder
from tests.stores import (
    PG_HOST,
    PG_PORT,
    aio,
    empty_pg_url,
    pg_url,
    publish,
    stored_rows,
    until,
)

pytest_plugins = ["tests.store_fixtures"]


# -- outages ---------------------------------------------------------------------------


class Outage(Protocol):
    url: str

    async def down(self) -> None: ...

    async def up(self) -> None: ...

    async def close(self) -> None: ...


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
    switch: Forwarder | SqliteOutage
    if backend == "sqlite":
        switch = SqliteOutage(url)
    else:
        switch = Forwarder(request.getfixturevalue("pg_database"))
    yield switch
    await switch.close()


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
