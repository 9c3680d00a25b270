"""Helpers for the event log tests (``tests/test_store*.py``): events, rows, databases.

The databases themselves (the ``backend``, ``db_url``, ``url``, ``pg_database`` and
``make_engine`` fixtures) are in ``tests/store_fixtures.py``; ``pg_url`` and ``empty_pg_url``
here reach the session's PostgreSQL database at ``PG_HOST``:``PG_PORT``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from ctilink import db
from ctilink.hub import Hub
from ctilink.model.events import Delivered, Event
from ctilink.model.states import LocalConnectionState
from ctilink.store import event_log

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


def pg_url(database: str, port: int = PG_PORT, password: str | None = None) -> str:
    auth = f"postgres:{password}" if password else "postgres"
    return f"postgresql://{auth}@{PG_HOST}:{port}/{database}"


def empty_pg_url(database: str) -> str:
    """The session's PostgreSQL database, emptied of what earlier tests left."""
    with psycopg.connect(
        f"host={PG_HOST} port={PG_PORT} user=postgres dbname={database}", autocommit=True
    ) as connection:
        # Every migration's tables, whatever the head is: start from an empty schema.
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return pg_url(database)
