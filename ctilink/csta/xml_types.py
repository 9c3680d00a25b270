"""The ASN.1 side of the CSTA XML codec: parsed modules, type resolution, text helpers.

Theory of operation
-------------------
The XML codec is directed by the same ASN.1 modules the BER codec compiles (schemas/csta/),
read here with ``asn1tools.parse_files`` (the parsed form keeps component names, OPTIONAL
and DEFAULT, which the walk in ``xml_schema`` needs). ``resolve`` follows type references
across modules and IMPORTS down to a builtin (SEQUENCE, CHOICE, OCTET STRING...), keeping
the names passed through, so that rules can be attached to a type by name
(``SubjectDeviceID`` -> CHOICE, ``NumberDigits`` -> IA5String). The small helpers below are
shared by the generic walk and the types with their own XML shape (``xml_devices``).
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final

from ctilink.csta import asn1
from ctilink.errors import LocalProtocolError, RemoteProtocolError

Spec = dict[str, Any]

BUILTIN: Final = frozenset(
    {"SEQUENCE", "SET", "SEQUENCE OF", "SET OF", "CHOICE", "ENUMERATED", "INTEGER", "BOOLEAN",
     "NULL", "OCTET STRING", "BIT STRING", "IA5String", "VisibleString", "UTF8String",
     "PrintableString", "GraphicString", "GeneralizedTime", "UTCTime", "ANY",
     "OBJECT IDENTIFIER"}
)  # fmt: skip
STRINGS: Final = frozenset(
    {"IA5String", "VisibleString", "UTF8String", "PrintableString", "GraphicString"}
)
# What XML 1.0 cannot carry, even as a character reference.
_NOT_XML_TEXT: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,20}")


class Mistyped(RemoteProtocolError):
    """An XML element does not carry a value of the type it should."""


def modules() -> dict[str, Any]:
    """The ASN.1 modules of the schema directory, parsed (not compiled) once per process."""
    return asn1.parsed_modules()


@functools.cache
def _lookup(module: str, name: str) -> tuple[str, Spec]:
    mod = modules()[module]
    if name in mod["types"]:
        return module, mod["types"][name]
    for other, names in mod["imports"].items():
        if name in names:
            return _lookup(other, name)
    raise LocalProtocolError(f"no ASN.1 type {name} visible in {module}")


@dataclass(frozen=True, slots=True)
class Resolved:
    """A type with its references followed: ``kind`` is the builtin, ``names`` the type
    names passed through, outermost first (``SubjectDeviceID``; ``NumberDigits``...)."""

    kind: str
    module: str
    spec: Spec
    names: tuple[str, ...]

    @property
    def name(self) -> str | None:
        return self.names[-1] if self.names else None

    def has(self, names: frozenset[str]) -> bool:
        return any(name in names for name in self.names)


def resolve(module: str, spec: Spec) -> Resolved:
    """``spec`` (a type or a component, seen from ``module``) down to its builtin."""
    names: list[str] = []
    while spec["type"] not in BUILTIN:
        names.append(spec["type"])
        module, spec = _lookup(module, spec["type"])
    return Resolved(spec["type"], module, spec, tuple(names))


_MEMBERS: dict[tuple[str, int], tuple[Spec, Resolved]] = {}


def resolve_member(module: str, member: Spec) -> Resolved:
    """``resolve`` for a component of the parsed modules, remembered (the walk asks for the
    same components for every message; the modules live as long as the process)."""
    key = (module, id(member))
    cached = _MEMBERS.get(key)
    if cached is None or cached[0] is not member:
        cached = _MEMBERS[key] = (member, resolve(module, member))
    return cached[1]


@functools.cache
def type_spec(module: str, name: str) -> Resolved:
    return resolve(module, {"type": name})


# -- elements and text ---------------------------------------------------------------------
def local(tag: Any) -> str:
    """An element's name without its namespace (``""`` for comments and the like)."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def children(element: ET.Element) -> dict[str, ET.Element]:
    """Child elements by lower-cased local name (the first of each name)."""
    found: dict[str, ET.Element] = {}
    for child in element:
        name = local(child.tag).lower()
        if name and name not in found:
            found[name] = child
    return found


def text(element: ET.Element) -> str:
    return element.text or ""


def integer(element: ET.Element) -> int:
    value = text(element).strip()
    if not _INTEGER.fullmatch(value):
        raise Mistyped(f"{value!r} is not an integer")
    return int(value)


def set_text(element: ET.Element, value: str) -> None:
    """``element.text = value``, refusing what XML 1.0 cannot carry (ElementTree would
    write it and make the document unreadable)."""
    if _NOT_XML_TEXT.search(value):
        raise LocalProtocolError(f"{value!r} has characters XML cannot carry")
    element.text = value


def octets_text(value: Any, hex_: bool = False) -> str:
    """An OCTET STRING as XML text: ``xsd:hexBinary``, or the string its UTF-8 spells."""
    if not isinstance(value, bytes):
        raise LocalProtocolError(f"{value!r} is not an OCTET STRING")
    if hex_:
        return value.hex().upper()
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise LocalProtocolError(
            f"{value!r} is not text (CSTA XML carries it as a string)"
        ) from None


def bits(positions: list[int]) -> tuple[bytes, int]:
    """The BIT STRING value with ``positions`` set, no longer than its last set bit."""
    if not positions:
        return b"", 0
    size = max(positions) + 1
    data = bytearray((size + 7) // 8)
    for position in positions:
        data[position // 8] |= 0x80 >> (position % 8)
    return bytes(data), size
