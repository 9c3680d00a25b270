"""Database access: URLs, the asyncio engine, and Alembic migrations run from code.

Theory of operation
-------------------
Operators write one database URL (``sqlite:///var/lib/ctilink/ctilink.db`` or
``postgresql://ctilink:secret@db/ctilink``). At runtime the daemon talks to it through
SQLAlchemy's asyncio engine on the reactor's own event loop (Twisted runs on its asyncio
reactor), so :func:`async_url` picks an asyncio driver: aiosqlite for SQLite, psycopg 3 for
PostgreSQL (psycopg serves both the sync and the async side). Migrations are short, run
before the reactor starts, and use a plain sync engine (:func:`sync_url`); :func:`upgrade`
builds the Alembic configuration in code, so no ``alembic.ini`` is needed on disk.

SQLite connections get WAL journaling (readers do not block the writer), a busy timeout
(wait for a lock instead of failing at once), ``synchronous=NORMAL`` (the usual WAL
setting: durable across a daemon crash, may lose the last commits on power loss) and
foreign keys on, set by a ``connect`` listener on every new connection.

A URL never reaches a log or an error message with its password: use :func:`masked`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ctilink.errors import ConfigError

# Constraint and index names every migration and table follows (Alembic's op.f() keeps them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

SCRIPT_LOCATION = "ctilink:migrations"
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a SQLite writer waits for a lock
DEFAULT_CONNECT_TIMEOUT = 10  # seconds, PostgreSQL

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}
_BACKEND_ALIASES = {"postgres": "postgresql"}


def parse_url(url: str | URL) -> URL:
    """``url`` as a SQLAlchemy URL; a ConfigError (without the URL text) if it is not one."""
    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except ArgumentError:
        # SQLAlchemy's message quotes the whole string, password included.
        raise ConfigError(
            "database URL is not valid (expected e.g. postgresql://user:password@host/db "
            "or sqlite:///path/to/file.db)"
        ) from None


def masked(url: str | URL) -> str:
    """``url`` with its password replaced by ``***``, for logs and error messages."""
    return parse_url(url).render_as_string(hide_password=True)


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    name = _BACKEND_ALIASES.get(name, name)
    if name not in _ASYNC_DRIVERS:
        raise ConfigError(
            f"database {masked(url)}: unsupported kind {name!r} (use sqlite or postgresql)"
        )
    return name


def async_url(url: str | URL) -> URL:
    """The URL the runtime (asyncio) engine uses: aiosqlite or psycopg 3."""
    parsed = parse_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS[_backend(parsed)])


def sync_url(url: str | URL) -> URL:
    """The URL migrations use: the standard library's sqlite3 or psycopg 3."""
    parsed = parse_url(url)
    return parsed.set(drivername=_SYNC_DRIVERS[_backend(parsed)])


def _sqlite_pragmas(busy_timeout: float) -> Any:
    milliseconds = round(busy_timeout * 1000)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={milliseconds:d}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return on_connect


def create_engine(
    url: str | URL,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    **kwargs: Any,
) -> AsyncEngine:
    """The runtime engine for ``url``; ``kwargs`` go to SQLAlchemy's create_async_engine.

    ``busy_timeout`` applies to SQLite, ``connect_timeout`` to PostgreSQL (so that an
    unreachable server fails a write in bounded time instead of hanging on TCP).
    """
    parsed = async_url(url)
    if _backend(parsed) == "sqlite":
        engine = create_async_engine(parsed, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout))
        return engine
    kwargs.setdefault("pool_pre_ping", True)  # a restarted server is not an outage
    connect_args = {"connect_timeout": connect_timeout, **kwargs.pop("connect_args", {})}
    return create_async_engine(parsed, connect_args=connect_args, **kwargs)


def create_sync_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A blocking engine (migrations, tools); never use it on the reactor thread."""
    parsed = sync_url(url)
    kwargs.setdefault("poolclass", NullPool)
    if _backend(parsed) == "sqlite":
        engine = sa.create_engine(parsed, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas(DEFAULT_BUSY_TIMEOUT))
        return engine
    # A server that accepts TCP and never answers must not hang the start for ever.
    connect_args = {"connect_timeout": DEFAULT_CONNECT_TIMEOUT, **kwargs.pop("connect_args", {})}
    return sa.create_engine(parsed, connect_args=connect_args, **kwargs)


def alembic_config(url: str | URL) -> Config:
    """Alembic's configuration for ``url``, built in code.

    The URL travels in ``config.attributes`` rather than ``sqlalchemy.url``: the ini parser
    would choke on ``%`` in passwords, and Alembic may echo main options.
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["url"] = sync_url(url)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Bring the schema of ``url`` to ``revision`` (blocking; run before the reactor)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Take the schema of ``url`` back to ``revision`` (``"base"``: no tables)."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The newest migration this version of ctilink ships."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(url: str | URL) -> str | None:
    """The migration the database at ``url`` is at; None before the first upgrade."""
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            revision: str | None = MigrationContext.configure(connection).get_current_revision()
            return revision
    finally:
        engine.dispose()


def insert_for(dialect: str, table: sa.Table) -> Any:
    """An INSERT on ``table`` with ON CONFLICT support, for ``dialect`` ("postgresql" or
    "sqlite", an engine's or connection's ``dialect.name``)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def failure_reason(exc: BaseException, engine: AsyncEngine | Engine, timeout: float | None) -> str:
    """One line saying why a database operation failed, without the password or the
    statement (``timeout``: the seconds a ``TimeoutError`` waited)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout is not None else "timed out"
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = " ".join(str(exc).split())[:300]
    password = engine.url.password
    if password:
        text = text.replace(str(password), "***")
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
