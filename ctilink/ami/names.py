"""How Asterisk names map to ctilink names: devices, agents, causes.

A CTI client thinks in dialling numbers ("6001", "5551234567"), not channel names. These
helpers derive them, and nothing else in ctilink parses Asterisk names:

* a channel name ``PJSIP/6001-0000001a`` or ``Local/6001@agents-00000001;2`` names the
  device ``6001`` (technology, unique suffix, Local half and ``@context`` removed);
* a dial string (``DialString`` of DialBegin, a queue member's ``Interface``) names the
  device it dials: ``PJSIP/6001`` → ``6001``, ``PJSIP/trunk/5550001111`` and
  ``PJSIP/5550001111@trunk`` → ``5550001111``, ``Local/6001@agents/n`` → ``6001``, and an
  Originate's ``6001@agents`` → ``6001``;
* Q.850 hangup causes become snake_case names (``16`` → ``normal_clearing``), the number
  kept beside them.
"""

from __future__ import annotations

import re
from typing import Final

# "<unknown>" is Asterisk's spelling of an empty caller id; "unknown" appears in QueueEntry.
_UNKNOWN: Final = frozenset({"", "<unknown>", "unknown", "<null>"})
_UNIQUE_SUFFIX = re.compile(r"-[0-9a-fA-F]{8}(;[12])?$")
_LOCAL_OPTIONS: Final = frozenset({"n", "m", "b", "j"})


def known(value: str | None) -> str | None:
    """``value`` unless Asterisk used it to say "unknown"."""
    if value is None or value.strip() in _UNKNOWN:
        return None
    return value


def device_of_channel(name: str) -> str:
    """The device a channel name belongs to."""
    resource = name.split("/", 1)[1] if "/" in name else name
    resource = _UNIQUE_SUFFIX.sub("", resource)
    resource = resource.split(";", 1)[0]
    return resource.split("@", 1)[0] or name


def device_of_dialstring(dialstring: str | None) -> str | None:
    """The device a dial string (or queue member interface) reaches, or None."""
    if not known(dialstring):
        return None
    assert dialstring is not None
    parts = dialstring.split("/")
    if len(parts) > 1 and "@" not in parts[0]:
        parts = parts[1:]  # the technology
    while len(parts) > 1 and parts[-1] in _LOCAL_OPTIONS:
        parts.pop()
    target = parts[-1].split("@", 1)[0]
    return target or None


def local_pair(name: str) -> tuple[str, int] | None:
    """``("Local/800@inbound-00000000", 1)`` for a Local channel half, else None."""
    if not name.startswith("Local/") or len(name) < 3 or name[-2] != ";":
        return None
    half = name[-1]
    if half not in "12":
        return None
    return name[:-2], int(half)


# Q.850 cause values as Asterisk uses them (main/channel.c causes[]), snake_case.
Q850: Final[dict[int, str]] = {
    0: "unknown",
    1: "unallocated_number",
    2: "no_route_transit_net",
    3: "no_route_destination",
    6: "channel_unacceptable",
    16: "normal_clearing",
    17: "busy",
    18: "no_user_response",
    19: "no_answer",
    20: "subscriber_absent",
    21: "call_rejected",
    22: "number_changed",
    26: "answered_elsewhere",
    27: "destination_out_of_order",
    28: "invalid_number_format",
    29: "facility_rejected",
    31: "normal_unspecified",
    34: "congestion",
    38: "network_out_of_order",
    41: "temporary_failure",
    42: "switch_congestion",
    44: "requested_channel_unavailable",
    50: "facility_not_subscribed",
    58: "bearer_capability_not_available",
    65: "bearer_capability_not_implemented",
    88: "incompatible_destination",
    102: "recovery_on_timer_expire",
    111: "protocol_error",
    127: "interworking",
}


def cause_name(code: int) -> str:
    return Q850.get(code, f"q850_{code}")


def parse_int(value: str | None) -> int | None:
    """A decimal integer header value, or None (absent, empty or not a number)."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdecimal() and text.isascii() else None


parse_cause = parse_int


# DialEnd DialStatus → (event, cause); event "failed" for refusals, None when the
# destination simply stopped ringing.
DIAL_STATUS: Final[dict[str, tuple[str | None, str]]] = {
    "BUSY": ("failed", "busy"),
    "CONGESTION": ("failed", "congestion"),
    "CHANUNAVAIL": ("failed", "unavailable"),
    "NOANSWER": (None, "no_answer"),
    "CANCEL": (None, "cancelled"),
    "ABORT": (None, "aborted"),
    "TIMEDOUT": (None, "no_answer"),
}

# OriginateResponse Reason (last control frame seen) → cause.
ORIGINATE_REASON: Final[dict[str, str]] = {
    "0": "failed",
    "1": "hangup",
    "3": "no_answer",
    "5": "busy",
    "8": "congestion",
}
