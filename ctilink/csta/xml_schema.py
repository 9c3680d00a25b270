"""ECMA-285 values <-> ECMA-323 XML elements, directed by the ASN.1 modules of schemas/csta/.

Theory of operation
-------------------
ECMA-323's schemas were derived from ECMA-285's ASN.1: a SEQUENCE is an element whose
children are its components, named as the components are; a CHOICE is an element holding
one child named after the alternative; a SEQUENCE OF is an element holding one child per
item; ENUMERATED, INTEGER, BOOLEAN and strings are text; NULL is an empty element; a named
BIT STRING is an element with one ``<bit>true</bit>`` child per bit set. So rather than a
second, hand-written copy of every type, this module walks the same ASN.1 modules the BER
codec compiles (``asn1tools.parse_files``) and produces exactly the values asn1tools
produces from BER (DEFAULT components filled in, CHOICE as tuples, OCTET STRING as bytes).

Where ECMA-323 departs from the ASN.1, the departure is a row in one of the tables below:

``_RENAMES``     an XML element name that differs from the ASN.1 component name
                 (``loggedOnState``, ``mediaAttachementServices``, ``systemResourceAvailibility``:
                 ECMA-323's own spellings). Input accepts both names, case-insensitively.
``_ITEM_NAMES``  the element name of a SEQUENCE OF's items (``connectionListItem``); input
                 takes every child element as an item, whatever its name.
``_HEX``         OCTET STRINGs that ECMA-323 types ``xsd:hexBinary``; the others (call ids,
                 cross-reference ids, agent ids) are ``xsd:string`` and map to their UTF-8.
``SPECIAL``     types whose XML shape is not the ASN.1's: ``DeviceID`` is text with a
                 ``typeOfNumber`` attribute; ``ConnectionID`` is ``callID`` and/or a
                 ``deviceID`` whose ``typeOfNumber="dynamic"`` is the dynamic id.
``_OPAQUE``      types not mapped (``extensions`` private data, correlator and user data,
                 times): ignored on input, refused (``LocalProtocolError``) on output.

An untagged inline CHOICE component (``SnapshotDeviceResult.crossRefIDorSnapshotData``)
has no element of its own: its alternative stands directly in the parent.

Input is lenient where switches differ and the meaning is clear: unknown elements and
attributes are ignored, an OPTIONAL component that cannot be read is dropped (logged), a
CHOICE of a device written as bare text (``<callingDevice>6001</callingDevice>``) is read
as its ``deviceIdentifier``. What cannot be read at all raises ``Mistyped`` (a
``RemoteProtocolError``). Output is strict: a value the XML cannot carry raises
``LocalProtocolError``.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final

from ctilink.csta.xml_devices import SPECIAL
from ctilink.csta.xml_types import (
    STRINGS,
    Mistyped,
    Resolved,
    Spec,
    bits,
    children,
    integer,
    local,
    octets_text,
    resolve_member,
    set_text,
    text,
)
from ctilink.errors import LocalProtocolError

log = logging.getLogger(__name__)


# (owning ASN.1 type, component) -> ECMA-323 element name; owner None: any type.
_RENAMES: Final = {
    ("MonitorStartResult", "crossRefIdentifier"): "monitorCrossRefID",
    ("MonitorStartResult", "actualmonitorFilter"): "actualMonitorFilter",
    ("MonitorStopArgument", "crossRefIdentifier"): "monitorCrossRefID",
    ("ServicesPermitted", "mediaAttachmentServices"): "mediaAttachementServices",
    ("ServicesPermitted", "voiceUnitServices"): "voiceServices",
    ("AgentStateEntry", "loggedOn"): "loggedOnState",
    ("UniversalFailure", "systemResourceAvailability"): "systemResourceAvailibility",
    ("RedirectionDeviceID", "numberdialed"): "numberDialed",
    ("NetworkReachedEvent", "originatingNIDConneciton"): "originatingNIDConnection",
}
# SEQUENCE OF types (or the component holding one) -> the element name of each item.
_ITEM_NAMES: Final = {
    "ConnectionList": "connectionListItem",
    "SnapshotDeviceData": "snapshotDeviceResponseInfo",
    "CompoundCallState": "localConnectionState",
    "DeviceMediaInfoList": "deviceMediaInfo",
    "AgentStateList": "agentStateEntry",
    "agentInfo": "agentInfoItem",
    "NumberOfChargingUnits": "chargingUnitsRecord",
    "alternateRoutes": "deviceID",  # not verified against the schema text
    "DeviceIDList": "deviceID",  # not verified against the schema text
}
_HEX: Final = frozenset({"AuthCode", "AccountInfo", "switchingSubDomainInformationElements"})
_OPAQUE: Final = frozenset(
    {"CSTACommonArguments", "CorrelatorData", "UserData", "GeneralizedTime", "ANY",
     "MessageInfo", "DeviceHistory", "LocationInfoList", "CSTASecurityData"}
)  # fmt: skip
# Components a switch may leave out although the ASN.1 requires them, and what they mean.
_ASSUMED: Final = {("SystemStatusArg", "systemStatus"): "normal"}


def xml_name(owner: str | None, component: str) -> str:
    return _RENAMES.get((owner or "", component), component)


def _is_flat(member: Spec) -> bool:
    return member["type"] == "CHOICE" and "members" in member and "tag" not in member


# -- reading -------------------------------------------------------------------------------
def read(module: str, member: Spec, element: ET.Element) -> Any:
    """The value of the component ``member`` (of ``module``) that ``element`` carries."""
    return read_type(resolve_member(module, member), element)


def read_type(resolved: Resolved, element: ET.Element) -> Any:
    """The value of type ``resolved`` that ``element`` carries."""
    for name in resolved.names:
        if name in SPECIAL:
            return SPECIAL[name][0](element)
    if resolved.has(_OPAQUE) or resolved.kind in _OPAQUE:
        raise Mistyped(f"{resolved.name or resolved.kind} is not read from CSTA XML")
    return _READERS[resolved.kind](resolved, element)


@dataclass(frozen=True, slots=True)
class _Component:
    name: str
    keys: tuple[str, ...]  # the lower-case element names it may have
    member: Spec
    optional: bool
    flat: bool


_PLANS: dict[int, tuple[Spec, tuple[_Component, ...]]] = {}


def _components(resolved: Resolved) -> tuple[_Component, ...]:
    """A SEQUENCE's components with what reading them needs, worked out once."""
    cached = _PLANS.get(id(resolved.spec))
    if cached is None or cached[0] is not resolved.spec:
        plan = []
        for member in resolved.spec["members"]:
            name = member["name"]
            keys = tuple(dict.fromkeys((xml_name(resolved.name, name).lower(), name.lower())))
            optional = member.get("optional", False) or "default" in member
            plan.append(_Component(name, keys, member, optional, _is_flat(member)))
        cached = _PLANS[id(resolved.spec)] = (resolved.spec, tuple(plan))
    return cached[1]


