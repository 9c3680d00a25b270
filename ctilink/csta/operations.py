"""The one table of CSTA operation and error codes ctilink speaks, and what errors mean.

Theory of operation
-------------------
ECMA-285 gives every service an OPERATION information object (``makeCall OPERATION ::=
{ ARGUMENT MakeCallArgument RESULT MakeCallResult ERRORS {universalFailure} CODE local:10 }``).
asn1tools cannot compile information objects, so their facts live here: the operation's
name (the object's name in the standard), its local code, and the module and type names
of its argument and result in ``schemas/csta/``. ``result`` is ``None`` for the operations
the standard marks ``ALWAYS RESPONDS FALSE`` (event reports, routeing requests): the peer
answers those only with an error.

The single ERROR is ``universalFailure`` (local code 1). ``command_error`` turns its
parameter, or a ROSE reject, into a ``CstaError`` (a ``CommandError`` with one of
ctilink's stable codes), so callers above the codec never see CSTA error enumerations
unless they ask for them (``CstaError.failure``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ctilink.errors import CommandError


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    code: int
    module: str
    argument: str
    result: str | None


OPERATIONS: Final = (
    Operation("alternateCall", 1, "CSTA-alternate-call", "AlternateCallArgument",
              "AlternateCallResult"),
    Operation("answerCall", 2, "CSTA-answer-call", "AnswerCallArgument", "AnswerCallResult"),
    Operation("clearCall", 4, "CSTA-clear-call", "ClearCallArgument", "ClearCallResult"),
    Operation("clearConnection", 5, "CSTA-clear-connection", "ClearConnectionArgument",
              "ClearConnectionResult"),
    Operation("conferenceCall", 6, "CSTA-conference-call", "ConferenceCallArgument",
              "ConferenceCallResult"),
    Operation("consultationCall", 7, "CSTA-consultation-call", "ConsultationCallArgument",
              "ConsultationCallResult"),
    Operation("holdCall", 9, "CSTA-hold-call", "HoldCallArgument", "HoldCallResult"),
    Operation("makeCall", 10, "CSTA-make-call", "MakeCallArgument", "MakeCallResult"),
    Operation("reconnectCall", 13, "CSTA-reconnect-call", "ReconnectCallArgument",
              "ReconnectCallResult"),
    Operation("retrieveCall", 14, "CSTA-retrieve-call", "RetrieveCallArgument",
              "RetrieveCallResult"),
    Operation("transferCall", 16, "CSTA-transfer-call", "TransferCallArgument",
              "TransferCallResult"),
    Operation("cSTAEventReport", 21, "CSTA-event-report-definitions",
              "CSTAEventReportArgument", None),
    Operation("routeRequest", 31, "CSTA-route-request", "RouteRequestArgument", None),
    Operation("reRouteRequest", 32, "CSTA-re-route-request", "ReRouteRequestArgument", None),
    Operation("routeSelectRequest", 33, "CSTA-route-select-request",
              "RouteSelectRequestArgument", None),
    Operation("routeEndRequest", 35, "CSTA-route-end-request", "RouteEndRequestArgument",
              None),
    Operation("singleStepTrans", 50, "CSTA-single-step-transfer", "SingleStepTransArgument",
              "SingleStepTransResult"),
    Operation("monitorStart", 71, "CSTA-monitor-start", "MonitorStartArgument",
              "MonitorStartResult"),
    Operation("monitorStop", 73, "CSTA-monitor-stop", "MonitorStopArgument",
              "MonitorStopResult"),
    Operation("snapshotDevice", 74, "CSTA-snapshot-device", "SnapshotDeviceArgument",
              "SnapshotDeviceResult"),
    Operation("systemStatus", 211, "CSTA-system-status", "SystemStatusArg", "SystemStatusRes"),
    Operation("deflectCall", 218, "CSTA-deflect-call", "DeflectCallArgument",
              "DeflectCallResult"),
    Operation("routeRegister", 248, "CSTA-route-register", "RouteRegisterArgument",
              "RouteRegisterResult"),
    Operation("getAgentState", 304, "CSTA-get-agent-state", "GetAgentStateArgument",
              "GetAgentStateResult"),
    Operation("setAgentState", 312, "CSTA-set-agent-state", "SetAgentStateArgument",
              "SetAgentStateResult"),
)  # fmt: skip

BY_NAME: Final = {op.name: op for op in OPERATIONS}
BY_CODE: Final = {op.code: op for op in OPERATIONS}


@dataclass(frozen=True, slots=True)
class ErrorType:
    name: str
    code: int
    module: str
    parameter: str


UNIVERSAL_FAILURE: Final = ErrorType(
    "universalFailure", 1, "CSTA-error-definition", "UniversalFailure"
)
ERRORS_BY_NAME: Final = {UNIVERSAL_FAILURE.name: UNIVERSAL_FAILURE}
ERRORS_BY_CODE: Final = {UNIVERSAL_FAILURE.code: UNIVERSAL_FAILURE}


class CstaError(CommandError):
    """A CSTA request failed. ``code`` is ctilink's stable reason; ``failure`` the switch's.

    ``failure`` is the universalFailure value (``("operation", "invalidDeviceID")``), a
    ROSE problem (``("reject", ("invoke", "mistypedArgument"))``), or ``None`` when the
    failure is ours (``timeout``, ``link_down``).
    """

    def __init__(self, code: str, operation: str | None, message: str, failure: Any = None) -> None:
        super().__init__(code, f"{operation or 'CSTA request'}: {message}")
        self.operation = operation
        self.failure = failure


# universalFailure's categories (ECMA-285 clause 9) that map to one code whatever the value.
_CATEGORY_CODES: Final = {
    "security": "not_allowed",
    "stateIncompatibility": "not_allowed",
    "systemResourceAvailability": "error",
    "subscribedResourceAvailability": "error",
    "performanceManagement": "error",
    "privateData": "error",
    "unspecified": "error",
}
_CATEGORY_TEXT: Final = {
    "operation": "refused",
    "security": "security check failed",
    "stateIncompatibility": "not possible in the current state",
    "systemResourceAvailability": "switch resource unavailable",
    "subscribedResourceAvailability": "subscribed resource limit",
    "performanceManagement": "switch overloaded",
    "privateData": "private data error",
    "unspecified": "unspecified failure",
}
_NOT_FOUND: Final = frozenset({"objectNotKnown", "invalidCallID", "invalidConnectionID",
                               "invalidDeviceID", "invalidActiveCallID", "invalidHeldCallID",
                               "invalidActiveConnectionID", "invalidHeldConnectionID",
                               "invalidMonitorCrossRefID", "invalidRouteingCrossRefID",
                               "invalidCrossRefID"})  # fmt: skip


def _operation_error_code(value: str) -> str:
    """ctilink's code for an OperationErrors value (ECMA-285 clause 9.1)."""
    if value in _NOT_FOUND:
        return "not_found"
    if value.endswith("NotSupported"):
        return "unsupported"
    if value.startswith("privilegeViolation") or value == "securityViolation":
        return "not_allowed"
    if value == "routeingTimerExpired":
        return "timeout"
    if value == "generic":
        return "error"
    return "invalid"  # invalid..., ...OutOfRange, requestIncompatibleWith..., notSameDevice


_REJECT_CODES: Final = {
    "unrecognizedOperation": "unsupported",
    "mistypedArgument": "invalid",
    "duplicateInvocation": "invalid",
}


def command_error(operation: str | None, failure: Any) -> CstaError:
    """The ``CstaError`` for a universalFailure value or a reject's problem.

    ``failure`` is the error message's argument (``(category, value)``), or for a reject
    ``("reject", (problem_kind, problem_name))``.
    """
    if isinstance(failure, tuple) and len(failure) == 2 and failure[0] == "reject":
        problem = failure[1]
        name = problem[1] if isinstance(problem, tuple) else problem
        code = _REJECT_CODES.get(str(name), "error")
        return CstaError(code, operation, f"rejected by the switch ({name})", failure)
    if not (isinstance(failure, tuple) and len(failure) == 2):
        return CstaError("error", operation, f"failed: {failure!r}", failure)
    category, value = failure
    if category == "operation":
        code = _operation_error_code(str(value))
    else:
        code = _CATEGORY_CODES.get(category, "error")
    text = _CATEGORY_TEXT.get(category, category)
    detail = "" if value is None else f" ({value})"
    return CstaError(code, operation, f"{text}{detail}", failure)
