"""Sans-I/O ROSE for CSTA: ROS PDUs <-> ``CstaMessage``, decoded in two stages.

Theory of operation
-------------------
X.880's ROS PDUs (Invoke, ReturnResult, ReturnError, Reject) carry an argument, a result
or an error parameter whose type depends on the operation or error code: information
objects that asn1tools cannot compile. ``schemas/csta/rose.asn`` therefore types them as
ANY, and decoding runs in two stages: the open ROS PDU first, then its ANY by the code,
with the types of the one table in ``operations``. Encoding is the mirror image.

What a peer sends that ROSE itself tells us to reject does not end the link: ``decode``
raises ``RoseProblem`` (a ``RemoteProtocolError``) naming the invokeID and the ROSE
problem to reject it with, for example ``("invoke", "unrecognizedOperation")`` for an
unknown operation code or ``("invoke", "mistypedArgument")`` for an argument that does
not decode. ``RoseProblem.kind`` says what the PDU was (``"result"`` lets the association
fail the pending request instead of waiting for its timeout).
"""

from __future__ import annotations

from typing import Any, Final

from ctilink.csta import CstaMessage, asn1, operations
from ctilink.errors import LocalProtocolError, RemoteProtocolError

_ROSE: Final = "Remote-Operations-Generic-ROS-PDUs"
_KINDS: Final = {"invoke": "invoke", "returnResult": "result", "returnError": "error",
                 "reject": "reject"}  # fmt: skip
_PROBLEMS: Final = {
    "general": ("unrecognizedPDU", "mistypedPDU", "badlyStructuredPDU"),
    "invoke": (
        "duplicateInvocation", "unrecognizedOperation", "mistypedArgument",
        "resourceLimitation", "releaseInProgress", "unrecognizedLinkedId",
        "linkedResponseUnexpected", "unexpectedLinkedOperation",
    ),
    "returnResult": ("unrecognizedInvocation", "resultResponseUnexpected", "mistypedResult"),
    "returnError": (
        "unrecognizedInvocation", "errorResponseUnexpected", "unrecognizedError",
        "unexpectedError", "mistypedParameter",
    ),
}  # fmt: skip


class RoseProblem(RemoteProtocolError):
    """A PDU that ROSE rejects: reply with ``reject(invoke_id, problem)``."""

    def __init__(
        self, message: str, invoke_id: int | None, problem: tuple[str, str], kind: str
    ) -> None:
        super().__init__(message)
        self.invoke_id = invoke_id
        self.problem = problem
        self.kind = kind


def is_rose(pdu: bytes) -> bool:
    """Whether ``pdu`` is a ROS PDU ([1]..[4] constructed: 0xA1..0xA4)."""
    return bool(pdu) and 0xA1 <= pdu[0] <= 0xA4


def reject(invoke_id: int | None, problem: tuple[str, str]) -> CstaMessage:
    return CstaMessage("reject", invoke_id, argument=problem)


# -- encoding ------------------------------------------------------------------------------
def encode(message: CstaMessage) -> bytes:
    """The ROS PDU for ``message`` (``LocalProtocolError`` if it cannot be one)."""
    if message.kind == "reject":
        return asn1.encode(_ROSE, "ROS", ("reject", _reject_to_asn1(message)))
    if message.invoke_id is None:
        raise LocalProtocolError(f"a {message.kind} needs an invokeID")
    invoke_id = ("present", message.invoke_id)
    if message.kind == "invoke":
        op = _operation(message.operation)
        invoke: dict[str, Any] = {"invokeId": invoke_id, "opcode": ("local", op.code)}
        if message.argument is not None:
            invoke["argument"] = asn1.encode(op.module, op.argument, message.argument)
        return asn1.encode(_ROSE, "ROS", ("invoke", invoke))
    if message.kind == "result":
        result: dict[str, Any] = {"invokeId": invoke_id}
        if message.operation is not None:
            op = _operation(message.operation)
            if op.result is None:
                raise LocalProtocolError(f"{op.name} has no result")
            value = asn1.encode(op.module, op.result, message.argument)
            result["result"] = {"opcode": ("local", op.code), "result": value}
        return asn1.encode(_ROSE, "ROS", ("returnResult", result))
    if message.kind == "error":
        error = operations.ERRORS_BY_NAME.get(message.error or "")
        if error is None:
            raise LocalProtocolError(f"unknown CSTA error {message.error!r}")
        parameter = asn1.encode(error.module, error.parameter, message.argument)
        return asn1.encode(
            _ROSE,
            "ROS",
            (
                "returnError",
                {"invokeId": invoke_id, "errcode": ("local", error.code), "parameter": parameter},
            ),
        )
    raise LocalProtocolError(f"unknown message kind {message.kind!r}")