def read_sequence(resolved: Resolved, element: ET.Element) -> dict[str, Any]:
    owner = resolved.name
    found = children(element)
    value: dict[str, Any] = {}
    for component in _components(resolved):
        name, member, optional = component.name, component.member, component.optional
        child = next((found[key] for key in component.keys if key in found), None)
        try:
            if child is not None:
                value[name] = read(resolved.module, member, child)
            elif component.flat:
                value[name] = read_choice(resolve_member(resolved.module, member), element)
        except Mistyped as exc:
            if not optional:
                raise Mistyped(f"{owner or 'SEQUENCE'}.{name}: {exc}") from exc
            log.debug("CSTA XML: %s.%s dropped: %s", owner, name, exc)
        if name in value:
            continue
        if "default" in member:
            value[name] = default(resolved.module, member)
        elif (owner, name) in _ASSUMED:
            value[name] = _ASSUMED[(owner or "", name)]
        elif not optional:
            raise Mistyped(f"{owner or 'SEQUENCE'} without its {xml_name(owner, name)}")
    return value


def read_choice(resolved: Resolved, element: ET.Element) -> tuple[str, Any]:
    owner = resolved.name
    members = resolved.spec["members"]
    names = {}
    for member in members:
        names[member["name"].lower()] = member
        names[xml_name(owner, member["name"]).lower()] = member
    elements = [child for child in element if local(child.tag)]
    for child in elements:
        member = names.get(local(child.tag).lower())
        if member is not None:
            return member["name"], read(resolved.module, member, child)
    if not elements and (element.text or "").strip():
        for member in members:  # <callingDevice>6001</callingDevice>: the device itself
            if "DeviceID" in resolve_member(resolved.module, member).names:
                return member["name"], read(resolved.module, member, element)
    raise Mistyped(f"{owner or 'CHOICE'}: no known alternative in <{local(element.tag)}>")


