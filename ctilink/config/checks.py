"""The declarative check primitives every configuration table is made of (internal).

A table maps a key to a ``Field``: a ``Check`` (``expected``, which completes "expected ...",
and ``convert``, which validates and converts a raw TOML value or raises ``Invalid``) and a
default. ``read_fields`` reads a table with them; ``Invalid.where`` holds the key path and
grows as the error climbs the tables (``traces[1]`` becomes ``switch[0].traces[1]``).

The checks know nothing about sections or switch kinds: ``loader`` and ``switches`` build
their tables from them.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final

from twisted.internet.endpoints import serverFromString

from ctilink.config.model import Secret


class Invalid(Exception):
    """A bad value. ``where`` is the key path, filled in as the error climbs the tables."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def under(self, prefix: str) -> Invalid:
        """The same error seen from ``prefix``: an index (``[1]``) or a key path."""
        if not self.where or self.where.startswith("["):
            return Invalid(self.message, prefix + self.where)
        return Invalid(self.message, f"{prefix}.{self.where}" if prefix else self.where)


@dataclass(frozen=True, slots=True)
class Context:
    base_dir: Path
    environ: Mapping[str, str]


Convert = Callable[[Any, Context], Any]


@dataclass(frozen=True, slots=True)
class Check:
    expected: str  # completes "expected ..."
    convert: Convert  # validated and converted value, or raises Invalid


REQUIRED: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class Field:
    check: Check
    default: Any = REQUIRED  # a raw TOML value (checked like one), or None for "absent"


# -- showing values in messages -----------------------------------------------------------
def toml_type(value: object) -> str:
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


def show(value: object) -> str:
    """A value as it would be written in TOML, for messages (strings shortened)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    return toml_type(value)


# -- checks -------------------------------------------------------------------------------
def typed(
    expected: str,
    types: type | tuple[type, ...],
    ok: Callable[[Any], bool] | None = None,
    then: Convert | None = None,
) -> Check:
    """A value of a TOML type (a boolean is never a number) for which ``ok`` holds, then
    converted by ``then``, which may raise its own ``Invalid``."""

    def convert(value: Any, ctx: Context) -> Any:
        if (
            isinstance(value, bool) != (types is bool)
            or not isinstance(value, types)
            or (ok is not None and not ok(value))
        ):
            raise Invalid(f"expected {expected}, got {show(value)}")
        return value if then is None else then(value, ctx)

    return Check(expected, convert)


def matching(expected: str, pattern: str) -> Check:
    regex = re.compile(pattern)
    return typed(expected, str, lambda v: regex.fullmatch(v) is not None)


def one_of(*choices: str) -> Check:
    expected = "one of " + ", ".join(json.dumps(c) for c in choices)
    return typed(expected, str, lambda v: v in choices)


def integer(low: int, high: int) -> Check:
    return typed(f"an integer from {low} to {high}", int, lambda v: low <= v <= high)


def number(low: float, high: float = math.inf, *, above: bool = False) -> Check:
    """A finite number >= ``low`` (> ``low`` if ``above``) and <= ``high``, as a float (an
    integer is a number too)."""
    expected = f"a number {'>' if above else '>='} {low:g}"
    if high < math.inf:
        expected += f" and <= {high:g}"
    return typed(
        expected,
        (int, float),
        # Comparisons with nan are false: nan is refused too.
        lambda v: (low < v if above else low <= v) and v <= high and v < math.inf,
        lambda v, ctx: float(v),
    )


_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_host(value: str) -> bool:
    """An IP address (v4 or v6, no brackets) or a DNS host name (RFC 1123)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return True
    name = value.removesuffix(".")
    labels = name.split(".")
    return (
        len(name) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()  # 10.0.0.256 is a bad address, not a name
    )


HOST: Final = typed("a hostname or IP address", str, _is_host)


def path(value: str, ctx: Context) -> Path:
    if not value:
        raise Invalid("expected a path, got an empty string")
    return (ctx.base_dir / value).resolve()


def file(value: str, ctx: Context) -> Path:
    resolved = path(value, ctx)
    if not resolved.exists():
        raise Invalid(f"file not found: {resolved}")
    if not resolved.is_file():
        raise Invalid(f"not a file: {resolved}")
    return resolved


def directory(value: str, ctx: Context) -> Path:
    resolved = path(value, ctx)
    if resolved.exists() and not resolved.is_dir():
        raise Invalid(f"not a directory: {resolved}")
    return resolved


def array_of(item: Check, *, empty: bool = False, unique: bool = False) -> Check:
    """An array (non-empty unless ``empty``, without repeated items if ``unique``); an error
    names the item's index (``traces[1]``)."""
    what = "an array" if empty else "a non-empty array"
    expected = f"{what} of {item.expected}"

    def convert(value: list[Any], ctx: Context) -> tuple[Any, ...]:
        if not value and not empty:
            raise Invalid(f"expected {expected}, got []")
        out: list[Any] = []
        for index, element in enumerate(value):
            try:
                converted = item.convert(element, ctx)
            except Invalid as exc:
                raise exc.under(f"[{index}]") from None
            if unique and converted in out:
                first = out.index(converted)
                raise Invalid(f"duplicate {show(element)} (also at index {first})", f"[{index}]")
            out.append(converted)
        return tuple(out)

    return typed(expected, list, then=convert)


