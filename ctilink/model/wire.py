"""The one place where model objects become the JSON that clients receive.

Every field of an event appears under its own name, in declaration order after ``seq``,
``type``, ``time`` and ``switch``. Fields that identify what an event is about are always
present (``null`` when the switch did not say); the optional ones (queue, agent, cause...)
appear only when known, so a client never has to tell "unknown" from "absent". ``time`` is
ISO 8601 in UTC with milliseconds. ``schemas/events/`` describes the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from ctilink.model.events import AgentEvent, CallEvent, Event

# Fields present in every event of a family even when None; the rest appear when known.
_ALWAYS_CALL = frozenset(
    {"call_id", "device", "calling_number", "called_number", "connection_state"}
)
_ALWAYS_AGENT = frozenset({"agent", "state", "reason"})
_HEAD = frozenset({"seq", "time", "switch"})
_EMPTY_OMITTED = frozenset({"data", "route_data"})


def iso_time(posix: float) -> str:
    """POSIX seconds → ``2026-11-22T13:53:50.838Z``."""
    stamp = datetime.fromtimestamp(posix, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


_plans: dict[type[Event], tuple[tuple[str, bool], ...]] = {}


def _field_plan(cls: type[Event]) -> tuple[tuple[str, bool], ...]:
    """(name, always-present) for the fields of ``cls`` after the head, cached per class."""
    plan = _plans.get(cls)
    if plan is None:
        always: frozenset[str] = frozenset()
        if issubclass(cls, CallEvent):
            always = _ALWAYS_CALL
        elif issubclass(cls, AgentEvent):
            always = _ALWAYS_AGENT
        plan = tuple((f.name, f.name in always) for f in fields(cls) if f.name not in _HEAD)
        _plans[cls] = plan
    return plan


def _plain(value: Any) -> Any:
    """Enums to their values, any mapping (nested too) to a dict, sequences to lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def event_to_wire(event: Event) -> dict[str, Any]:
    """The JSON object (as a dict) for ``event``."""
    out: dict[str, Any] = {
        "seq": event.seq,
        "type": event.TYPE,
        "time": iso_time(event.time),
        "switch": event.switch,
    }
    for name, always in _field_plan(type(event)):
        value = getattr(event, name)
        if value is None and not always:
            continue
        if name in _EMPTY_OMITTED and not value:
            continue
        out[name] = _plain(value)
    return out


def dumps(obj: dict[str, Any]) -> str:
    """Compact JSON text for one wire object (UTF-8 kept as is; unknown types as text)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def event_json(event: Event) -> str:
    return dumps(event_to_wire(event))
