"""Configuration: one TOML file, read with :mod:`tomllib` and validated whole on load.

Theory of operation
-------------------
``load_config(path)`` reads the file and hands its text to ``parse_config``, which turns the
TOML document into frozen dataclasses (``Config`` and one class per section) or raises
``ConfigError`` with one line: the file, the key path and what was expected::

    ctilink.toml: switch[1].kind: expected one of "replay", got "asterix"

Each section is a declarative table mapping a key to a ``_Field``: a ``_Check`` (what the
value must be, for messages, and a function that validates and converts it) and a default.
A default is a raw TOML value that goes through the same check, so a relative default path
is resolved like a relative path in the file. Unknown keys are errors at every level: a
typo never passes silently. Adding a key is adding an entry; adding a switch kind is one
entry in ``_KINDS`` (its options table and options class) and a field of ``SwitchConfig``
named after the kind.

Relative paths are relative to the directory of the config file, never to the working
directory, and every path in a ``Config`` is absolute (symlinks resolved). The exception is
the inside of ``event_socket.listen``: a Twisted server endpoint description, used verbatim
by the daemon (paths in it are relative to the working directory). It is validated by
parsing it exactly as the daemon will (``serverFromString``) with a placeholder reactor:
importing ``twisted.internet.reactor`` here would install the default reactor before the
daemon installs the asyncio one. Parsing builds the endpoint without listening, but some
parsers look at the world: ``ssl:`` reads its key and certificate files (and needs
pyOpenSSL), ``systemd:`` needs the sockets systemd passed in.

The database password is a ``Secret``: its repr and str are masked and the URL kept in
``DatabaseConfig.url`` shows ``***``, so printing or logging a ``Config`` never shows it.
Code that connects calls ``DatabaseConfig.connect_url()``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from twisted.internet.endpoints import serverFromString

from ctilink.errors import ConfigError

DEFAULT_STATE_DIR: Final = "ctilink-state"
DEFAULT_LISTEN: Final = "tcp:port=8765:interface=127.0.0.1"
SQLITE_FILE_NAME: Final = "ctilink.sqlite3"


# -- what a loaded configuration is -------------------------------------------------------
class Secret:
    """A value never shown: repr and str are masked; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.reveal() == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    state_dir: Path
    log_level: str
    log_format: str


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """``url`` shows ``***`` for a password; ``connect_url()`` is the URL to connect with."""

    url: str
    password: Secret | None = None

    def __post_init__(self) -> None:
        # Built by code with the password inside the URL: move it out, so it never shows.
        url = make_url(self.url)
        if url.password is not None:
            if self.password is None:
                object.__setattr__(self, "password", Secret(url.password))
            object.__setattr__(self, "url", url.render_as_string(hide_password=True))

    def connect_url(self) -> URL:
        """The SQLAlchemy URL with the real password (its own repr still masks it)."""
        url = make_url(self.url)
        return url if self.password is None else url.set(password=self.password.reveal())

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return make_url(self.url).get_backend_name()


@dataclass(frozen=True, slots=True)
class EventSocketConfig:
    listen: str


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    traces: tuple[Path, ...]
    loop: bool
    speed: float
    port: int


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    """One switch link. Exactly the options field named after ``kind`` is set."""

    name: str
    kind: str
    tenant: str
    replay: ReplayOptions | None = None


@dataclass(frozen=True, slots=True)
class Config:
    source: Path | None
    daemon: DaemonConfig
    database: DatabaseConfig
    event_socket: EventSocketConfig
    switches: tuple[SwitchConfig, ...]


# -- the checks every table is made of ----------------------------------------------------
class _Invalid(Exception):
    """A bad value. ``where`` is the key path, filled in as the error climbs the tables."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def under(self, prefix: str) -> _Invalid:
        return _Invalid(self.message, prefix + self.where)


@dataclass(frozen=True, slots=True)
class _Context:
    base_dir: Path
    environ: Mapping[str, str]


Convert = Callable[[Any, _Context], Any]


@dataclass(frozen=True, slots=True)
class _Check:
    expected: str  # completes "expected ..."
    convert: Convert  # validated and converted value, or raises _Invalid


_REQUIRED: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class _Field:
    check: _Check
    default: Any = _REQUIRED  # a raw TOML value (checked like one), or None for "absent"


def _toml_type(value: object) -> str:
    kinds: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        ((datetime, date, time), "a date/time"),
    )
    return next((name for types, name in kinds if isinstance(value, types)), "a value")


def _show(value: object) -> str:
    """A value as it would be written in TOML, for messages (strings shortened)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    return _toml_type(value)