def mapping_of(what: str, key_pattern: str, item: Check, *, fold_case: bool = False) -> Check:
    """A TOML table whose keys match ``key_pattern`` (``what`` describes them) and whose
    values pass ``item``, as a sorted tuple of (key, value) pairs; with ``fold_case`` the
    keys are lower-cased (two keys differing only in case are an error). An error names
    the key (``tier_priority.VIP``)."""
    regex = re.compile(key_pattern)
    expected = f"a table of {what} to {item.expected}"

    def convert(value: dict[str, Any], ctx: Context) -> tuple[tuple[str, Any], ...]:
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for name, element in value.items():
            if regex.fullmatch(name) is None:
                raise Invalid(f"expected {what}, got {show(name)}", key("", name))
            try:
                converted = item.convert(element, ctx)
            except Invalid as exc:
                raise exc.under(key("", name)) from None
            folded = name.lower() if fold_case else name
            if folded in seen:
                raise Invalid(f"duplicate of {show(seen[folded])} (case is ignored)", key("", name))
            seen[folded] = name
            out[folded] = converted
        return tuple(sorted(out.items()))

    return typed(expected, dict, then=convert)


class _NoReactor:
    """Stands in for the reactor while a description is parsed: endpoints only store it."""


def endpoint(value: str, ctx: Context) -> str:
    """A Twisted server endpoint description, parsed as the daemon will parse it."""
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
    raise Invalid(f"not a valid endpoint description ({show(value)}): {reason}")


ENDPOINT: Final = typed("a Twisted server endpoint description", str, then=endpoint)
ENV_NAME: Final = matching("an environment variable name", r"[A-Za-z_][A-Za-z0-9_]*")


def os_reason(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)


def secret_file(what: str, *, one_line: bool = False) -> Check:
    """A path to a file whose text, one trailing newline removed, is a ``Secret``; ``what``
    names it in messages ("password file is empty")."""

    def convert(value: str, ctx: Context) -> Secret:
        resolved = file(value, ctx)
        try:
            text = resolved.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Invalid(f"cannot read {resolved}: {os_reason(exc)}") from None
        secret = text.rstrip("\r\n")  # the newline an editor or `echo` leaves
        if not secret:
            raise Invalid(f"{what} file is empty: {resolved}")
        if one_line and ("\n" in secret or "\r" in secret):
            raise Invalid(f"{what} file has more than one line: {resolved}")
        return Secret(secret)

    return typed("a path to a file", str, then=convert)


def secret_env(what: str, *, one_line: bool = False) -> Check:
    """The name of an environment variable (of ``Context.environ``) holding a ``Secret``."""

    def convert(value: Any, ctx: Context) -> Secret:
        name: str = ENV_NAME.convert(value, ctx)
        secret = ctx.environ.get(name)
        if not secret:
            raise Invalid(f"environment variable {name} is not set or empty")
        if one_line and ("\n" in secret or "\r" in secret):
            raise Invalid(f"environment variable {name}: the {what} has a line break")
        return Secret(secret)

    return Check(ENV_NAME.expected, convert)


def one_secret(
    values: dict[str, Any], prefix: str, what: str, where: str = ""
) -> tuple[Secret | None, str]:
    """Take ``<prefix>_file`` and ``<prefix>_env`` (read by ``secret_file``/``secret_env``)
    out of ``values``: the secret given (None: neither) and the key it came by. Both is an
    ``Invalid`` naming the ``_env`` key (``where``: the keys' table, e.g. "database.")."""
    from_file: Secret | None = values.pop(f"{prefix}_file")
    from_env: Secret | None = values.pop(f"{prefix}_env")
    if from_file is not None and from_env is not None:
        raise Invalid(
            f"conflicts with {where}{prefix}_file: give the {what} one way",
            f"{where}{prefix}_env",
        )
    given = f"{prefix}_file" if from_file is not None else f"{prefix}_env"
    return from_file or from_env, given


# -- reading tables -----------------------------------------------------------------------
def key(where: str, name: str) -> str:
    shown = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
    return f"{where}.{shown}" if where else shown


def reject_unknown(
    table: Mapping[str, Any],
    allowed: Collection[str],
    where: str,
    what: str,
    refused: Mapping[str, str] | None = None,
) -> None:
    """Every key of ``table`` is in ``allowed``; a key of ``refused`` gets its own message."""
    for name in table:
        if refused and name in refused:
            raise Invalid(refused[name], key(where, name))
        if name not in allowed:
            expected = ", ".join(sorted(allowed))
            raise Invalid(f"unknown {what} (expected one of {expected})", key(where, name))


def read_fields(
    table: Mapping[str, Any], fields: Mapping[str, Field], where: str, ctx: Context
) -> dict[str, Any]:
    """Every field of ``fields`` checked and converted; keys of ``table`` not in it ignored."""
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        raw = table.get(name, spec.default)
        if raw is REQUIRED:
            raise Invalid(f"missing (expected {spec.check.expected})", key(where, name))
        try:
            values[name] = None if raw is None else spec.check.convert(raw, ctx)
        except Invalid as exc:
            raise exc.under(key(where, name)) from None
    return values


def table(value: Any, where: str, hint: str = "") -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a table{hint}, got {show(value)}", where)
    return value
