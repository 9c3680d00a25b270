"""ECMA-354 application sessions: the association dialogue some CSTA XML switches require.

Theory of operation
-------------------
CSTA XML has no ACSE. A switch either takes the TCP connection as the association (no
dialogue at all), or asks for an application session (ECMA-354, the dialogue Avaya AES
and OpenScape Voice use): the application sends ``StartApplicationSession`` naming itself
and the CSTA protocol versions (ECMA-323 namespaces) it speaks, and the switch answers
``StartApplicationSessionPosResponse`` with a session id, the version chosen and the
session's duration in seconds, or ``StartApplicationSessionNegResponse``. The application
keeps the session alive with ``ResetApplicationSessionTimer`` before the duration runs
out and ends it with ``StopApplicationSession``; the switch may end it with
``ApplicationSessionTerminated``.

This module only builds and reads those documents; the dialogue's states are in
``xml_connection``. Documents are read by local name whatever their namespace (public
traces show the positive response without the ECMA-354 namespace).

Element names and the fields used here are those of public clients and traces (OpenScape
Voice, Avaya AES); not verified against the ECMA-354 text: the negative responses' content
(ignored), and how a switch wants a login (vendor-specific ``applicationSpecificInfo``,
not sent).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Final

from ctilink.csta.xml import serialize
from ctilink.csta.xml_types import local, set_text

NAMESPACE: Final = "http://www.ecma-international.org/standards/ecma-354/appl_session"
START: Final = "StartApplicationSession"
STARTED: Final = "StartApplicationSessionPosResponse"
START_REFUSED: Final = "StartApplicationSessionNegResponse"
STOP: Final = "StopApplicationSession"
STOPPED: Final = "StopApplicationSessionPosResponse"
STOP_REFUSED: Final = "StopApplicationSessionNegResponse"
RESET: Final = "ResetApplicationSessionTimer"
RESET_DONE: Final = "ResetApplicationSessionTimerPosResponse"
RESET_REFUSED: Final = "ResetApplicationSessionTimerNegResponse"
TERMINATED: Final = "ApplicationSessionTerminated"
ELEMENTS: Final = frozenset(
    {START, STARTED, START_REFUSED, STOP, STOPPED, STOP_REFUSED, RESET, RESET_DONE,
     RESET_REFUSED, TERMINATED}
)  # fmt: skip
_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>'


@dataclass(frozen=True, slots=True)
class ApplicationSession:
    """What a client asks for: its name, the ECMA-323 namespaces it speaks (preferred
    first) and the session's duration in seconds."""

    application_id: str = "ctilink"
    protocol_versions: tuple[str, ...] = ()
    duration: int = 180


@dataclass(frozen=True, slots=True)
class SessionMessage:
    """A session document: its name, its leaf elements' text by local name (the first of
    each), and the protocol versions it lists."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)
    protocol_versions: tuple[str, ...] = ()

    def number(self, name: str, default: int) -> int:
        value = self.fields.get(name, "").strip()
        return int(value) if value.isdigit() and len(value) < 10 else default


def is_session(root: ET.Element) -> bool:
    return local(root.tag) in ELEMENTS


def decode(root: ET.Element) -> SessionMessage:
    fields: dict[str, str] = {}
    versions: list[str] = []
    for node in root.iter():
        name = local(node.tag)
        if node is root or not name or len(node):
            continue
        fields.setdefault(name, node.text or "")
        if name == "protocolVersion":
            versions.append((node.text or "").strip())
    return SessionMessage(local(root.tag), fields, tuple(versions))


def _document(name: str, *children: tuple[str, str]) -> bytes:
    root = ET.Element(name, xmlns=NAMESPACE)
    for path, value in children:
        parent = root
        for step in path.split("/"):
            parent = ET.SubElement(parent, step)
        set_text(parent, value)
    return _DECLARATION + serialize(root)


def start(session: ApplicationSession, versions: tuple[str, ...]) -> bytes:
    root = ET.Element(START, xmlns=NAMESPACE)
    set_text(ET.SubElement(ET.SubElement(root, "applicationInfo"), "applicationID"),
             session.application_id)  # fmt: skip
    requested = ET.SubElement(root, "requestedProtocolVersions")
    for version in versions:
        set_text(ET.SubElement(requested, "protocolVersion"), version)
    ET.SubElement(root, "requestedSessionDuration").text = str(session.duration)
    return _DECLARATION + serialize(root)


def started(session_id: str, version: str, duration: int) -> bytes:
    return _document(
        STARTED,
        ("sessionID", session_id),
        ("actualProtocolVersion", version),
        ("actualSessionDuration", str(duration)),
    )


def start_refused() -> bytes:
    return _document(START_REFUSED)


def stop(session_id: str, reason: str = "normal") -> bytes:
    return _document(STOP, ("sessionID", session_id), ("sessionEndReason/appEndReason", reason))


def stopped() -> bytes:
    return _document(STOPPED)


def reset(session_id: str, duration: int) -> bytes:
    return _document(RESET, ("sessionID", session_id), ("requestedSessionDuration", str(duration)))


def reset_done(duration: int) -> bytes:
    return _document(RESET_DONE, ("actualSessionDuration", str(duration)))
