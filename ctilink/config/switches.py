"""The ``[[switch]]`` tables: one ``Kind`` per switch kind (internal).

A switch table has the common keys (``name``, ``kind``, ``tenant``) and the keys of its kind.
Its kind is read first, then every other key is checked against the common table and the
kind's table; a kind may refuse a key with its own message (an inline AMI ``secret``).
``Kind.build`` turns the checked values (and the ``[routing]`` section, for what a switch
takes from it) into the options dataclass, checking what involves several keys; its errors
name keys relative to the switch table.

Adding a switch kind is one entry in ``KINDS`` and a field of ``SwitchConfig`` for its
options (``Kind.options``, named after the kind unless kinds share it: "csta" and
"csta-xml" both fill ``csta``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

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
    one_secret,
    read_fields,
    reject_unknown,
    secret_env,
    secret_file,
    show,
    table,
    typed,
)
from ctilink.config.model import (
    REPLAY_PROTOCOLS,
    AsteriskOptions,
    ReplayOptions,
    RoutingConfig,
    SwitchConfig,
)

if TYPE_CHECKING:
    from ctilink.adapters.csta import CstaSettings

NAME: Final = matching("1-32 characters of A-Z a-z 0-9 _ -", r"[A-Za-z0-9_-]{1,32}")

# -- kind "replay" ------------------------------------------------------------------------
_REPLAY_FIELDS: Final[Mapping[str, Field]] = {
    "traces": Field(array_of(typed("paths to trace files", str, then=file))),
    "loop": Field(typed("true or false", bool), False),
    "speed": Field(number(0), 1.0),
    "port": Field(integer(1, 65535), None),  # None: the protocol's (5038 AMI, 2555 CSTA)
    "protocol": Field(one_of(*REPLAY_PROTOCOLS), "auto"),
}


def _replay(values: dict[str, Any], routing: RoutingConfig) -> ReplayOptions:
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


def _asterisk(values: dict[str, Any], routing: RoutingConfig) -> AsteriskOptions:
    secret, _ = one_secret(values, "secret", "secret")
    if secret is None:
        raise Invalid("missing secret_file or secret_env (where the AMI secret is read from)")
    interval, timeout = values["ping_interval"], values["ping_timeout"]
    if interval + timeout > PING_BUDGET:
        raise Invalid(
            f"ping_interval + ping_timeout must be at most {PING_BUDGET:g} seconds (a dead link"
            f" must be noticed in time), got {show(interval)} + {show(timeout)}"
        )
    return AsteriskOptions(secret=secret, **values)


# -- kinds "csta" and "csta-xml" -----------------------------------------------------------
# A CSTA switch's options are the live link's CstaSettings, imported when one is configured
# (it brings the CSTA codecs). A key left out (None here) keeps CstaSettings' default. A
# key only the other encoding uses is an error: the link would silently ignore it.
_CSTA_VERSION_EXPECTED: Final = 'a CSTA version name ("versionOne" ... "versionTwentyfour")'
_OID_EXPECTED: Final = 'a dotted object identifier (e.g. "1.3.12.0.218")'
_BOOLEAN: Final = typed("true or false", bool)
_SECONDS: Final = number(0, above=True)


def _csta_version(value: str, ctx: Context) -> str:
    from ctilink.csta.acse import CSTA_VERSIONS

    if value not in CSTA_VERSIONS:
        raise Invalid(f"expected {_CSTA_VERSION_EXPECTED}, got {show(value)}")
    return value


def _object_identifier(value: str, ctx: Context) -> str:
    arcs = value.split(".")
    if (
        len(arcs) < 2
        or not all(re.fullmatch(r"0|[1-9][0-9]{0,17}", arc) for arc in arcs)
        or int(arcs[0]) > 2
        or (int(arcs[0]) < 2 and int(arcs[1]) > 39)  # X.690: the first two arcs
    ):
        raise Invalid(f"expected {_OID_EXPECTED}, got {show(value)}")
    return value


_DEVICES: Final = array_of(
    matching("device numbers (1-64 printable ASCII characters, no spaces)", r"[!-~]{1,64}"),
    empty=True,
    unique=True,
)

_CSTA_FIELDS: Final[Mapping[str, Field]] = {
    "host": Field(HOST),
    "port": Field(integer(1, 65535)),
    "xml": Field(_BOOLEAN, None),
    "xml_edition": Field(one_of("ed3", "ed4"), None),
    "xml_application_session": Field(_BOOLEAN, None),
    "alcatel_handshake": Field(_BOOLEAN, None),
    "csta_versions": Field(
        array_of(typed(_CSTA_VERSION_EXPECTED, str, then=_csta_version), unique=True), None
    ),
    "application_context": Field(typed(_OID_EXPECTED, str, then=_object_identifier), None),
    "user": Field(
        matching("1-80 characters without whitespace", r"[^\s\x00-\x1f\x7f]{1,80}"), None
    ),
    "password_file": Field(secret_file("password", one_line=True), None),
    "password_env": Field(secret_env("password", one_line=True), None),
    "devices": Field(_DEVICES, None),
    "acd_groups": Field(_DEVICES, None),
    "route_points": Field(_DEVICES, None),
    "heartbeat_interval": Field(number(1, 3600), None),
    "heartbeat_timeout": Field(number(1, 3600), None),
    "request_timeout": Field(_SECONDS, None),
    "connect_timeout": Field(_SECONDS, None),
    "reconnect_initial_delay": Field(_SECONDS, None),
    "reconnect_max_delay": Field(_SECONDS, None),
    "routing_budget_ms": Field(integer(10, 5000), None),  # None: [routing] budget_ms
}

_XML_ONLY: Final = ("xml_edition", "xml_application_session", "user")
_BER_ONLY: Final = (
    "alcatel_handshake",
    "csta_versions",
    "application_context",
    "password_file",
    "password_env",
)
_CSTA_REFUSED: Final[Mapping[str, str]] = {
    "password": "an inline password is not accepted: use password_file or password_env",
    "routing_budget": "the routing budget is routing_budget_ms (default: [routing] budget_ms)",
}
_CSTA_XML_REFUSED: Final[Mapping[str, str]] = {
    **_CSTA_REFUSED,
    "xml": 'kind "csta-xml" is always XML: leave xml out',
}


def _csta_kind(*, xml: bool) -> Callable[[dict[str, Any], RoutingConfig], CstaSettings]:
    """The build function of kind "csta" (BER unless ``xml = true``) or "csta-xml"."""

    def build(values: dict[str, Any], routing: RoutingConfig) -> CstaSettings:
        from ctilink.adapters.csta import CstaSettings

        values["xml"] = xml or bool(values["xml"])
        unused = _BER_ONLY if values["xml"] else _XML_ONLY
        for name in (name for name in unused if values[name] is not None):
            link = 'a BER link (kind "csta")' if values["xml"] else "an XML link"
            hint = "" if values["xml"] else ' (kind "csta-xml", or xml = true)'
            raise Invalid(f"only for {link}{hint}; leave it out", name)
        if values["user"] is not None and not values["xml_application_session"]:
            raise Invalid(
                "is the application id of StartApplicationSession: only with"
                " xml_application_session = true",
                "user",
            )
        password, _ = one_secret(values, "password", "password")
        budget_ms = values.pop("routing_budget_ms") or routing.budget_ms
        given = {name: value for name, value in values.items() if value is not None}
        settings = CstaSettings(**given, password=password, routing_budget=budget_ms / 1000)
        _check_csta_timers(settings)
        return settings

    return build


def _check_csta_timers(settings: CstaSettings) -> None:
    """The keys that bound one another, whichever of them were given."""
    if settings.heartbeat_timeout < settings.heartbeat_interval:
        raise Invalid(
            f"must be at least heartbeat_interval ({show(settings.heartbeat_interval)}),"
            f" got {show(settings.heartbeat_timeout)}",
            "heartbeat_timeout",
        )
    if settings.reconnect_max_delay < settings.reconnect_initial_delay:
        initial, delay = settings.reconnect_initial_delay, settings.reconnect_max_delay
        raise Invalid(
            f"must be at least reconnect_initial_delay ({show(initial)}), got {show(delay)}",
            "reconnect_max_delay",
        )


# -- the kinds and the switch table ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Kind:
    options: str  # the SwitchConfig field its options go in
    fields: Mapping[str, Field]
    # The options dataclass from the checked fields and the [routing] section.
    build: Callable[[dict[str, Any], RoutingConfig], Any]
    refused: Mapping[str, str] = field(default_factory=dict)  # key -> why it is refused


# One entry per switch kind.
KINDS: Final[Mapping[str, Kind]] = {
    "asterisk": Kind("asterisk", _ASTERISK_FIELDS, _asterisk, _ASTERISK_REFUSED),
    "csta": Kind("csta", _CSTA_FIELDS, _csta_kind(xml=False), _CSTA_REFUSED),
    "csta-xml": Kind("csta", _CSTA_FIELDS, _csta_kind(xml=True), _CSTA_XML_REFUSED),
    "replay": Kind("replay", _REPLAY_FIELDS, _replay),
}

_SWITCH_FIELDS: Final[Mapping[str, Field]] = {
    "name": Field(NAME),
    "kind": Field(one_of(*KINDS)),
    "tenant": Field(NAME, "default"),
}


def _switch(value: Any, index: int, ctx: Context, routing: RoutingConfig) -> SwitchConfig:
    where = f"switch[{index}]"
    switch = table(value, where)
    common = read_fields(switch, {"kind": _SWITCH_FIELDS["kind"]}, where, ctx)
    kind = KINDS[common["kind"]]
    allowed = {*_SWITCH_FIELDS, *(name for name in kind.fields if name not in kind.refused)}
    reject_unknown(switch, allowed, where, "key", kind.refused)
    common = read_fields(switch, _SWITCH_FIELDS, where, ctx)
    try:
        options = kind.build(read_fields(switch, kind.fields, "", ctx), routing)
    except Invalid as exc:
        raise exc.under(where) from None
    return SwitchConfig(**common, **{kind.options: options})


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


def read_switches(value: Any, ctx: Context, routing: RoutingConfig) -> tuple[SwitchConfig, ...]:
    if not isinstance(value, list):
        raise Invalid(f"expected an array of tables ([[switch]]), got {show(value)}", "switch")
    switches = tuple(_switch(item, index, ctx, routing) for index, item in enumerate(value))
    _unique([s.name for s in switches], "name", "name")
    _unique([s.asterisk.fastagi if s.asterisk else None for s in switches], "endpoint", "fastagi")
    return switches
