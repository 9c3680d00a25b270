"""CSTA XML (ECMA-323) documents <-> ``CstaMessage``: the same values as the BER codec.

Theory of operation
-------------------
ECMA-323 carries each CSTA service as a document named after it, with no ROSE around it
(the invoke id travels in the frame header, see ``xml_framing``):

* invoke ``makeCall``: ``<MakeCall>``. ``_REQUESTS`` names the document of every
  operation of ``operations.OPERATIONS`` (``singleStepTrans`` is ``SingleStepTransferCall``,
  ``reRouteRequest`` ``ReRoute``, ``routeSelectRequest`` ``RouteSelect``).
* result ``makeCall``: ``<MakeCallResponse>``. A result typed ``CHOICE { extensions,
  noData }`` is an empty ``<AnswerCallResponse/>``, read as ``("noData", None)``.
* error: ``<CSTAErrorCode>`` holding one universalFailure category
  (``<operation>invalidCalledDeviceID</operation>``). ECMA-323's own ``privateErrorCode``
  text is read as ``("privateErrorCode", text)``, a value BER cannot carry.
* invoke ``cSTAEventReport``: ``<DeliveredEvent>``, the ASN.1 event's name with a capital
  and ``Event`` (``TransferedEvent``, as ECMA-323 spells it), holding ``monitorCrossRefID``
  (the report's ``crossRefIdentifier``) and the event's components; the event class
  (``callControlEvents``...) follows from the event's name.
* reject: none, XML has no ROSE; ``encode`` refuses it.

The components of every argument and result are mapped by ``xml_schema`` from the ASN.1
modules of schemas/csta/, so a document decodes to exactly the value its BER counterpart
decodes to. Events that the BER codec keeps raw stay raw here too: an event ctilink does
not decode (``OfferedEvent``) is ``(event, [component, ...])`` with each component's XML
as bytes, and an event of a class ctilink does not decode (``CallInformationEvent``, any
unknown ``...Event``) is ``(class, document bytes)``.

Namespaces: input accepts the ECMA-323 namespaces of every edition
(``http://www.ecma-international.org/standards/ecma-323/csta/ed3``, ``.../ed4``, ...,
and the older ``www.ecma.ch`` ones) and documents without a namespace; output uses the
one given (``ED4`` by default: OpenScape Voice and the public clients of ed4 switches use
it; Avaya AES uses ``ED3``).

Safety: no DTD is ever processed. A document with ``<!DOCTYPE`` or ``<!ENTITY`` is refused
before parsing (``RemoteProtocolError``), which rules out entity expansion and external
entities; to make that byte scan sound, only ASCII-compatible encodings are accepted
(UTF-8, US-ASCII, ISO-8859-1, windows-1252; no NUL byte, which is how UTF-16 without a
byte order mark shows). The standard library's expat does the rest (defusedxml, not a
dependency, adds nothing for documents without a DTD). Nesting is bounded (``MAX_DEPTH``)
because ElementTree copies and writes recursively.

Errors: ``decode`` raises ``XmlProblem`` (a ``RemoteProtocolError``) for a document that is
not well formed or does not carry a CSTA message it knows, naming the invoke id, what the
document was (``kind``) and the universalFailure to answer a request with; the link goes
on. A refused DTD or encoding is a plain ``RemoteProtocolError``: the link is not safe to
keep.
"""

from __future__ import annotations

import copy
import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final

from ctilink.csta import CstaMessage, operations
from ctilink.csta.xml_schema import fill, read_sequence, read_type
from ctilink.csta.xml_types import (
    Mistyped,
    Resolved,
    children,
    local,
    resolve,
    set_text,
    text,
    type_spec,
)
from ctilink.errors import LocalProtocolError, RemoteProtocolError

ED3: Final = "http://www.ecma-international.org/standards/ecma-323/csta/ed3"
ED4: Final = "http://www.ecma-international.org/standards/ecma-323/csta/ed4"
_CSTA_NAMESPACE: Final = re.compile(
    r"http://www\.ecma(?:-international\.org|\.ch)/standards/ecma-323/csta(?:/(ed[0-9]+))?"
)
_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>'
_ENCODING: Final = re.compile(rb"\A\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_ASCII_COMPATIBLE: Final = frozenset(
    {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin-1", "latin1",
     "windows-1252", "cp1252"}
)  # fmt: skip
_FORBIDDEN: Final = (b"<!DOCTYPE", b"<!ENTITY")
MAX_DEPTH: Final = 64  # CSTA documents nest about ten deep