def _read_list(resolved: Resolved, element: ET.Element) -> list[Any]:
    item = resolved.spec["element"]
    return [read(resolved.module, item, child) for child in element if local(child.tag)]


def _read_enumerated(resolved: Resolved, element: ET.Element) -> str:
    value = text(element).strip()
    names: list[str] = [name for name, _number in resolved.spec["values"]]
    if value in names:
        return value
    for name in names:  # agentReady for ready: ECMA-323 spells some values with a prefix
        if value.lower() in (name.lower(), "agent" + name.lower()):
            return name
    raise Mistyped(f"{value!r} is not a {resolved.name or 'ENUMERATED'} value")


def _read_boolean(resolved: Resolved, element: ET.Element) -> bool:
    value = text(element).strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise Mistyped(f"{value!r} is not a boolean")


def _read_octets(resolved: Resolved, element: ET.Element) -> bytes:
    value = text(element)
    if resolved.has(_HEX) or local(element.tag) in _HEX:
        try:
            return bytes.fromhex(value.strip())
        except ValueError:
            raise Mistyped(f"{value!r} is not hexBinary") from None
    return value.encode("utf-8")


def _read_bits(resolved: Resolved, element: ET.Element) -> tuple[bytes, int]:
    positions = {name.lower(): int(number) for name, number in resolved.spec.get("named-bits", [])}
    set_bits = []
    for child in element:
        name = local(child.tag).lower()
        if name in positions and text(child).strip() in ("true", "1"):
            set_bits.append(positions[name])
    return bits(set_bits)


_READERS: Final = {
    "SEQUENCE": read_sequence,
    "SET": read_sequence,
    "CHOICE": read_choice,
    "SEQUENCE OF": _read_list,
    "SET OF": _read_list,
    "ENUMERATED": _read_enumerated,
    "INTEGER": lambda _r, e: integer(e),
    "BOOLEAN": _read_boolean,
    "NULL": lambda _r, _e: None,
    "OCTET STRING": _read_octets,
    "BIT STRING": _read_bits,
    **{kind: lambda _r, e: text(e) for kind in STRINGS},
}


def default(module: str, member: Spec) -> Any:
    """A DEFAULT component's value as asn1tools decodes it."""
    resolved = resolve_member(module, member)
    value = member["default"]
    if resolved.kind == "BIT STRING":
        named = dict(resolved.spec.get("named-bits", []))
        return bits([int(named[name]) for name in value])
    if resolved.kind == "INTEGER":
        return int(value)
    if resolved.kind == "BOOLEAN":
        return value in (True, "TRUE")
    return value


# -- writing -------------------------------------------------------------------------------
def write(module: str, member: Spec, value: Any, parent: ET.Element, name: str) -> None:
    """Append the element ``name`` carrying ``value`` of component ``member`` to ``parent``."""
    fill(resolve_member(module, member), value, ET.SubElement(parent, name))


def fill(resolved: Resolved, value: Any, element: ET.Element) -> None:
    """Give ``element`` the content that carries ``value``."""
    for name in resolved.names:
        if name in SPECIAL:
            SPECIAL[name][1](value, element)
            return
    if resolved.has(_OPAQUE) or resolved.kind in _OPAQUE:
        raise LocalProtocolError(f"{resolved.name or resolved.kind} cannot be sent in CSTA XML")
    _WRITERS[resolved.kind](resolved, value, element)


