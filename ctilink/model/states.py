"""CSTA state vocabularies (ECMA-269 names, snake_case on the wire)."""

from __future__ import annotations

from enum import StrEnum


class LocalConnectionState(StrEnum):
    """The state of one device's connection to a call (ECMA-269 LocalConnectionState)."""

    NULL = "null"
    INITIATED = "initiated"
    ALERTING = "alerting"
    CONNECTED = "connected"
    HELD = "held"
    QUEUED = "queued"
    FAIL = "fail"


class AgentState(StrEnum):
    """An agent's overall state (ECMA-269 AgentState, as CTI clients expect it)."""

    LOGGED_OFF = "logged_off"
    NOT_READY = "not_ready"
    READY = "ready"
    BUSY = "busy"
    WORKING_AFTER_CALL = "working_after_call"


class LinkState(StrEnum):
    """The state of ctilink's link to one switch."""

    DOWN = "down"
    UP = "up"
