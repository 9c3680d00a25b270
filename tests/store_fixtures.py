"""The databases of the event log tests, a pytest plugin of ``tests/test_store*.py``.

The test modules load it with ``pytest_plugins = ["tests.store_fixtures"]`` (and never
import it), so its fixtures are registered once, for the whole session, whichever of them
run:

* ``backend`` runs a test twice: on SQLite in ``tmp_path`` and on the PostgreSQL server at
  127.0.0.1:5432, in a database (``pg_database``) created for this test session and dropped
  at its end. The PostgreSQL tests fail (never skip) when the server is unreachable: CI must
  run them.
* ``db_url`` is an empty database of the backend under test, ``url`` the same migrated to
  head; ``make_engine`` makes engines that are disposed of at the end of the test.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_twisted
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

from ctilink import db
from tests.stores import PG_MAINTENANCE, aio, empty_pg_url


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


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database (no tables) of the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ctilink.db'}"
    return empty_pg_url(request.getfixturevalue("pg_database"))


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
