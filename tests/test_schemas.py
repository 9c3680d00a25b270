"""The JSON Schema files in ``schemas/`` against what ctilink really sends.

For every event type the tests build a fully populated event and a minimal one (optional
fields left at None/defaults), serialize both with ``wire.event_to_wire`` and validate them.
Comparing the two pins "required" to exactly the fields the wire always carries, and a
schema's property list to exactly the fields the wire can carry. Snapshots are checked from
a StateTracker fed a small inbound-call story.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.events import EVENT_TYPES
from ctilink.model.states import AgentState, LocalConnectionState
from ctilink.model.wire import event_to_wire, iso_time
from ctilink.state import StateTracker
from tests._schemas import (
    SCHEMA_DIR,
    declared_type,
    load_schema,
    message_files,
    registry,
    schema_files,
    schema_for,
    schema_types,
    validate_wire,
)

BASE_URI = "https://ctilink.org/schemas/"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
T0 = 1795355630.838  # 2026-11-22T13:53:50.838Z
SWITCH = "asterisk-1"

# -- building events -------------------------------------------------------------------
CONNECTION_STATE: dict[type[ev.CallEvent], LocalConnectionState] = {
    ev.ServiceInitiated: LocalConnectionState.INITIATED,
    ev.Originated: LocalConnectionState.CONNECTED,
    ev.Delivered: LocalConnectionState.ALERTING,
    ev.Established: LocalConnectionState.CONNECTED,
    ev.Held: LocalConnectionState.HELD,
    ev.Retrieved: LocalConnectionState.CONNECTED,
    ev.ConnectionCleared: LocalConnectionState.NULL,
    ev.CallCleared: LocalConnectionState.NULL,
    ev.Transferred: LocalConnectionState.NULL,
    ev.Conferenced: LocalConnectionState.CONNECTED,
    ev.Diverted: LocalConnectionState.NULL,
    ev.Queued: LocalConnectionState.QUEUED,
    ev.Failed: LocalConnectionState.FAIL,
    ev.NetworkReached: LocalConnectionState.CONNECTED,
    ev.RouteRequest: LocalConnectionState.ALERTING,
    ev.RouteSelected: LocalConnectionState.ALERTING,
    ev.ScreenPop: LocalConnectionState.ALERTING,
}
# Class-specific fields: everything for the full event, the required ones for the minimal.
CALL_EXTRAS: dict[type[ev.CallEvent], dict[str, Any]] = {
    ev.Delivered: {"last_redirection_device": "support"},
    ev.Transferred: {"transferred_to": "6002", "secondary_call_id": "c-0002"},
    ev.Conferenced: {"added_device": "6003", "secondary_call_id": "c-0002"},
    ev.Diverted: {"new_destination": "6001"},
    ev.Queued: {"position": 2, "queue_count": 3, "last_redirection_device": "800"},
    ev.RouteRequest: {"route_data": {"arg_1": "support"}},
    ev.RouteSelected: {"destination": "sales", "priority": 10, "rule": "vip-callers"},
    ev.ScreenPop: {
        "customer": {
            "known": True,
            "number": "+15551234567",
            "identified_by": "account",
            "id": 1,
            "account": "ACME-001",
            "accounts": ["ACME-001"],
            "name": "Alice Customer",
            "tier": "gold",
            "language": "en",
            "preferred_agent": None,
            "notes": "2 tickets",
            "interactions": [
                {
                    "call_id": "c-0000",
                    "started": "2026-11-20T09:00:00.000Z",
                    "answered": None,
                    "ended": "2026-11-20T09:01:00.000Z",
                    "queue": "support",
                    "agent": None,
                    "outcome": "abandoned",
                }
            ],
            "wait_seconds": 4.5,
        },
    },
}
CALL_REQUIRED: dict[type[ev.CallEvent], dict[str, Any]] = {
    ev.Queued: {"position": 1},
    ev.RouteSelected: {"destination": "sales"},
}
AGENT_STATE: dict[type[ev.AgentEvent], AgentState] = {
    ev.AgentLoggedOn: AgentState.NOT_READY,
    ev.AgentLoggedOff: AgentState.LOGGED_OFF,
    ev.AgentReady: AgentState.READY,
    ev.AgentNotReady: AgentState.NOT_READY,
    ev.AgentWorkingAfterCall: AgentState.WORKING_AFTER_CALL,
    ev.AgentBusy: AgentState.BUSY,
}

# ctilink's own events (statistics, callbacks): the required fields for the minimal event,
# every field for the full one.
OWN_REQUIRED: dict[type[ev.Event], dict[str, Any]] = {
    ev.QueueStats: {
        "queue": "support", "calls_waiting": 2, "longest_wait_seconds": 12.5,
        "agents_ready": 1, "agents_busy": 3, "agents_not_ready": 1,
        "agents_working_after_call": 1, "calls_offered": 40, "calls_answered": 35,
        "calls_abandoned": 3, "answered_within_target": 30,
        "service_level_target_seconds": 20.0, "counters_since": "2026-11-22T08:00:00.000Z",
    },
    ev.AgentStats: {
        "agent": "6001", "state": AgentState.READY, "state_since": "2026-11-22T13:50:00.000Z",
        "seconds_in_state": 230.8, "calls_handled": 12,
    },
    ev.CallbackChanged: {
        "callback_id": "cb-0001", "queue": "support", "number": "5551234567",
        "status": "queued", "attempts": 0, "requested": "2026-11-22T13:50:00.000Z",
    },
}  # fmt: skip
OWN_FULL: dict[type[ev.Event], dict[str, Any]] = {
    ev.QueueStats: {
        **OWN_REQUIRED[ev.QueueStats], "service_level_percent": 78.9,
        "average_speed_of_answer_seconds": 9.4,
    },
    ev.AgentStats: {
        **OWN_REQUIRED[ev.AgentStats], "state": AgentState.NOT_READY, "reason": "lunch",
        "queues": ("support", "sales"), "agent_name": "Agent Alice", "device": "6001",
    },
    ev.CallbackChanged: {
        **OWN_REQUIRED[ev.CallbackChanged], "status": "dialling", "attempts": 1,
        "name": "Alice Customer", "not_before": "2026-11-22T14:00:00.000Z", "agent": "6001",
        "device": "6001", "call_id": "c-0001", "error": "busy",
        "data": {"CUSTOMER_ACCOUNT": "ACME-001"},
    },
}  # fmt: skip


def full_event(cls: type[ev.Event]) -> ev.Event:
    """A realistic ``cls`` event with every field set, numbered as the hub would."""
    head: dict[str, Any] = {"switch": SWITCH, "time": T0, "seq": 42}
    if issubclass(cls, ev.CallEvent):
        return cls(
            **head,
            call_id="c-0001",
            device="6001",
            calling_number="5551234567",
            called_number="800",
            connection_state=CONNECTION_STATE[cls],
            queue="support",
            agent="6001",
            cause="normal_clearing",
            cause_code=16,
            switch_call_id="1795355630.17",
            data={"CUSTOMER_ACCOUNT": "ACME-001"},
            **CALL_EXTRAS.get(cls, {}),
        )
    if issubclass(cls, ev.AgentEvent):
        return cls(
            **head,
            agent="6001",
            state=AGENT_STATE[cls],
            agent_name="Agent Alice",
            device="Local/6001@agents/n",
            queue="support",
            reason="lunch",
        )
    if cls in OWN_FULL:
        return cls(**head, **OWN_FULL[cls])
    assert issubclass(cls, ev.LinkEvent)
    return cls(**head, detail="connected to Asterisk 22.10.1, AMI 11.0.0")


def minimal_event(cls: type[ev.Event]) -> ev.Event:
    """A ``cls`` event with only what the constructor demands; the rest at their defaults."""
    head: dict[str, Any] = {"switch": SWITCH, "time": T0}
    if issubclass(cls, ev.CallEvent):
        event: ev.Event = cls(
            **head,
            call_id="c-0001",
            device=None,
            calling_number=None,
            called_number=None,
            connection_state=None,
            **CALL_REQUIRED.get(cls, {}),
        )
    elif issubclass(cls, ev.AgentEvent):
        event = cls(**head, agent="6001", state=AGENT_STATE[cls])
    elif cls in OWN_REQUIRED:
        event = cls(**head, **OWN_REQUIRED[cls])
    else:
        event = cls(**head)
    return replace(event, seq=1)  # what clients get has been numbered by the hub


EVENT_CLASSES = sorted(EVENT_TYPES.values(), key=lambda cls: cls.TYPE)
by_type = pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.TYPE)


def test_every_event_class_is_covered_by_the_builders() -> None:
    for cls in EVENT_CLASSES:
        if issubclass(cls, ev.CallEvent):
            assert cls in CONNECTION_STATE, cls.TYPE
        if issubclass(cls, ev.AgentEvent):
            assert cls in AGENT_STATE, cls.TYPE


@by_type
def test_full_event_sets_every_field(cls: type[ev.Event]) -> None:
    # If this fails, a field was added to the model: extend CALL_EXTRAS (and the schema).
    event = full_event(cls)
    unset = [f.name for f in fields(event) if getattr(event, f.name) in (None, {})]
    assert unset == []


# -- the files -------------------------------------------------------------------------
# The event socket's own messages: where each schema file lives (ctilink.screenpop).
SOCKET_MESSAGES = {
    "snapshot": SCHEMA_DIR,
    "gap": SCHEMA_DIR,
    "error": SCHEMA_DIR,
    "subscribe": SCHEMA_DIR / "client",  # sent by clients
    "ack": SCHEMA_DIR / "client",
}


def test_every_event_type_has_a_schema_and_no_schema_is_orphaned() -> None:
    assert schema_types() == set(EVENT_TYPES) | set(SOCKET_MESSAGES)


@pytest.mark.parametrize("path", message_files(), ids=lambda p: p.name)
def test_schema_file_is_named_after_its_type(path: Path) -> None:
    type_ = declared_type(path)
    assert path.name == f"{type_}.schema.json"
    expected_dir = SOCKET_MESSAGES.get(type_, SCHEMA_DIR / "events")
    assert path.parent == expected_dir


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12(path: Path) -> None:
    schema = load_schema(path)
    assert schema["$schema"] == DRAFT
    assert schema["$id"] == BASE_URI + path.relative_to(SCHEMA_DIR).as_posix()
    Draft202012Validator.check_schema(schema)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_every_ref_resolves_offline(path: Path) -> None:
    schema = load_schema(path)
    resolver = registry().resolver(base_uri=schema["$id"])
    refs = [node["$ref"] for node in _walk(schema) if isinstance(node.get("$ref"), str)]
    assert refs or path.name == "error.schema.json"  # the one that needs no shared type
    for ref in refs:
        resolver.lookup(ref)  # raises referencing.exceptions.Unresolvable


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_every_property_has_a_description(path: Path) -> None:
    schema = load_schema(path)
    assert schema.get("description")
    for node in _walk(schema):
        for name, prop in node.get("properties", {}).items():
            assert isinstance(prop.get("description"), str) and prop["description"], name


# -- events validate -------------------------------------------------------------------
@by_type
def test_full_event_validates(cls: type[ev.Event]) -> None:
    wire = event_to_wire(full_event(cls))
    validate_wire(wire)
    # ...and the schema documents exactly the fields the wire can carry, no more.
    assert set(wire) == set(schema_for(cls.TYPE)["properties"])


@by_type
def test_minimal_event_validates(cls: type[ev.Event]) -> None:
    validate_wire(event_to_wire(minimal_event(cls)))


@by_type
def test_required_is_exactly_what_the_wire_always_carries(cls: type[ev.Event]) -> None:
    always = event_to_wire(minimal_event(cls))
    full = event_to_wire(full_event(cls))
    for name in set(always) - {"type"}:  # without "type" no schema applies: see below
        with pytest.raises(AssertionError, match=f"'{name}' is a required property"):
            validate_wire({k: v for k, v in always.items() if k != name})
    for name in set(full) - set(always):
        validate_wire({k: v for k, v in full.items() if k != name})


@by_type
def test_optional_fields_are_absent_never_null(cls: type[ev.Event]) -> None:
    always = event_to_wire(minimal_event(cls))
    full = event_to_wire(full_event(cls))
    for name in set(full) - set(always):
        with pytest.raises(AssertionError, match=f"\\$.{name}: None is not of type"):
            validate_wire({**full, name: None})


# -- events that must not validate -----------------------------------------------------
def _delivered() -> dict[str, Any]:
    return event_to_wire(full_event(ev.Delivered))


def test_missing_required_field_fails() -> None:
    wire = _delivered()
    del wire["calling_number"]
    with pytest.raises(AssertionError, match="'calling_number' is a required property"):
        validate_wire(wire)


@pytest.mark.parametrize("value", ["ringing", "ALERTING", "", 3])
def test_wrong_connection_state_fails(value: object) -> None:
    with pytest.raises(AssertionError, match=r"\$\.connection_state"):
        validate_wire({**_delivered(), "connection_state": value})


@pytest.mark.parametrize("value", ["paused", "available", None])
def test_wrong_agent_state_fails(value: object) -> None:
    wire = event_to_wire(full_event(ev.AgentNotReady))
    with pytest.raises(AssertionError, match=r"\$\.state"):
        validate_wire({**wire, "state": value})


def test_extra_field_fails() -> None:
    with pytest.raises(AssertionError, match="'caller_name' was unexpected"):
        validate_wire({**_delivered(), "caller_name": "Alice Customer"})


def test_field_of_another_event_type_fails() -> None:
    wire = {**event_to_wire(full_event(ev.Held)), "last_redirection_device": "support"}
    with pytest.raises(AssertionError, match="'last_redirection_device' was unexpected"):
        validate_wire(wire)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T13:53:50Z",  # no milliseconds
        "2026-11-22T13:53:50.838123Z",  # microseconds
        "2026-11-22T13:53:50.838+00:00",  # offset instead of Z
        "2026-11-22T13:53:50.838",  # no zone
        "2026-11-22 13:53:50.838Z",  # space separator
        "2026-13-22T13:53:50.838Z",  # month 13
        "22/11/2026 13:53:50",
        "1795355630.838",
        T0,  # POSIX seconds, not converted
    ],
)
def test_bad_time_fails(value: object) -> None:
    with pytest.raises(AssertionError, match=r"\$\.time"):
        validate_wire({**_delivered(), "time": value})


def test_unnumbered_event_fails() -> None:
    # seq 0 means the event never went through the hub: it must not reach a client.
    with pytest.raises(AssertionError, match=r"\$\.seq"):
        validate_wire(event_to_wire(replace(full_event(ev.Delivered), seq=0)))


def test_unknown_type_fails() -> None:
    with pytest.raises(AssertionError, match="no schema for message type 'ringing'"):
        validate_wire({**_delivered(), "type": "ringing"})
    with pytest.raises(AssertionError, match="no string 'type'"):
        validate_wire({k: v for k, v in _delivered().items() if k != "type"})


TIME_PATTERN = re.compile(
    load_schema(SCHEMA_DIR / "events" / "common.schema.json")["$defs"]["time"]["pattern"]
)


@given(st.floats(min_value=-2_208_988_800, max_value=7_258_118_400, allow_nan=False))
def test_iso_time_always_matches_the_schema_pattern(posix: float) -> None:
    assert TIME_PATTERN.fullmatch(iso_time(posix))


# -- snapshots -------------------------------------------------------------------------
def _call(cls: type[ev.CallEvent], call_id: str, device: str, **kw: Any) -> ev.CallEvent:
    return cls(
        switch=SWITCH,
        time=kw.pop("time", T0),
        call_id=call_id,
        device=device,
        calling_number=kw.pop("calling_number", "5551234567"),
        called_number="800",
        connection_state=CONNECTION_STATE[cls],
        **kw,
    )


def _agent(cls: type[ev.AgentEvent], agent: str, **kw: Any) -> ev.AgentEvent:
    return cls(switch=SWITCH, time=T0, agent=agent, state=AGENT_STATE[cls], **kw)


def _story() -> list[ev.Event]:
    """A link comes up, two agents log on to 'support', calls queue, ring and connect."""
    return [
        ev.LinkUp(switch=SWITCH, time=T0, detail="Asterisk Call Manager/11.0.0"),
        _agent(
            ev.AgentLoggedOn,
            "6001",
            queue="support",
            agent_name="Agent Alice",
            device="Local/6001@agents/n",
        ),
        _agent(ev.AgentReady, "6001", queue="support"),
        _agent(ev.AgentLoggedOn, "6002", queue="support"),
        _agent(ev.AgentNotReady, "6002", queue="support", reason="lunch"),
        # c-1 queues, rings at 6001, is answered there.
        _call(
            ev.Queued,
            "c-1",
            "support",
            queue="support",
            position=1,
            data={"CUSTOMER_ACCOUNT": "ACME-001"},
            switch_call_id="1795355630.17",
        ),
        _call(
            ev.Delivered,
            "c-1",
            "6001",
            queue="support",
            agent="6001",
            last_redirection_device="support",
            time=T0 + 3,
        ),
        _call(ev.Established, "c-1", "6001", time=T0 + 4),
        # c-2 is still waiting.
        _call(
            ev.Queued,
            "c-2",
            "support",
            queue="support",
            position=1,
            calling_number="5559876543",
            time=T0 + 5,
        ),
        # c-3 rings at 6002 from nowhere in particular.
        _call(ev.Delivered, "c-3", "6002", calling_number=None, time=T0 + 6),
    ]


def test_snapshot_of_a_busy_tracker_validates() -> None:
    hub = Hub()
    for event in _story():
        validate_wire(event_to_wire(hub.publish(event)))
    snapshot = hub.tracker.snapshot(T0 + 12.3456)
    validate_wire(snapshot)
    # The story really exercised every part of the snapshot.
    calls = {call["call_id"]: call for call in snapshot["calls"]}
    assert calls["c-1"]["answered"] is not None and calls["c-1"]["data"]
    assert calls["c-3"]["calling_number"] is None
    (queue,) = snapshot["queues"]
    assert [w["call_id"] for w in queue["waiting"]] == ["c-2"]
    agents = {agent["agent"]: agent for agent in snapshot["agents"]}
    assert agents["6002"]["reason"] == "lunch"
    assert agents["6002"]["queues"] == [
        {"queue": "support", "state": "not_ready", "reason": "lunch"}
    ]
    assert snapshot["links"][0]["state"] == "up"
    assert snapshot["seq"] == len(_story())


def test_snapshot_of_an_empty_tracker_validates() -> None:
    snapshot = StateTracker().snapshot(T0)
    validate_wire(snapshot)
    assert snapshot["seq"] == 0


def _busy_snapshot() -> dict[str, Any]:
    tracker = StateTracker()
    for seq, event in enumerate(_story(), start=1):
        tracker.apply(replace(event, seq=seq))
    return tracker.snapshot(T0 + 12.3456)


def test_snapshot_with_an_extra_field_fails() -> None:
    snapshot = _busy_snapshot()
    snapshot["agents"][0]["skills"] = ["english"]
    with pytest.raises(AssertionError, match=r"\$\.agents\[0\]: .*'skills' was unexpected"):
        validate_wire(snapshot)


def test_snapshot_connection_in_state_null_fails() -> None:
    # The tracker drops a connection when it goes to null; listing one would be a bug.
    snapshot = _busy_snapshot()
    snapshot["calls"][0]["connections"][0]["state"] = "null"
    with pytest.raises(AssertionError, match=r"\$\.calls\[0\]\.connections\[0\]\.state"):
        validate_wire(snapshot)


def test_snapshot_missing_a_nullable_field_fails() -> None:
    snapshot = _busy_snapshot()
    del snapshot["links"][0]["detail"]
    with pytest.raises(AssertionError, match="'detail' is a required property"):
        validate_wire(snapshot)


def test_an_event_is_encoded_once_and_equal_events_are_not_confused() -> None:
    from ctilink.model.wire import dumps, event_json, event_wire

    hub = Hub()
    first = hub.publish(ev.AgentReady(switch="pbx", time=0.0, agent="6001", state=AgentState.READY))
    wire, text = event_wire(first)
    assert event_wire(first) == (wire, text) and event_wire(first)[0] is wire  # reused
    assert wire == event_to_wire(first) and text == dumps(wire) == event_json(first)
    twin = replace(first, seq=first.seq + 1)  # another event: encoded on its own
    assert event_wire(twin)[0]["seq"] == first.seq + 1
    assert event_wire(first)[0]["seq"] == first.seq