def _typed(
    expected: str,
    types: type | tuple[type, ...],
    ok: Callable[[Any], bool] | None = None,
    then: Convert | None = None,
) -> _Check:
    """A value of a TOML type (a boolean is never a number) for which ``ok`` holds, then
    converted by ``then``, which may raise its own ``_Invalid``."""

    def convert(value: Any, ctx: _Context) -> Any:
        if (
            isinstance(value, bool) != (types is bool)
            or not isinstance(value, types)
            or (ok is not None and not ok(value))
        ):
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        return value if then is None else then(value, ctx)

    return _Check(expected, convert)


def _matching(expected: str, pattern: str) -> _Check:
    regex = re.compile(pattern)
    return _typed(expected, str, lambda v: regex.fullmatch(v) is not None)


def _one_of(*choices: str) -> _Check:
    expected = "one of " + ", ".join(json.dumps(c) for c in choices)
    return _typed(expected, str, lambda v: v in choices)


def _integer(low: int, high: int) -> _Check:
    return _typed(f"an integer from {low} to {high}", int, lambda v: low <= v <= high)


def _number(minimum: float) -> _Check:
    """A finite number >= ``minimum``, as a float (an integer is a number too)."""
    return _typed(
        f"a number >= {minimum:g}",
        (int, float),
        lambda v: minimum <= v < math.inf,  # also refuses nan
        lambda v, ctx: float(v),
    )


def _path(value: str, ctx: _Context) -> Path:
    if not value:
        raise _Invalid("expected a path, got an empty string")
    return (ctx.base_dir / value).resolve()


def _file(value: str, ctx: _Context) -> Path:
    path = _path(value, ctx)
    if not path.exists():
        raise _Invalid(f"file not found: {path}")
    if not path.is_file():
        raise _Invalid(f"not a file: {path}")
    return path


def _directory(value: str, ctx: _Context) -> Path:
    path = _path(value, ctx)
    if path.exists() and not path.is_dir():
        raise _Invalid(f"not a directory: {path}")
    return path


def _array_of(item: _Check) -> _Check:
    """A non-empty array; an error names the item's index (``traces[1]``)."""

    def convert(value: list[Any], ctx: _Context) -> tuple[Any, ...]:
        if not value:
            raise _Invalid(f"expected a non-empty array of {item.expected}, got []")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item.convert(element, ctx))
            except _Invalid as exc:
                raise exc.under(f"[{index}]") from None
        return tuple(out)

    return _typed(f"a non-empty array of {item.expected}", list, then=convert)


class _NoReactor:
    """Stands in for the reactor while a description is parsed: endpoints only store it."""


def _endpoint(value: str, ctx: _Context) -> str:
    try:
        serverFromString(_NoReactor(), value)
    except ImportError as exc:
        reason = f"{exc} (TLS endpoints need pyOpenSSL: install twisted[tls])"
    # Endpoint parsers (plugins too) raise ValueError, TypeError, KeyError, IndexError,
    # OSError...: whatever they raise means the daemon could not listen there.
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
    else:
        return value
    raise _Invalid(f"not a valid endpoint description ({_show(value)}): {reason}")


def _password_file(value: str, ctx: _Context) -> Secret:
    path = _file(value, ctx)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Invalid(f"cannot read {path}: {_os_reason(exc)}") from None
    password = text.rstrip("\r\n")  # the newline an editor or `echo` leaves
    if not password:
        raise _Invalid(f"password file is empty: {path}")
    return Secret(password)


def _password_env(value: Any, ctx: _Context) -> Secret:
    name: str = _ENV_NAME.convert(value, ctx)
    password = ctx.environ.get(name)
    if not password:
        raise _Invalid(f"environment variable {name} is not set or empty")
    return Secret(password)


