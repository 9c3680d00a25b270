"""The ASN.1 modules of ``schemas/csta/``, compiled once with asn1tools (BER).

Theory of operation
-------------------
Compiling the modules takes about a second, so it happens once per process, on first use
(``specification()`` is cached). Types are looked up by module and name, as the standard
names them (``type_("CSTA-make-call", "MakeCallArgument")``): two modules may define the
same name (``CallControlEvents`` is a BIT STRING in the application context module and a
CHOICE in the event report module), so a bare name would be ambiguous.

``encode`` and ``decode`` translate asn1tools' exceptions into ctilink's: what we were asked
to encode is a ``LocalProtocolError``; what a peer sent is a ``RemoteProtocolError``.
``decode`` insists that the value fills ``data`` exactly: BER values are self-delimiting,
so a PDU or an argument with bytes left over is malformed.

The modules are read from ``schemas/csta/`` of the source tree (a checkout, an editable
install), else from ``<prefix>/share/ctilink/schemas/csta/`` where a wheel installs them
(``[tool.setuptools.data-files]``); ``CTILINK_CSTA_SCHEMAS`` names another directory.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from pathlib import Path
from typing import Any

import asn1tools

from ctilink.errors import LocalProtocolError, RemoteProtocolError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "csta"
INSTALLED_SCHEMA_DIR = Path(sys.prefix) / "share" / "ctilink" / "schemas" / "csta"

# What asn1tools raises besides its own errors: on values of the wrong shape (encoding; a
# bug of the caller, reported as ours), and on malformed bytes (decoding; found by
# fuzzing: bytes that are not text where a string is due, an indefinite length where its
# decoder wants a definite one, which fails as ``int + None``). Deep nesting is bounded by
# the schemas and the frame size, RecursionError is caught all the same.
_SHAPE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError)
_ENCODE_ERRORS = (asn1tools.Error, *_SHAPE_ERRORS)
_DECODE_ERRORS = (asn1tools.Error, RecursionError, *_SHAPE_ERRORS)  # UnicodeDecodeError too


def schema_dir() -> Path:
    override = os.environ.get("CTILINK_CSTA_SCHEMAS")
    if override:
        return Path(override)
    return SCHEMA_DIR if SCHEMA_DIR.is_dir() else INSTALLED_SCHEMA_DIR


@functools.cache
def parsed_modules() -> dict[str, Any]:
    """Every module of the schema directory, parsed once per process (about a second):
    compiled for BER here, read as they are by the XML codec (``xml_types``)."""
    files = sorted(schema_dir().glob("*.asn"))
    if not files:
        raise FileNotFoundError(f"no ASN.1 modules (*.asn) in {schema_dir()}")
    parsed: dict[str, Any] = asn1tools.parse_files([str(f) for f in files])
    return parsed


@functools.cache
def specification() -> Any:
    """Every module of the schema directory, compiled for BER (once per process)."""
    # compile_dict may annotate what it is given: compile a copy of the shared parse.
    return asn1tools.compile_dict(copy.deepcopy(parsed_modules()), "ber")


def type_(module: str, name: str) -> Any:
    """The compiled type ``name`` of ``module`` (a ``LocalProtocolError`` if there is none)."""
    try:
        return specification().modules[module][name]
    except KeyError:
        raise LocalProtocolError(f"no ASN.1 type {module}.{name}") from None


def encode(module: str, name: str, value: Any) -> bytes:
    """The BER encoding of ``value`` as ``module.name``."""
    compiled = type_(module, name)
    try:
        return bytes(compiled.encode(value))
    except _ENCODE_ERRORS as exc:
        raise LocalProtocolError(f"cannot encode {name}: {exc}") from exc


def decode(module: str, name: str, data: bytes) -> Any:
    """The value of ``module.name`` that ``data`` encodes, all of it."""
    compiled = type_(module, name)
    try:
        value, length = compiled.decode_with_length(data)
    except _DECODE_ERRORS as exc:
        raise RemoteProtocolError(f"malformed {name}: {exc}") from exc
    if length != len(data):
        raise RemoteProtocolError(f"malformed {name}: {len(data) - length} bytes after the value")
    return normalize(value)


def normalize(value: Any) -> Any:
    """asn1tools' value with ``bytearray`` turned into ``bytes`` (immutable, comparable)."""
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(normalize(item) for item in value)
    if isinstance(value, list):
        return [normalize(item) for item in value]
    return value
