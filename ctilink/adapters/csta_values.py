"""CSTA values as the adapter reads them and the adapter and the simulator build them.

The codecs (``ctilink.csta``) hand out asn1tools values (see the ``ctilink.csta``
docstring): CHOICEs as ``(alternative, value)``, SEQUENCEs as dicts. This module is the one
place that knows their shapes for what ctilink cares about:

* a device is its dialling number: ``DeviceID`` ``{"deviceIdentifier": ("dialingNumber",
  "6001")}`` and the device CHOICEs around it (``SubjectDeviceID``, ``CallingDeviceID``,
  ``RedirectionDeviceID``...) read as ``"6001"``, or None when the switch says ``notKnown``,
  ``restricted``... A ``deviceNumber`` reads as its decimal digits, ``other`` as hex;
* a ``ConnectionID`` is read as ``(callID, device)``, either possibly None (a
  ``dynamicID`` names no dialling number);
* a ``callID`` is shown (``switch_call_id``) as text when it is printable ASCII, else hex;
* ``EventCause`` values become ctilink's causes: the Q.850 names the Asterisk adapter uses
  where one means the same (``normalClearing`` → ``normal_clearing``, 16), else the CSTA
  name in snake_case (``callPickup`` → ``call_pickup``);
* ``userData`` carries call data as ``KEY=VALUE`` pairs separated by ``;`` or newlines
  (UTF-8); anything else is kept whole as ``user_data``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

DeviceValue = dict[str, Any]

# CSTA choices that say "no device": notKnown, restricted, notRequired, notSpecified...
_DEVICE_ALTERNATIVES: Final = frozenset({"deviceIdentifier", "numberdialed", "deviceID"})

# EventCause → (ctilink cause, Q.850 code) where a Q.850 cause means the same thing.
CAUSES: Final[Mapping[str, tuple[str, int | None]]] = {
    "normalClearing": ("normal_clearing", 16),
    "normal": ("normal_clearing", 16),
    "busy": ("busy", 17),
    "callNotAnswered": ("no_answer", 19),
    "alertTimeExpired": ("no_answer", 19),
    "numberUnallocated": ("unallocated_number", 1),
    "numberChanged": ("number_changed", 22),
    "destOutOfOrder": ("destination_out_of_order", 27),
    "invalidNumberFormat": ("invalid_number_format", 28),
    "networkCongestion": ("congestion", 34),
    "networkOutOfOrder": ("network_out_of_order", 38),
    "incompatibleDestination": ("incompatible_destination", 88),
    "callCancelled": ("cancelled", None),
    "transfer": ("transfer", None),
    "singleStepTransfer": ("transfer", None),
    "callNotAnsweredRecall": ("no_answer", 19),
}
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


# -- building ------------------------------------------------------------------------------
def device_id(number: str) -> DeviceValue:
    """The ``DeviceID`` of a dialling number."""
    return {"deviceIdentifier": ("dialingNumber", number)}


def named(number: str | None) -> tuple[str, Any]:
    """A ``SubjectDeviceID``/``CallingDeviceID``/``CalledDeviceID``... value."""
    return ("deviceIdentifier", device_id(number)) if number else ("notKnown", None)


def redirection(number: str | None) -> tuple[str, Any]:
    """A ``RedirectionDeviceID`` value."""
    return ("numberdialed", device_id(number)) if number else ("notKnown", None)


def connection(call_id: bytes, device: str | None) -> tuple[str, Any]:
    """A ``ConnectionID``: the call and, when known, the device's static id."""
    if device is None:
        return ("callID", call_id)
    return ("both", {"callID": call_id, "deviceID": ("staticID", device_id(device))})


def encode_user_data(data: Mapping[str, str]) -> bytes:
    return ";".join(f"{key}={value}" for key, value in data.items()).encode("utf-8")


# -- reading -------------------------------------------------------------------------------
def device_text(value: Any) -> str | None:
    """The dialling number of a ``DeviceID`` (None if it is not one)."""
    if not isinstance(value, dict):
        return None
    identifier = value.get("deviceIdentifier")
    if not isinstance(identifier, tuple) or len(identifier) != 2:
        return None
    form, number = identifier
    if isinstance(number, tuple):  # explicitPublic / explicitPrivate: (type of number, digits)
        number = number[1]
    if isinstance(number, bool):
        return None
    if isinstance(number, int):
        return str(number)
    if isinstance(number, bytes):
        return number.hex() if form == "other" else number.decode("ascii", "replace")
    return number if isinstance(number, str) and number else None


def device_of(value: Any) -> str | None:
    """The device a device CHOICE (subject, calling, called, redirection...) names."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] in _DEVICE_ALTERNATIVES:
        return device_text(value[1])
    return device_text(value)


def connection_parts(value: Any) -> tuple[bytes | None, str | None]:
    """``(callID, device)`` of a ``ConnectionID``."""
    if not isinstance(value, tuple) or len(value) != 2:
        return None, None
    form, inner = value
    if form == "callID":
        return inner, None
    if form == "deviceID":
        return None, _local_device(inner)
    if form == "both" and isinstance(inner, dict):
        return inner.get("callID"), _local_device(inner.get("deviceID"))
    return None, None


def _local_device(value: Any) -> str | None:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "staticID":
        return device_text(value[1])
    return None


def call_id_text(call_id: bytes) -> str:
    """How a CSTA callID is shown (``switch_call_id``)."""
    if call_id and all(0x21 <= byte < 0x7F for byte in call_id):
        return call_id.decode("ascii")
    return call_id.hex()


def snake(name: str) -> str:
    """``callPickup`` → ``call_pickup``, ``aCDBusy`` → ``a_cd_busy``."""
    return _CAMEL.sub("_", name).lower()


def cause(value: Any) -> tuple[str | None, int | None]:
    """ctilink's cause and Q.850 code for an ``EventCause`` (None, None when absent)."""
    if not isinstance(value, str):
        return None, None
    return CAUSES.get(value, (snake(value), None))


def user_data(value: Any) -> dict[str, str]:
    """Call data carried in ``userData`` (see the module docstring)."""
    if not isinstance(value, bytes) or not value:
        return {}
    text = value.decode("utf-8", "replace")
    pairs = [part for part in re.split(r"[;\n]", text) if part.strip()]
    if pairs and all("=" in part for part in pairs):
        return {key.strip(): item for key, _, item in (part.partition("=") for part in pairs)}
    return {"user_data": text}


def octets_text(value: Any) -> str | None:
    """An OCTET STRING identifier (agentID, crossRefIdentifier) as text."""
    if isinstance(value, bytes) and value:
        return call_id_text(value)
    return None