_REQUESTS: Final = {
    "alternateCall": "AlternateCall", "answerCall": "AnswerCall", "clearCall": "ClearCall",
    "clearConnection": "ClearConnection", "conferenceCall": "ConferenceCall",
    "consultationCall": "ConsultationCall", "holdCall": "HoldCall", "makeCall": "MakeCall",
    "reconnectCall": "ReconnectCall", "retrieveCall": "RetrieveCall",
    "transferCall": "TransferCall", "routeRequest": "RouteRequest",
    "reRouteRequest": "ReRoute", "routeSelectRequest": "RouteSelect",
    "routeEndRequest": "RouteEnd", "singleStepTrans": "SingleStepTransferCall",
    "monitorStart": "MonitorStart", "monitorStop": "MonitorStop",
    "snapshotDevice": "SnapshotDevice", "systemStatus": "SystemStatus",
    "deflectCall": "DeflectCall", "routeRegister": "RouteRegister",
    "getAgentState": "GetAgentState", "setAgentState": "SetAgentState",
}  # fmt: skip
_OPERATIONS: Final = {element.lower(): name for name, element in _REQUESTS.items()}
_ERROR: Final = "CSTAErrorCode"
_PRIVATE_ERROR: Final = "privateErrorCode"
_EVENTS_MODULE: Final = "CSTA-event-report-definitions"
_EVENT_ELEMENTS: Final = {"transferred": "TransferedEvent"}  # ECMA-323's spelling
_EVENT_ALIASES: Final = {"transferredevent": "transferred"}
# The standard events of the classes ctilink keeps raw (ECMA-269 clauses 18, 19, 21, 26).
_RAW_CLASS_EVENTS: Final = {
    "callAssociatedEvents": ("CallInformationEvent", "ChargingEvent", "DigitsGeneratedEvent",
                             "TelephonyTonesGeneratedEvent", "ServiceCompletionFailureEvent"),
    "mediaAttachmentEvents": ("MediaAttachedEvent", "MediaDetachedEvent"),
    "physicalDeviceFeatureEvents": (
        "ButtonInformationEvent", "ButtonPressEvent", "DisplayUpdatedEvent", "HookswitchEvent",
        "LampModeEvent", "MessageWaitingEvent", "MicrophoneGainEvent", "MicrophoneMuteEvent",
        "RingerStatusEvent", "SpeakerMuteEvent", "SpeakerVolumeEvent"),
    "voiceUnitEvents": ("PlayEvent", "RecordEvent", "ReviewEvent", "StopEvent",
                        "SuspendPlayEvent", "SuspendRecordEvent", "VoiceAttributesChangeEvent"),
    "vendorSpecEvents": ("PrivateEvent",),
}  # fmt: skip
_UNKNOWN_EVENT_CLASS: Final = "vendorSpecEvents"


class XmlProblem(RemoteProtocolError):
    """A well-framed document that carries no CSTA message ctilink can use.

    ``kind`` is what the document is (``invoke``, ``event``, ``result``, ``error``, or
    ``unknown`` when it could not be read); ``failure`` the universalFailure to answer an
    invoke with (events are never answered).
    """

    def __init__(
        self,
        message: str,
        invoke_id: int,
        kind: str,
        operation: str | None = None,
        failure: tuple[str, str] = ("operation", "generic"),
    ) -> None:
        super().__init__(message)
        self.invoke_id = invoke_id
        self.kind = kind
        self.operation = operation
        self.failure = failure


def edition(namespace: str) -> str | None:
    """``"ed4"`` for ECMA-323's ed4 namespace; ``None`` for one that is not ECMA-323's."""
    match = _CSTA_NAMESPACE.fullmatch(namespace)
    return (match.group(1) or "ed1") if match else None


def namespace_of(element: ET.Element) -> str:
    tag = element.tag if isinstance(element.tag, str) else ""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


# -- parsing -------------------------------------------------------------------------------
def parse(document: bytes, invoke_id: int = 0) -> ET.Element:
    """The root element of ``document``, parsed without ever processing a DTD."""
    # UTF-16/32 (with or without a byte order mark: expat detects them from the NUL bytes
    # of "<?") and EBCDIC would hide "<!DOCTYPE" from the scan below; no XML 1.0 document
    # in an accepted encoding contains a NUL byte.
    if b"\x00" in document or document.startswith((b"\xfe\xff", b"\xff\xfe", b"\x4c\x6f")):
        raise RemoteProtocolError("CSTA XML document in an encoding that is not ASCII-compatible")
    declared = _ENCODING.match(document)
    if declared and declared.group(1).decode("ascii").lower() not in _ASCII_COMPATIBLE:
        raise RemoteProtocolError(f"CSTA XML encoding {declared.group(1)!r} is not accepted")
    for forbidden in _FORBIDDEN:
        if forbidden in document:
            raise RemoteProtocolError(f"CSTA XML document with {forbidden.decode()} refused")
    try:
        root = ET.fromstring(document)
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise XmlProblem(f"CSTA XML not well formed: {exc}", invoke_id, "unknown") from exc
    stack = [(root, 1)]  # ElementTree copies and writes recursively: bound the nesting
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise XmlProblem(f"CSTA XML nested deeper than {MAX_DEPTH}", invoke_id, "unknown")
        stack.extend((child, depth + 1) for child in element)
    return root