# -- database URLs ------------------------------------------------------------------------
# Scheme as written -> scheme used. SQLAlchemy's own name for psycopg 3 is kept explicit.
_DATABASE_SCHEMES: Final[Mapping[str, str]] = {
    "sqlite": "sqlite",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
}
_URL_EXPECTED: Final = "a URL sqlite:///path or postgresql+psycopg://user@host/dbname, or empty"


def _database_url(value: str, ctx: _Context) -> URL | None:
    """The URL with its scheme normalised and a relative SQLite path resolved; None if empty.

    Messages never quote the URL: it may hold a password.
    """
    if not value:
        return None
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise _Invalid(f"expected {_URL_EXPECTED}; cannot parse the value") from None
    scheme = _DATABASE_SCHEMES.get(url.drivername)
    if scheme is None:
        known = ", ".join(sorted(_DATABASE_SCHEMES))
        raise _Invalid(f"expected a URL with scheme one of {known}, got {url.drivername!r}")
    url = url.set(drivername=scheme)
    if scheme == "sqlite" and url.database not in (None, "", ":memory:"):
        url = url.set(database=str((ctx.base_dir / url.database).resolve()))
    return url


# -- the tables ---------------------------------------------------------------------------
_NAME: Final = _matching("1-32 characters of A-Z a-z 0-9 _ -", r"[A-Za-z0-9_-]{1,32}")
_ENV_NAME: Final = _matching("an environment variable name", r"[A-Za-z_][A-Za-z0-9_]*")

_DAEMON_FIELDS: Final[Mapping[str, _Field]] = {
    "state_dir": _Field(_typed("a path to a directory", str, then=_directory), DEFAULT_STATE_DIR),
    "log_level": _Field(_one_of("debug", "info", "warning", "error"), "info"),
    "log_format": _Field(_one_of("text", "json"), "text"),
}

_DATABASE_FIELDS: Final[Mapping[str, _Field]] = {
    "url": _Field(_typed(_URL_EXPECTED, str, then=_database_url), ""),
    "password_file": _Field(_typed("a path to a file", str, then=_password_file), None),
    "password_env": _Field(_Check(_ENV_NAME.expected, _password_env), None),
}

_EVENT_SOCKET_FIELDS: Final[Mapping[str, _Field]] = {
    "listen": _Field(
        _typed("a Twisted server endpoint description", str, then=_endpoint), DEFAULT_LISTEN
    ),
}

_REPLAY_FIELDS: Final[Mapping[str, _Field]] = {
    "traces": _Field(_array_of(_typed("paths to trace files", str, then=_file))),
    "loop": _Field(_typed("true or false", bool), False),
    "speed": _Field(_number(0), 1.0),
    "port": _Field(_integer(1, 65535), 5038),
}


@dataclass(frozen=True, slots=True)
class _Kind:
    fields: Mapping[str, _Field]
    options: Callable[..., Any]  # the options dataclass, built from the checked fields


# One entry per switch kind; SwitchConfig has a field of the same name for its options.
_KINDS: Final[Mapping[str, _Kind]] = {
    "replay": _Kind(_REPLAY_FIELDS, ReplayOptions),
}

_SWITCH_FIELDS: Final[Mapping[str, _Field]] = {
    "name": _Field(_NAME),
    "kind": _Field(_one_of(*_KINDS)),
    "tenant": _Field(_NAME, "default"),
}


