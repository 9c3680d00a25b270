"""The CSTA XML types whose shape is not their ASN.1's: DeviceID, LocalDeviceID, ConnectionID.

Theory of operation
-------------------
ECMA-285 spells a device as ``DeviceID ::= SEQUENCE { deviceIdentifier CHOICE
{ dialingNumber, deviceNumber, implicitPublic, explicitPublic PublicTON, ... } ... }``;
ECMA-323 spells it as text with the kind of number in an attribute (``typeOfNumber``,
default ``dialingNumber``; ``explicitPublic:international`` and the like for the explicit
plans). A connection is ``ConnectionID ::= CHOICE { callID, deviceID, both }`` in ASN.1 and
a sequence of an optional ``callID`` and an optional ``deviceID`` in XML, where the local
device's dynamic id is a ``deviceID`` with ``typeOfNumber="dynamic"``. Call ids and dynamic
ids are ``xsd:string``: their bytes are the text's UTF-8.

The attributes ECMA-323 adds for a device's media (``mediaClass``, ``bitRate``...) and
ASN.1's ``privateNumber``/``privateName`` are not mapped: ignored on input; a value that
has them cannot be sent (``LocalProtocolError``).
"""

from __future__ import annotations

import functools
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, Final

from ctilink.csta.xml_types import (
    Mistyped,
    children,
    integer,
    local,
    octets_text,
    set_text,
    text,
    type_spec,
)
from ctilink.errors import LocalProtocolError

log = logging.getLogger(__name__)

_DEVICES: Final = "CSTA-device-identifiers"
_PLAIN_NUMBERS: Final = ("dialingNumber", "implicitPublic", "implicitPrivate")
_EXPLICIT: Final = (("explicitPublic", "PublicTON"), ("explicitPrivate", "PrivateTON"))


@functools.cache
def _numbering_plans(ton: str) -> tuple[str, ...]:
    return tuple(member["name"] for member in type_spec(_DEVICES, ton).spec["members"])


def read_device_id(element: ET.Element) -> dict[str, Any]:
    """``<callingDevice typeOfNumber="explicitPublic:international">4930...</...>``."""
    kind, _, plan = element.get("typeOfNumber", "dialingNumber").partition(":")
    if kind == "deviceNumber":
        return {"deviceIdentifier": ("deviceNumber", integer(element))}
    if kind == "other":
        return {"deviceIdentifier": ("other", text(element).encode("utf-8"))}
    for explicit, ton in _EXPLICIT:
        if kind == explicit:
            if plan not in _numbering_plans(ton):
                raise Mistyped(f"typeOfNumber {explicit}:{plan} is not known")
            return {"deviceIdentifier": (explicit, (plan, text(element)))}
    if kind not in _PLAIN_NUMBERS:
        log.debug("CSTA XML: typeOfNumber %r read as dialingNumber", kind)
        kind = "dialingNumber"
    return {"deviceIdentifier": (kind, text(element))}


def write_device_id(value: Any, element: ET.Element) -> None:
    if not isinstance(value, dict) or set(value) != {"deviceIdentifier"}:
        raise LocalProtocolError(f"CSTA XML carries a DeviceID's deviceIdentifier only: {value!r}")
    try:
        kind, number = value["deviceIdentifier"]
        if kind in ("explicitPublic", "explicitPrivate"):
            plan, number = number
            kind = f"{kind}:{plan}"
    except (TypeError, ValueError):
        raise LocalProtocolError(f"bad deviceIdentifier {value!r}") from None
    if kind == "deviceNumber":
        if not isinstance(number, int) or isinstance(number, bool):
            raise LocalProtocolError(f"deviceNumber {number!r} is not an integer")
        number = str(number)
    elif kind == "other":
        number = octets_text(number)
    elif kind not in _PLAIN_NUMBERS and ":" not in kind:
        raise LocalProtocolError(f"unknown deviceIdentifier kind {kind!r}")
    if not isinstance(number, str):
        raise LocalProtocolError(f"device number {number!r} is not a string")
    if kind != "dialingNumber":  # the schema's default, left out as switches do
        element.set("typeOfNumber", kind)
    set_text(element, number)


def read_local_device_id(element: ET.Element) -> tuple[str, Any]:
    if element.get("typeOfNumber") == "dynamic":
        return "dynamicID", text(element).encode("utf-8")
    return "staticID", read_device_id(element)


def write_local_device_id(value: Any, element: ET.Element) -> None:
    kind = value[0] if isinstance(value, tuple) and len(value) == 2 else None
    if kind == "dynamicID":
        element.set("typeOfNumber", "dynamic")
        set_text(element, octets_text(value[1]))
    elif kind == "staticID":
        write_device_id(value[1], element)
    else:
        raise LocalProtocolError(f"bad LocalDeviceID {value!r}")


def read_connection_id(element: ET.Element) -> tuple[str, Any]:
    """``<connection><callID>42</callID><deviceID>6001</deviceID></connection>``."""
    found = children(element)
    call, device = found.get("callid"), found.get("deviceid")
    if call is not None and device is not None:
        both = {"callID": text(call).encode("utf-8"), "deviceID": read_local_device_id(device)}
        return "both", both
    if call is not None:
        return "callID", text(call).encode("utf-8")
    if device is not None:
        return "deviceID", read_local_device_id(device)
    raise Mistyped(f"<{local(element.tag)}> has neither callID nor deviceID")


def write_connection_id(value: Any, element: ET.Element) -> None:
    kind, content = value if isinstance(value, tuple) and len(value) == 2 else (None, None)
    if kind == "both" and isinstance(content, dict) and set(content) == {"callID", "deviceID"}:
        call, device = content["callID"], content["deviceID"]
    elif kind == "callID":
        call, device = content, None
    elif kind == "deviceID":
        call, device = None, content
    else:
        raise LocalProtocolError(f"bad ConnectionID {value!r}")
    if call is not None:
        set_text(ET.SubElement(element, "callID"), octets_text(call))
    if device is not None:
        write_local_device_id(device, ET.SubElement(element, "deviceID"))


Reader = Callable[[ET.Element], Any]
Writer = Callable[[Any, ET.Element], None]

SPECIAL: Final[dict[str, tuple[Reader, Writer]]] = {
    "DeviceID": (read_device_id, write_device_id),
    "LocalDeviceID": (read_local_device_id, write_local_device_id),
    "ConnectionID": (read_connection_id, write_connection_id),
}