def _strip_namespaces(element: ET.Element) -> ET.Element:
    clone = copy.deepcopy(element)
    for node in clone.iter():
        if isinstance(node.tag, str):
            node.tag = local(node.tag)
    return clone


def serialize(element: ET.Element) -> bytes:
    """``element`` as UTF-8, empty elements written ``<x/>`` (ElementTree writes ``<x />``;
    ``" />"`` cannot occur elsewhere, ``>`` being escaped in text and attributes)."""
    return ET.tostring(element, encoding="unicode").replace(" />", "/>").encode("utf-8")


def _raw(element: ET.Element) -> bytes:
    return serialize(_strip_namespaces(element))


def _from_raw(data: Any) -> ET.Element:
    if not isinstance(data, bytes):
        raise LocalProtocolError(f"raw CSTA XML must be bytes, not {data!r}")
    try:
        return parse(data)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"raw CSTA XML is not a document: {exc}") from None


# -- events --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _EventType:
    event_class: str
    event: str | None  # None: a whole event class kept raw
    element: str
    spec: Resolved | None  # None: the event's components kept raw


@functools.cache
def _event_types() -> tuple[dict[str, _EventType], dict[tuple[str, str | None], _EventType]]:
    by_element: dict[str, _EventType] = {}
    info = type_spec(_EVENTS_MODULE, "EventSpecificInfo")
    for event_class in info.spec["members"]:
        resolved = resolve(info.module, event_class)
        if resolved.kind != "CHOICE":
            for element in _RAW_CLASS_EVENTS.get(event_class["name"], ()):
                by_element[element.lower()] = _EventType(event_class["name"], None, element, None)
            continue
        for event in resolved.spec["members"]:
            name = event["name"]
            element = _EVENT_ELEMENTS.get(name, name[0].upper() + name[1:] + "Event")
            spec = resolve(resolved.module, event)
            raw = "UnsupportedEvent" in spec.names
            by_element[element.lower()] = _EventType(
                event_class["name"], name, element, None if raw else spec
            )
    for alias, event in _EVENT_ALIASES.items():
        by_element[alias] = next(t for t in by_element.values() if t.event == event)
    by_name: dict[tuple[str, str | None], _EventType] = {
        (t.event_class, t.event): t for t in by_element.values() if t.event is not None
    }
    return by_element, by_name


def _decode_event(root: ET.Element, event_type: _EventType | None) -> dict[str, Any]:
    cross = children(root).get("monitorcrossrefid")
    cross_ref = text(cross).encode("utf-8") if cross is not None else None
    if event_type is None or event_type.event is None:
        event_class = event_type.event_class if event_type else _UNKNOWN_EVENT_CLASS
        return {
            "crossRefIdentifier": cross_ref or b"",
            "eventSpecificInfo": (event_class, _raw(root)),
        }
    if event_type.spec is None:
        parts = [_raw(child) for child in root if local(child.tag) not in ("", "monitorCrossRefID")]
        info: tuple[str, Any] = (event_type.event, parts)
    else:
        if cross_ref is None:
            raise Mistyped(f"{event_type.element} without its monitorCrossRefID")
        info = (event_type.event, read_sequence(event_type.spec, root))
    return {
        "crossRefIdentifier": cross_ref or b"",
        "eventSpecificInfo": (event_type.event_class, info),
    }


def _encode_event(argument: Any) -> ET.Element:
    try:
        cross_ref = argument["crossRefIdentifier"]
        event_class, content = argument["eventSpecificInfo"]
    except (TypeError, KeyError, ValueError):
        raise LocalProtocolError(f"bad CSTAEventReportArgument {argument!r}") from None
    if isinstance(content, bytes):  # a whole event class kept raw: its document as it was
        return _from_raw(content)
    try:
        event, value = content
    except (TypeError, ValueError):
        raise LocalProtocolError(f"bad {event_class} event {content!r}") from None
    event_type = _event_types()[1].get((event_class, event))
    if event_type is None:
        raise LocalProtocolError(f"no CSTA XML event for {event_class} {event!r}")
    root = ET.Element(event_type.element)
    fill(type_spec("CSTA-status-reporting", "MonitorCrossRefID"), cross_ref,
         ET.SubElement(root, "monitorCrossRefID"))  # fmt: skip
    if event_type.spec is None:
        if not isinstance(value, list):
            raise LocalProtocolError(f"raw {event} components must be a list of bytes")
        root.extend([_from_raw(part) for part in value])
    else:
        fill(event_type.spec, value, root)
    return root