# -- reading tables -----------------------------------------------------------------------
def _key(where: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
    return f"{where}.{shown}" if where else shown


def _reject_unknown(
    table: Mapping[str, Any], allowed: Collection[str], where: str, what: str
) -> None:
    for key in table:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise _Invalid(f"unknown {what} (expected one of {expected})", _key(where, key))


def _read_fields(
    table: Mapping[str, Any], fields: Mapping[str, _Field], where: str, ctx: _Context
) -> dict[str, Any]:
    """Every field of ``fields`` checked and converted; keys of ``table`` not in it ignored."""
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        raw = table.get(name, spec.default)
        if raw is _REQUIRED:
            raise _Invalid(f"missing (expected {spec.check.expected})", _key(where, name))
        try:
            values[name] = None if raw is None else spec.check.convert(raw, ctx)
        except _Invalid as exc:
            raise exc.under(_key(where, name)) from None
    return values


def _table(value: Any, where: str, hint: str = "") -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table{hint}, got {_show(value)}", where)
    return value


def _section(
    document: Mapping[str, Any], name: str, fields: Mapping[str, _Field], ctx: _Context
) -> dict[str, Any]:
    table = _table(document.get(name, {}), name, f" ([{name}])")
    _reject_unknown(table, fields, name, "key")
    return _read_fields(table, fields, name, ctx)


def _database(values: Mapping[str, Any], state_dir: Path) -> DatabaseConfig:
    url: URL | None = values["url"]
    from_file: Secret | None = values["password_file"]
    from_env: Secret | None = values["password_env"]
    if from_file is not None and from_env is not None:
        raise _Invalid(
            "conflicts with database.password_file: give the password one way",
            "database.password_env",
        )
    password = from_file or from_env
    given = "password_file" if from_file is not None else "password_env"
    if url is None:
        url = URL.create("sqlite", database=str(state_dir / SQLITE_FILE_NAME))
    if password is not None and url.get_backend_name() == "sqlite":
        raise _Invalid("a sqlite database takes no password", f"database.{given}")
    if password is not None and url.password is not None:
        raise _Invalid(
            "conflicts with the password inside database.url: give it one way", f"database.{given}"
        )
    if password is not None:
        url = url.set(password=password.reveal())
    return DatabaseConfig(url.render_as_string(hide_password=False))  # it masks the password


def _switch(value: Any, index: int, ctx: _Context) -> SwitchConfig:
    where = f"switch[{index}]"
    table = _table(value, where)
    common = _read_fields(table, {"kind": _SWITCH_FIELDS["kind"]}, where, ctx)
    kind = _KINDS[common["kind"]]
    _reject_unknown(table, {*_SWITCH_FIELDS, *kind.fields}, where, "key")
    common = _read_fields(table, _SWITCH_FIELDS, where, ctx)
    options = kind.options(**_read_fields(table, kind.fields, where, ctx))
    return SwitchConfig(**common, **{common["kind"]: options})


def _switches(value: Any, ctx: _Context) -> tuple[SwitchConfig, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of tables ([[switch]]), got {_show(value)}", "switch")
    switches = tuple(_switch(item, index, ctx) for index, item in enumerate(value))
    first: dict[str, int] = {}
    for index, switch in enumerate(switches):
        if switch.name in first:
            raise _Invalid(
                f"duplicate name {_show(switch.name)} (also switch[{first[switch.name]}])",
                f"switch[{index}].name",
            )
        first[switch.name] = index
    return switches


_SECTIONS: Final = ("daemon", "database", "event_socket", "switch")


def _build(document: Mapping[str, Any], ctx: _Context, source: Path | None) -> Config:
    _reject_unknown(document, _SECTIONS, "", "section")
    daemon = DaemonConfig(**_section(document, "daemon", _DAEMON_FIELDS, ctx))
    return Config(
        source=source,
        daemon=daemon,
        database=_database(_section(document, "database", _DATABASE_FIELDS, ctx), daemon.state_dir),
        event_socket=EventSocketConfig(
            **_section(document, "event_socket", _EVENT_SOCKET_FIELDS, ctx)
        ),
        switches=_switches(document.get("switch", []), ctx),
    )


# -- entry points -------------------------------------------------------------------------
def _error(source: str, exc: _Invalid) -> ConfigError:
    return ConfigError(
        f"{source}: {exc.where}: {exc.message}" if exc.where else f"{source}: {exc.message}"
    )


def _os_reason(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)


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
    resolved against ``base_dir``; ``environ`` (default ``os.environ``) serves password_env.
    The result's ``source`` is None (``load_config`` sets it).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(source, exc) from None
    ctx = _Context(Path(base_dir).resolve(), os.environ if environ is None else environ)
    try:
        return _build(document, ctx, source=None)
    except _Invalid as exc:
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
        raise ConfigError(f"{source}: cannot read: {_os_reason(exc)}") from None
    config = parse_config(text, source=source, base_dir=file.parent, environ=environ)
    return replace(config, source=file)


def default_config(state_dir: Path) -> Config:
    """Defaults everywhere, the given state directory and no switches."""
    document = {"daemon": {"state_dir": os.fspath(state_dir)}}
    ctx = _Context(Path.cwd(), os.environ)
    try:
        return _build(document, ctx, source=None)
    except _Invalid as exc:
        raise _error("<defaults>", exc) from None