def _operation(name: str | None) -> operations.Operation:
    op = operations.BY_NAME.get(name or "")
    if op is None:
        raise LocalProtocolError(f"unknown CSTA operation {name!r}")
    return op


def _reject_to_asn1(message: CstaMessage) -> dict[str, Any]:
    try:
        kind, name = message.argument
        number = name if isinstance(name, int) else _PROBLEMS[kind].index(name)
    except (TypeError, ValueError, KeyError):
        raise LocalProtocolError(f"bad reject problem {message.argument!r}") from None
    invoke_id = ("absent", None) if message.invoke_id is None else ("present", message.invoke_id)
    return {"invokeId": invoke_id, "problem": (kind, number)}


# -- decoding ------------------------------------------------------------------------------
def decode(data: bytes) -> CstaMessage:
    """The message ``data`` encodes; ``RoseProblem`` for what ROSE says to reject."""
    try:
        alternative, pdu = asn1.decode(_ROSE, "ROS", data)
    except RemoteProtocolError as exc:
        problem = "unrecognizedPDU" if not is_rose(data) else "mistypedPDU"
        raise RoseProblem(str(exc), None, ("general", problem), "unknown") from exc
    kind = _KINDS[alternative]
    form, invoke_id = pdu["invokeId"]
    if form == "absent" and kind != "reject":
        raise RoseProblem(f"{kind} without an invokeID", None, ("general", "mistypedPDU"), kind)
    if kind == "invoke":
        return _decode_invoke(invoke_id, pdu)
    if kind == "result":
        return _decode_result(invoke_id, pdu)
    if kind == "error":
        return _decode_error(invoke_id, pdu)
    problem_kind, number = pdu["problem"]
    names = _PROBLEMS[problem_kind]
    name: str | int = names[number] if 0 <= number < len(names) else number
    return CstaMessage("reject", invoke_id, argument=(problem_kind, name))


def _local_code(code: tuple[str, Any]) -> int | None:
    return code[1] if code[0] == "local" else None


def _decode_invoke(invoke_id: int, pdu: dict[str, Any]) -> CstaMessage:
    code = _local_code(pdu["opcode"])
    op = operations.BY_CODE.get(code) if code is not None else None
    if op is None:
        raise RoseProblem(
            f"invoke of unknown operation {pdu['opcode'][1]}",
            invoke_id,
            ("invoke", "unrecognizedOperation"),
            "invoke",
        )
    if "argument" not in pdu:
        raise RoseProblem(
            f"{op.name} invoke without its argument",
            invoke_id,
            ("invoke", "mistypedArgument"),
            "invoke",
        )
    try:
        argument = asn1.decode(op.module, op.argument, pdu["argument"])
    except RemoteProtocolError as exc:
        raise RoseProblem(str(exc), invoke_id, ("invoke", "mistypedArgument"), "invoke") from exc
    return CstaMessage("invoke", invoke_id, op.name, argument)


def _decode_result(invoke_id: int, pdu: dict[str, Any]) -> CstaMessage:
    if "result" not in pdu:
        return CstaMessage("result", invoke_id)
    code = _local_code(pdu["result"]["opcode"])
    op = operations.BY_CODE.get(code) if code is not None else None
    if op is None or op.result is None:
        raise RoseProblem(
            f"result of unknown operation {pdu['result']['opcode'][1]}",
            invoke_id,
            ("returnResult", "mistypedResult"),
            "result",
        )
    try:
        result = asn1.decode(op.module, op.result, pdu["result"]["result"])
    except RemoteProtocolError as exc:
        raise RoseProblem(
            str(exc), invoke_id, ("returnResult", "mistypedResult"), "result"
        ) from exc
    return CstaMessage("result", invoke_id, op.name, result)


def _decode_error(invoke_id: int, pdu: dict[str, Any]) -> CstaMessage:
    code = _local_code(pdu["errcode"])
    error = operations.ERRORS_BY_CODE.get(code) if code is not None else None
    if error is None:
        raise RoseProblem(
            f"unknown error code {pdu['errcode'][1]}",
            invoke_id,
            ("returnError", "unrecognizedError"),
            "error",
        )
    if "parameter" not in pdu:
        raise RoseProblem(
            f"{error.name} without its parameter",
            invoke_id,
            ("returnError", "mistypedParameter"),
            "error",
        )
    try:
        parameter = asn1.decode(error.module, error.parameter, pdu["parameter"])
    except RemoteProtocolError as exc:
        raise RoseProblem(
            str(exc), invoke_id, ("returnError", "mistypedParameter"), "error"
        ) from exc
    return CstaMessage("error", invoke_id, argument=parameter, error=error.name)