# -- messages ------------------------------------------------------------------------------
def _no_data(resolved: Resolved) -> bool:
    """Whether a result type is ``CHOICE { extensions, noData }`` (an empty response)."""
    return resolved.kind == "CHOICE" and any(
        m["name"] == "noData" for m in resolved.spec["members"]
    )


def encode(message: CstaMessage, namespace: str = ED4) -> bytes:
    """The XML document of ``message`` (``LocalProtocolError`` if XML cannot carry it)."""
    root = _encode_root(message)
    root.set("xmlns", namespace)
    return _DECLARATION + serialize(root)


def _encode_root(message: CstaMessage) -> ET.Element:
    if message.kind == "error":
        root = ET.Element(_ERROR)
        failure = message.argument
        if isinstance(failure, tuple) and len(failure) == 2 and failure[0] == _PRIVATE_ERROR:
            set_text(ET.SubElement(root, _PRIVATE_ERROR), str(failure[1]))
        else:
            fill(type_spec("CSTA-error-definition", "UniversalFailure"), failure, root)
        return root
    if message.kind not in ("invoke", "result"):
        raise LocalProtocolError(f"CSTA XML has no {message.kind} message")
    op = operations.BY_NAME.get(message.operation or "")
    if op is None:
        raise LocalProtocolError(f"CSTA XML {message.kind} needs a known operation")
    if message.kind == "invoke":
        if op.name == "cSTAEventReport":
            return _encode_event(message.argument)
        root = ET.Element(_REQUESTS[op.name])
        fill(type_spec(op.module, op.argument), message.argument, root)
        return root
    if op.result is None:
        raise LocalProtocolError(f"{op.name} has no result")
    root = ET.Element(_REQUESTS[op.name] + "Response")
    resolved = type_spec(op.module, op.result)
    if _no_data(resolved):
        if message.argument != ("noData", None):
            raise LocalProtocolError(f"CSTA XML sends {op.name}'s result as noData only")
    else:
        fill(resolved, message.argument, root)
    return root


def decode(document: bytes, invoke_id: int) -> CstaMessage:
    """The message that ``document`` (framed with ``invoke_id``) carries."""
    return decode_element(parse(document, invoke_id), invoke_id)


def decode_element(root: ET.Element, invoke_id: int) -> CstaMessage:
    name = local(root.tag)
    key = name.lower()
    kind, operation = _classify(key)
    namespace = namespace_of(root)
    foreign = bool(namespace) and edition(namespace) is None
    try:
        if kind == "event":  # any event, a vendor's too: never answered, raw if unknown
            event_type = None if foreign else _event_types()[0].get(key)
            argument = _decode_event(root, event_type)
            return CstaMessage("invoke", invoke_id, "cSTAEventReport", argument)
        if foreign or (operation is None and kind != "error"):
            where = f" in namespace {namespace}" if foreign else ""
            raise XmlProblem(
                f"unknown CSTA XML message <{name}>{where}", invoke_id, kind, operation,
                ("operation", "serviceNotSupported"),
            )  # fmt: skip
        if kind == "error":
            return CstaMessage(
                "error", invoke_id, argument=_failure(root), error="universalFailure"
            )
        assert operation is not None
        op = operations.BY_NAME[operation]
        if kind == "invoke":
            argument = read_type(type_spec(op.module, op.argument), root)
            return CstaMessage("invoke", invoke_id, operation, argument)
        if op.result is None:
            raise XmlProblem(f"{operation} has no response", invoke_id, kind, operation)
        resolved = type_spec(op.module, op.result)
        value = ("noData", None) if _no_data(resolved) else read_type(resolved, root)
        return CstaMessage("result", invoke_id, operation, value)
    except Mistyped as exc:
        raise XmlProblem(
            f"<{name}>: {exc}", invoke_id, kind, operation, ("operation", "invalidParameterValue")
        ) from exc


def _classify(key: str) -> tuple[str, str | None]:
    """What a root element named ``key`` (lower case) is, and its operation."""
    if key == _ERROR.lower():
        return "error", None
    if key in _OPERATIONS:
        return "invoke", _OPERATIONS[key]
    if key.endswith("response"):
        return "result", _OPERATIONS.get(key[: -len("response")])
    if key.endswith("event"):
        return "event", "cSTAEventReport"
    return "invoke", None


def _failure(root: ET.Element) -> tuple[str, Any]:
    private = children(root).get(_PRIVATE_ERROR.lower())
    if private is not None:
        return _PRIVATE_ERROR, text(private)
    value: tuple[str, Any] = read_type(type_spec("CSTA-error-definition", "UniversalFailure"), root)
    return value
