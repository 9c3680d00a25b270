"""The one place where model objects become the JSON that clients receive: events and
the snapshot.

Every field of an event appears under its own name, in declaration order after ``seq``,
``type``, ``time`` and ``switch``. Fields that identify what an event is about are always
present (``null`` when the switch did not say); the optional ones (queue, agent, cause...)
appear only when known, so a client never has to tell "unknown" from "absent". ``time`` is
ISO 8601 in UTC with milliseconds. ``schemas/events/`` describes the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from ctilink.model.events import AgentEvent, CallEvent, Event
from ctilink.model.records import AgentRecord, CallRecord, LinkRecord, QueueRecord

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


# The last event encoded, its wire object and its text: the event log and the event socket
# both need them for every event the hub hands on, and events are frozen, so the second
# asker gets the first one's work (about 18 µs an event).
_last: tuple[Event, dict[str, Any], str] | None = None


def event_wire(event: Event) -> tuple[dict[str, Any], str]:
    """``event``'s wire object and its JSON text, encoded once per event (callers must not
    modify the object)."""
    global _last
    last = _last
    if last is not None and last[0] is event:
        return last[1], last[2]
    wire = event_to_wire(event)
    text = dumps(wire)
    _last = (event, wire, text)
    return wire, text


def event_json(event: Event) -> str:
    return event_wire(event)[1]


# -- the snapshot ---------------------------------------------------------------------------
def snapshot_to_wire(
    last_seq: int,
    now: float,
    calls: Iterable[CallRecord],
    agents: Iterable[AgentRecord],
    queues: Iterable[QueueRecord],
    links: Iterable[LinkRecord],
) -> dict[str, Any]:
    """The ``snapshot`` message: everything live up to ``last_seq`` (schemas/snapshot)."""
    return {
        "type": "snapshot",
        "seq": last_seq,
        "time": iso_time(now),
        "calls": [_call(call) for call in calls],
        "agents": [_agent(agent) for agent in agents],
        "queues": [_queue(queue, now) for queue in queues],
        "links": [
            {
                "switch": link.switch,
                "state": link.state.value,
                "since": iso_time(link.since),
                "detail": link.detail,
            }
            for link in links
        ],
    }


def _call(call: CallRecord) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "switch": call.switch,
        "calling_number": call.calling_number,
        "called_number": call.called_number,
        "queue": call.queue,
        "agent": call.agent,
        "switch_call_id": call.switch_call_id,
        "started": iso_time(call.started),
        "answered": None if call.answered is None else iso_time(call.answered),
        "connections": [
            {"device": device, "state": state.value} for device, state in call.connections.items()
        ],
        "data": dict(call.data),
    }


def _agent(agent: AgentRecord) -> dict[str, Any]:
    return {
        "switch": agent.switch,
        "agent": agent.agent,
        "agent_name": agent.agent_name,
        "device": agent.device,
        "state": agent.state.value,
        "reason": agent.reason,
        "since": iso_time(agent.since),
        "queues": [
            {
                "queue": member.queue,
                "state": "not_ready" if member.paused else "ready",
                "reason": member.reason,
            }
            for member in agent.queues.values()
        ],
    }


def _queue(queue: QueueRecord, now: float) -> dict[str, Any]:
    waiting = [
        {
            "call_id": entry.call_id,
            "position": position,  # derived from join order, never stored
            "since": iso_time(entry.since),
            "wait_seconds": round(max(0.0, now - entry.since), 3),
        }
        for position, entry in enumerate(queue.waiting, start=1)
    ]
    return {
        "switch": queue.switch,
        "queue": queue.queue,
        "calls_waiting": len(waiting),
        "longest_wait_seconds": waiting[0]["wait_seconds"] if waiting else 0.0,
        "waiting": waiting,
    }
