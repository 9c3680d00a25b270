"""The ``[[switch]]`` tables: one ``Kind`` per switch kind (internal).

A switch table has the common keys (``name``, ``kind``, ``tenant``) and the keys of its kind.
Its kind is read first, then every other key is checked against the common table and the
kind's table; a kind may refuse a key with its own message (an inline AMI ``secret``).
``Kind.build`` turns the checked values into the options dataclass, checking what involves
several keys; its errors name keys relative to the switch table.

Adding a switch kind is one entry in ``KINDS`` and a field of ``SwitchConfig`` named after
the kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ctilink.config.checks import (
    ENDPOINT,
    HOST,
    Context,
    Field,
    Invalid,
    array_of,
    file,
    integer,
    matching,
    number,
    one_of,
    read_fields,
    reject_unknown,
    secret_env,
    secret_file,
    show,
    table,
    typed,
)
from ctilink.config.model import AsteriskOptions, ReplayOptions, Secret, SwitchConfig

NAME: Final = matching("1-32 characters of A-Z a-z 0-9 _ -", r"[A-Za-z0-9_-]{1,32}")

# -- kind "replay" ------------------------------------------------------------------------
_REPLAY_FIELDS: Final[Mapping[str, Field]] = {
    "traces": Field(array_of(typed("paths to trace files", str, then=file))),
    "loop": Field(typed("true or false", bool), False),
    "speed": Field(number(0), 1.0),
    "port": Field(integer(1, 65535), 5038),
}


def _replay(values: dict[str, Any]) -> ReplayOptions:
    return ReplayOptions(**values)


# -- kind "asterisk" ----------------------------------------------------------------------
# AMI event classes (manager.conf "read" permissions) a link may ask for in Login's Events.
EVENT_CLASSES: Final = (
    "call",
    "agent",
    "user",
    "system",
    "dialplan",  # Newexten, VarSet: a flood on a busy switch
    "cdr",
    "reporting",
    "security",
    "command",
)
PING_BUDGET: Final = 15.0  # ping_interval + ping_timeout: how late a dead link is noticed
DEVICE: Final = "{device}"


def _device_channel(value: str, ctx: Context) -> str:
    """A dial template: a channel technology, "/", and "{device}" exactly once."""
    if value.count(DEVICE) != 1:
        raise Invalid(f'must contain "{DEVICE}" exactly once, got {show(value)}')
    rest = value.replace(DEVICE, "")
    if "{" in rest or "}" in rest:
        raise Invalid(f'may contain no braces but "{DEVICE}", got {show(value)}')
    if any(c.isspace() or not c.isprintable() for c in value):
        raise Invalid(f"may contain no whitespace or control characters, got {show(value)}")
    technology, slash, _ = value.partition("/")
    if not slash or not re.fullmatch(r"[A-Za-z0-9_]+", technology):
        raise Invalid(f'must start with a channel technology and "/" ("PJSIP/"), got {show(value)}')
    return value


_ASTERISK_FIELDS: Final[Mapping[str, Field]] = {
    "host": Field(HOST),
    "port": Field(integer(1, 65535), 5038),
    "username": Field(matching("1-80 characters without whitespace", r"[^\s\x00-\x1f\x7f]{1,80}")),
    "secret_file": Field(secret_file("secret", one_line=True), None),
    "secret_env": Field(secret_env("secret", one_line=True), None),
    "auth": Field(one_of("md5", "plain"), "md5"),
    "events": Field(
        array_of(one_of(*EVENT_CLASSES), unique=True), ["call", "agent", "user", "system"]
    ),
    "call_data_variables": Field(
        array_of(
            matching("channel variable names (1-64 of A-Z a-z 0-9 _)", r"[A-Za-z0-9_]{1,64}"),
            empty=True,
            unique=True,
        ),
        [],
    ),
    "ping_interval": Field(number(0, 60, above=True), 5.0),
    "ping_timeout": Field(number(0, 60, above=True), 5.0),
    "action_timeout": Field(number(0, above=True), 10.0),
    "connect_timeout": Field(number(0, above=True), 10.0),
    "reconnect_max_delay": Field(number(1), 30.0),
    "originate_contexts": Field(
        array_of(
            matching("dialplan context names (1-80 of A-Z a-z 0-9 _ -)", r"[A-Za-z0-9_-]{1,80}"),
            empty=True,
            unique=True,
        ),
        [],
    ),
    "device_channel": Field(
        typed('a dial template containing "{device}"', str, then=_device_channel),
        "PJSIP/{device}",
    ),
    "fastagi": Field(ENDPOINT, None),
    "wrapup_seconds": Field(number(0, 3600), 0.0),
}

_ASTERISK_REFUSED: Final[Mapping[str, str]] = {
    "secret": "an inline secret is not accepted: use secret_file or secret_env",
}


def _asterisk(values: dict[str, Any]) -> AsteriskOptions:
    from_file: Secret | None = values.pop("secret_file")
    from_env: Secret | None = values.pop("secret_env")
    if from_file is not None and from_env is not None:
        raise Invalid("conflicts with secret_file: give the secret one way", "secret_env")
    secret = from_file or from_env
    if secret is None:
        raise Invalid("missing secret_file or secret_env (where the AMI secret is read from)")
    interval, timeout = values["ping_interval"], values["ping_timeout"]
    if interval + timeout > PING_BUDGET:
        raise Invalid(
            f"ping_interval + ping_timeout must be at most {PING_BUDGET:g} seconds (a dead link"
            f" must be noticed in time), got {show(interval)} + {show(timeout)}"
        )
    return AsteriskOptions(secret=secret, **values)


# -- the kinds and the switch table ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Kind:
    fields: Mapping[str, Field]
    build: Callable[[dict[str, Any]], Any]  # the options dataclass from the checked fields
    refused: Mapping[str, str] = field(default_factory=dict)  # key -> why it is refused


# One entry per switch kind; SwitchConfig has a field of the same name for its options.
KINDS: Final[Mapping[str, Kind]] = {
    "asterisk": Kind(_ASTERISK_FIELDS, _asterisk, _ASTERISK_REFUSED),
    "replay": Kind(_REPLAY_FIELDS, _replay),
}

_SWITCH_FIELDS: Final[Mapping[str, Field]] = {
    "name": Field(NAME),
    "kind": Field(one_of(*KINDS)),
    "tenant": Field(NAME, "default"),
}


def _switch(value: Any, index: int, ctx: Context) -> SwitchConfig:
    where = f"switch[{index}]"
    switch = table(value, where)
    common = read_fields(switch, {"kind": _SWITCH_FIELDS["kind"]}, where, ctx)
    kind = KINDS[common["kind"]]
    reject_unknown(switch, {*_SWITCH_FIELDS, *kind.fields}, where, "key", kind.refused)
    common = read_fields(switch, _SWITCH_FIELDS, where, ctx)
    try:
        options = kind.build(read_fields(switch, kind.fields, "", ctx))
    except Invalid as exc:
        raise exc.under(where) from None
    return SwitchConfig(**common, **{common["kind"]: options})


def _unique(values: list[Any], what: str, key: str) -> None:
    """Each ``values[i]`` (``key`` of ``switch[i]``, None when it has none) appears once."""
    first: dict[Any, int] = {}
    for index, value in enumerate(values):
        if value is None:
            continue
        if value in first:
            also = f"switch[{first[value]}]" + ("" if key == "name" else f".{key}")
            raise Invalid(f"duplicate {what} {show(value)} (also {also})", f"switch[{index}].{key}")
        first[value] = index


def read_switches(value: Any, ctx: Context) -> tuple[SwitchConfig, ...]:
    if not isinstance(value, list):
        raise Invalid(f"expected an array of tables ([[switch]]), got {show(value)}", "switch")
    switches = tuple(_switch(item, index, ctx) for index, item in enumerate(value))
    _unique([s.name for s in switches], "name", "name")
    _unique([s.asterisk.fastagi if s.asterisk else None for s in switches], "endpoint", "fastagi")
    return switches