def _fill_sequence(resolved: Resolved, value: Any, element: ET.Element) -> None:
    owner = resolved.name
    if not isinstance(value, dict):
        raise LocalProtocolError(f"{owner or 'SEQUENCE'} value must be a dict, not {value!r}")
    members = resolved.spec["members"]
    unknown = set(value) - {member["name"] for member in members}
    if unknown:
        raise LocalProtocolError(f"{owner or 'SEQUENCE'} has no component {sorted(unknown)}")
    for member in members:
        name = member["name"]
        if name not in value:
            if not (member.get("optional") or "default" in member):
                raise LocalProtocolError(f"{owner or 'SEQUENCE'} needs its {name}")
            continue
        if "default" in member and value[name] == default(resolved.module, member):
            continue
        if _is_flat(member):
            _fill_choice(resolve_member(resolved.module, member), value[name], element, flat=True)
        else:
            write(resolved.module, member, value[name], element, xml_name(owner, name))


def _fill_choice(resolved: Resolved, value: Any, element: ET.Element, flat: bool = False) -> None:
    owner = resolved.name
    if not (isinstance(value, tuple) and len(value) == 2):
        raise LocalProtocolError(f"{owner or 'CHOICE'} value must be (alternative, value)")
    for member in resolved.spec["members"]:
        if member["name"] == value[0]:
            write(resolved.module, member, value[1], element, xml_name(owner, value[0]))
            return
    raise LocalProtocolError(f"{owner or 'CHOICE'} has no alternative {value[0]!r}")


def _fill_list(resolved: Resolved, value: Any, element: ET.Element) -> None:
    if not isinstance(value, list):
        raise LocalProtocolError(f"{resolved.name or 'SEQUENCE OF'} value must be a list")
    item_name = _ITEM_NAMES.get(resolved.name or "") or _ITEM_NAMES.get(local(element.tag))
    if item_name is None:
        raise LocalProtocolError(f"no CSTA XML item name for {resolved.name or element.tag}")
    for item in value:
        write(resolved.module, resolved.spec["element"], item, element, item_name)


def _fill_enumerated(resolved: Resolved, value: Any, element: ET.Element) -> None:
    if value not in [name for name, _number in resolved.spec["values"]]:
        raise LocalProtocolError(f"{value!r} is not a {resolved.name or 'ENUMERATED'} value")
    element.text = value


def _fill_integer(resolved: Resolved, value: Any, element: ET.Element) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise LocalProtocolError(f"{value!r} is not an INTEGER")
    element.text = str(value)


def _fill_boolean(resolved: Resolved, value: Any, element: ET.Element) -> None:
    if not isinstance(value, bool):
        raise LocalProtocolError(f"{value!r} is not a BOOLEAN")
    element.text = "true" if value else "false"


def _fill_null(resolved: Resolved, value: Any, element: ET.Element) -> None:
    if value is not None:
        raise LocalProtocolError(f"{value!r} is not NULL")


def _fill_octets(resolved: Resolved, value: Any, element: ET.Element) -> None:
    set_text(element, octets_text(value, resolved.has(_HEX) or local(element.tag) in _HEX))


def _fill_string(resolved: Resolved, value: Any, element: ET.Element) -> None:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{value!r} is not a string")
    set_text(element, value)


def _fill_bits(resolved: Resolved, value: Any, element: ET.Element) -> None:
    try:
        data, size = value
        set_positions = [i for i in range(size) if data[i // 8] & (0x80 >> (i % 8))]
    except (TypeError, ValueError, IndexError):
        raise LocalProtocolError(f"{value!r} is not a BIT STRING (bytes, bits)") from None
    names = {int(number): name for name, number in resolved.spec.get("named-bits", [])}
    for position in set_positions:
        if position not in names:
            raise LocalProtocolError(f"bit {position} of {resolved.name} has no name in XML")
        ET.SubElement(element, names[position]).text = "true"


_WRITERS: Final = {
    "SEQUENCE": _fill_sequence,
    "SET": _fill_sequence,
    "CHOICE": _fill_choice,
    "SEQUENCE OF": _fill_list,
    "SET OF": _fill_list,
    "ENUMERATED": _fill_enumerated,
    "INTEGER": _fill_integer,
    "BOOLEAN": _fill_boolean,
    "NULL": _fill_null,
    "OCTET STRING": _fill_octets,
    "BIT STRING": _fill_bits,
    **{kind: _fill_string for kind in STRINGS},
}
