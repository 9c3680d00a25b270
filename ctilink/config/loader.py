"""Reading a configuration: the section tables, the whole document, the entry points.

``parse_config`` turns TOML text into a ``Config`` or raises ``ConfigError`` with one line,
``<file>: <key path>: <message>``; ``load_config`` reads a file and hands it over;
``default_config`` is an empty document read the same way.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ctilink.config.checks import (
    ENDPOINT,
    Context,
    Field,
    Invalid,
    array_of,
    directory,
    file,
    integer,
    mapping_of,
    matching,
    one_of,
    one_secret,
    os_reason,
    read_fields,
    reject_unknown,
    secret_env,
    secret_file,
    show,
    table,
    typed,
)
from ctilink.config.model import (
    DEFAULT_LISTEN,
    DEFAULT_STATE_DIR,
    EVENT_SOCKET_AUTH,
    ROUTING_STRATEGIES,
    SQLITE_FILE_NAME,
    Config,
    DaemonConfig,
    DatabaseConfig,
    EventSocketConfig,
    RoutingConfig,
    SwitchConfig,
)
from ctilink.config.switches import read_switches
from ctilink.errors import ConfigError

# -- database URLs ------------------------------------------------------------------------
# Scheme as written -> scheme used. SQLAlchemy's own name for psycopg 3 is kept explicit.
_DATABASE_SCHEMES: Final[Mapping[str, str]] = {
    "sqlite": "sqlite",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
}
_URL_EXPECTED: Final = "a URL sqlite:///path or postgresql+psycopg://user@host/dbname, or empty"


def _database_url(value: str, ctx: Context) -> URL | None:
    """The URL with its scheme normalised and a relative SQLite path resolved; None if empty.

    Messages never quote the URL: it may hold a password.
    """
    if not value:
        return None
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise Invalid(f"expected {_URL_EXPECTED}; cannot parse the value") from None
    scheme = _DATABASE_SCHEMES.get(url.drivername)
    if scheme is None:
        known = ", ".join(sorted(_DATABASE_SCHEMES))
        raise Invalid(f"expected a URL with scheme one of {known}, got {url.drivername!r}")
    url = url.set(drivername=scheme)
    if scheme == "sqlite" and url.database not in (None, "", ":memory:"):
        url = url.set(database=str((ctx.base_dir / url.database).resolve()))
    return url


# -- the section tables -------------------------------------------------------------------
_DAEMON_FIELDS: Final[Mapping[str, Field]] = {
    "state_dir": Field(typed("a path to a directory", str, then=directory), DEFAULT_STATE_DIR),
    "log_level": Field(one_of("debug", "info", "warning", "error"), "info"),
    "log_format": Field(one_of("text", "json"), "text"),
}

_DATABASE_FIELDS: Final[Mapping[str, Field]] = {
    "url": Field(typed(_URL_EXPECTED, str, then=_database_url), ""),
    "password_file": Field(secret_file("password"), None),
    "password_env": Field(secret_env("password"), None),
}


def _tokens_file(value: str, ctx: Context) -> Path:
    """A token file, read now as the daemon will read it: a bad one is a config error."""
    from ctilink.screenpop.auth import TokenStore

    resolved = file(value, ctx)
    try:
        TokenStore.load(resolved)
    except ConfigError as exc:
        raise Invalid(str(exc)) from None
    return resolved


_EVENT_SOCKET_FIELDS: Final[Mapping[str, Field]] = {
    "listen": Field(ENDPOINT, DEFAULT_LISTEN),
    "auth": Field(one_of(*EVENT_SOCKET_AUTH), "token"),
    "tokens_file": Field(typed("a path to a token file", str, then=_tokens_file), None),
    "max_backlog": Field(integer(100, 1_000_000), 10_000),
}


def _region(value: str, ctx: Context) -> str:
    from ctilink.routing.numbers import is_region  # phonenumbers' metadata, when needed

    if not is_region(value):
        raise Invalid(f"expected {_REGION_EXPECTED}, got {show(value)}")
    return value


_REGION_EXPECTED: Final = "a region code (ISO 3166 alpha-2 in capitals, e.g. US or FR)"
_QUEUE_NAME: Final = matching("a queue name (1-80 of A-Z a-z 0-9 _ -)", r"[A-Za-z0-9_-]{1,80}")
_DATA_NAME: Final = matching("a call data name (1-64 of A-Z a-z 0-9 _ -)", r"[A-Za-z0-9_-]{1,64}")

_ROUTING_FIELDS: Final[Mapping[str, Field]] = {
    "default_queue": Field(_QUEUE_NAME, None),
    "default_priority": Field(integer(0, 100), 0),
    "default_agent": Field(
        matching("a device or agent id (1-80 of A-Z a-z 0-9 _ . -)", r"[A-Za-z0-9_.-]{1,80}"),
        None,
    ),
    "budget_ms": Field(integer(10, 5000), 300),
    "lookup_timeout_ms": Field(integer(1, 4999), None),
    "strategies": Field(
        array_of(one_of(*ROUTING_STRATEGIES), empty=True, unique=True), list(ROUTING_STRATEGIES)
    ),
    "default_region": Field(typed(_REGION_EXPECTED, str, then=_region), "US"),
    "trunk_prefix": Field(matching("0-4 digits", r"[0-9]{0,4}"), ""),
    "account_keys": Field(
        array_of(_DATA_NAME, empty=True, unique=True), ["CUSTOMER_ACCOUNT", "account"]
    ),
    "queue_keys": Field(array_of(_DATA_NAME, empty=True, unique=True), ["queue"]),
    "last_agent_days": Field(integer(0, 3650), 30),
    "tier_priority": Field(
        mapping_of(
            "tier names (1-40 of A-Z a-z 0-9 _ -)",
            r"[A-Za-z0-9_-]{1,40}",
            integer(0, 100),
            fold_case=True,
        ),
        {"vip": 10},
    ),
    "closed_destination": Field(_QUEUE_NAME, None),
    "overflow_queue": Field(_QUEUE_NAME, None),
    "overflow_wait_seconds": Field(integer(0, 86400), 0),
    "handle_seconds": Field(integer(1, 86400), 180),
    "cache_size": Field(integer(0, 10_000_000), 10_000),
    "cache_ttl_seconds": Field(integer(0, 86400), 60),
    "refresh_seconds": Field(integer(1, 3600), 5),
    "pop_history": Field(integer(0, 100), 5),
}


# -- reading the document -----------------------------------------------------------------
def _section(
    document: Mapping[str, Any], name: str, fields: Mapping[str, Field], ctx: Context
) -> dict[str, Any]:
    section = table(document.get(name, {}), name, f" ([{name}])")
    reject_unknown(section, fields, name, "key")
    return read_fields(section, fields, name, ctx)


def _database(values: Mapping[str, Any], state_dir: Path) -> DatabaseConfig:
    url: URL | None = values["url"]
    password, given = one_secret(dict(values), "password", "password", "database.")
    if url is None:
        url = URL.create("sqlite", database=str(state_dir / SQLITE_FILE_NAME))
    if password is not None and url.get_backend_name() == "sqlite":
        raise Invalid("a sqlite database takes no password", f"database.{given}")
    if password is not None and url.password is not None:
        raise Invalid(
            "conflicts with the password inside database.url: give it one way", f"database.{given}"
        )
    if password is not None:
        url = url.set(password=password.reveal())
    return DatabaseConfig(url.render_as_string(hide_password=False))  # it masks the password


def _event_socket(values: Mapping[str, Any]) -> EventSocketConfig:
    if values["auth"] == "token" and values["tokens_file"] is None:
        raise Invalid(
            'required when auth = "token" (create one with `ctilink token new`)',
            "event_socket.tokens_file",
        )
    return EventSocketConfig(**values)


_SECTIONS: Final = ("daemon", "database", "event_socket", "routing", "switch")


def _build(document: Mapping[str, Any], ctx: Context, source: Path | None) -> Config:
    reject_unknown(document, _SECTIONS, "", "section")
    daemon = DaemonConfig(**_section(document, "daemon", _DAEMON_FIELDS, ctx))
    routing = RoutingConfig(**_section(document, "routing", _ROUTING_FIELDS, ctx))
    switches = read_switches(document.get("switch", []), ctx, routing)
    _check_default_route(switches, routing)
    _check_lookup_timeout(routing)
    return Config(
        source=source,
        daemon=daemon,
        database=_database(_section(document, "database", _DATABASE_FIELDS, ctx), daemon.state_dir),
        event_socket=_event_socket(_section(document, "event_socket", _EVENT_SOCKET_FIELDS, ctx)),
        switches=switches,
        routing=routing,
    )


def _check_default_route(switches: tuple[SwitchConfig, ...], routing: RoutingConfig) -> None:
    """A switch that asks ctilink for routes needs a route to answer when all else fails."""
    if routing.default_queue is not None or routing.default_agent is not None:
        return
    for index, switch in enumerate(switches):
        if switch.asterisk is not None and switch.asterisk.fastagi is not None:
            asks = "FastAGI route requests"
        elif switch.csta is not None and switch.csta.route_points:
            asks = "CSTA route requests (route_points)"
        else:
            continue
        raise Invalid(
            f"switch[{index}] ({switch.name}) answers {asks}, so a default route is needed:"
            " set default_queue or default_agent",
            "routing",
        )


def _check_lookup_timeout(routing: RoutingConfig) -> None:
    """The default route is answered after a lookup times out: that must be in budget."""
    if routing.lookup_timeout_ms is not None and routing.lookup_timeout_ms >= routing.budget_ms:
        raise Invalid(
            f"expected an integer less than budget_ms ({routing.budget_ms}), got"
            f" {routing.lookup_timeout_ms}",
            "routing.lookup_timeout_ms",
        )


# -- entry points -------------------------------------------------------------------------
def _error(source: str, exc: Invalid) -> ConfigError:
    return ConfigError(
        f"{source}: {exc.where}: {exc.message}" if exc.where else f"{source}: {exc.message}"
    )


_TOML_POSITION: Final = re.compile(
    r"^(?P<what>.*) \(at (?:line (?P<line>\d+), column "
    r"(?P<column>\d+)|end of document)\)$",
    re.DOTALL,
)


def _toml_error(source: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    match = _TOML_POSITION.match(str(exc))
    if match is None:
        return ConfigError(f"{source}: invalid TOML: {exc}")
    what = match["what"]
    what = what[:1].lower() + what[1:] if what[1:2].islower() else what
    where = f"line {match['line']} column {match['column']}" if match["line"] else "end of file"
    return ConfigError(f"{source}: {where}: invalid TOML: {what}")


def parse_config(
    text: str, *, source: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Config:
    """A ``Config`` from TOML text. ``source`` names it in errors; relative paths are
    resolved against ``base_dir``; ``environ`` (default ``os.environ``) serves the ``*_env``
    keys (password_env, secret_env). The result's ``source`` is None (``load_config`` sets it).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(source, exc) from None
    ctx = Context(Path(base_dir).resolve(), os.environ if environ is None else environ)
    try:
        return _build(document, ctx, source=None)
    except Invalid as exc:
        raise _error(source, exc) from None


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate a config file; errors name the file as given."""
    source = os.fspath(path)
    file = Path(source).resolve()
    try:
        text = file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {os_reason(exc)}") from None
    config = parse_config(text, source=source, base_dir=file.parent, environ=environ)
    return replace(config, source=file)


def default_config(state_dir: Path) -> Config:
    """Defaults everywhere, the given state directory and no switches, but no event socket
    authentication (there is no token file to name): code that builds on it (the demo,
    tests) sets ``event_socket`` itself when its socket is reachable by others."""
    document = {
        "daemon": {"state_dir": os.fspath(state_dir)},
        "event_socket": {"auth": "none"},
    }
    ctx = Context(Path.cwd(), os.environ)
    try:
        return _build(document, ctx, source=None)
    except Invalid as exc:
        raise _error("<defaults>", exc) from None
