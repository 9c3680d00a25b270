"""Databases for the routing and customer tests, a pytest plugin of ``tests/test_routing*.py``
and ``tests/test_customers*.py`` (``pytest_plugins = ["tests.routing_fixtures"]``).

* ``routing_backend`` runs a test twice: on SQLite and on the PostgreSQL server at
  127.0.0.1:5432 (never skipped: unreachable is a failure).
* ``routing_url`` is a database of that backend at the current schema and without rows:
  SQLite, a copy of a file migrated once per session; PostgreSQL, a database created and
  migrated once per session (``routing_pg_database``) whose tables are emptied before
  each test.
* ``make_engine`` (async engines disposed of at the end of the test) comes from
  ``tests.store_fixtures``, loaded here too.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ctilink import db
from ctilink.routing import schema
from tests.stores import PG_HOST, PG_MAINTENANCE, PG_PORT, pg_url

pytest_plugins = ["tests.store_fixtures"]


@pytest.fixture(scope="session")
def routing_pg_database() -> Iterator[str]:
    """A PostgreSQL database migrated to head for this session, dropped at its end."""
    name = f"ctilink_routing_{secrets.token_hex(6)}"
    with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        db.upgrade(pg_url(name))
        yield name
    finally:
        with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("routing-template") / "ctilink.db"
    db.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def routing_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def empty_routing_tables(database: str) -> None:
    tables = ", ".join(
        table.name for table in (*schema.ALL_TABLES, db.metadata.tables["event_log"])
    )
    with psycopg.connect(
        f"host={PG_HOST} port={PG_PORT} user=postgres dbname={database}", autocommit=True
    ) as connection:
        # A write a previous test left in flight holds a lock only the (stopped) event loop
        # would release: fail clearly rather than wait for ever.
        connection.execute("SET lock_timeout = '15s'")
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")  # type: ignore[arg-type]
        connection.execute("INSERT INTO directory_revision (id, revision) VALUES (1, 0)")


@pytest.fixture
def routing_url(routing_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of the backend under test, at the current schema."""
    if routing_backend == "sqlite":
        path = tmp_path / "ctilink.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    database = request.getfixturevalue("routing_pg_database")
    empty_routing_tables(database)
    return pg_url(database)


@pytest.fixture
def pg_routing_url(routing_pg_database: str) -> str:
    """The PostgreSQL database alone (for tests of TCP-level outages), emptied."""
    empty_routing_tables(routing_pg_database)
    return pg_url(routing_pg_database)
