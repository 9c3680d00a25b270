"""Alembic environment for ctilink: run by ``ctilink.db.upgrade`` (and ``alembic`` itself).

The URL comes from ``config.attributes["url"]`` (set by ``ctilink.db.alembic_config``) or,
for an ``alembic`` command line with an ini file, from ``sqlalchemy.url``. A caller may also
pass an open sync connection in ``config.attributes["connection"]``. Migrations use a
blocking engine: they run before the reactor starts. SQLite gets batch mode, since it can
only alter a table by copying it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import ctilink.store  # noqa: F401  (registers the event log table on the metadata)
from ctilink.db import create_sync_engine, metadata, sync_url

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use ctilink.db.upgrade(url) or set sqlalchemy.url")
    return sync_url(url).render_as_string(hide_password=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_sync_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
