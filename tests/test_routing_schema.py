"""Migration 0002 against the models of ``ctilink.routing.schema``, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import sql

from ctilink import db
from ctilink.routing import schema
from tests.stores import PG_MAINTENANCE, pg_url

pytest_plugins = ["tests.routing_fixtures"]


@pytest.fixture
def empty_url(routing_backend: str, tmp_path: Path) -> Iterator[str]:
    """A database without tables (PostgreSQL: created for the test, dropped after it)."""
    if routing_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"ctilink_schema_{secrets.token_hex(6)}"
    with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_url(name)
    finally:
        with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_the_migration_creates_exactly_the_models(empty_url: str) -> None:
    db.upgrade(empty_url)
    assert db.current_revision(empty_url) == "0002"
    engine = db.create_sync_engine(empty_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, db.metadata) == []
            revision = connection.execute(sa.select(schema.directory_revision)).all()
            assert [tuple(row) for row in revision] == [(1, 0)]
            indexes = {
                table.name: {i["name"] for i in sa.inspect(connection).get_indexes(table.name)}
                for table in schema.ALL_TABLES
            }
    finally:
        engine.dispose()
    # the hot lookups are indexed
    assert "ix_customer_phones_tenant_id_e164" in indexes["customer_phones"]
    assert "ix_interactions_customer_id_started" in indexes["interactions"]
    assert "ix_routing_decisions_call_id" in indexes["routing_decisions"]


def test_downgrade_to_the_event_log_and_up_again(empty_url: str) -> None:
    db.upgrade(empty_url)
    db.downgrade(empty_url, "0001")
    engine = db.create_sync_engine(empty_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == {"alembic_version", "event_log"}
    db.upgrade(empty_url)
    assert db.current_revision(empty_url) == "0002"
    db.upgrade(empty_url)  # idempotent
