"""The operation table, the two-stage ROSE decoding's rejections, ACSE details, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ctilink.csta import CstaMessage, acse, asn1, operations, rose
from ctilink.errors import LocalProtocolError, RemoteProtocolError


def test_every_operation_names_types_that_exist() -> None:
    names = [op.name for op in operations.OPERATIONS]
    codes = [op.code for op in operations.OPERATIONS]
    assert len(set(names)) == len(names) and len(set(codes)) == len(codes)
    for op in operations.OPERATIONS:
        asn1.type_(op.module, op.argument)
        if op.result is not None:
            asn1.type_(op.module, op.result)
    error = operations.UNIVERSAL_FAILURE
    asn1.type_(error.module, error.parameter)


def test_the_operation_codes_of_ecma_285() -> None:
    assert {op.name: op.code for op in operations.OPERATIONS} == {
        "alternateCall": 1, "answerCall": 2, "clearCall": 4, "clearConnection": 5,
        "conferenceCall": 6, "consultationCall": 7, "holdCall": 9, "makeCall": 10,
        "reconnectCall": 13, "retrieveCall": 14, "transferCall": 16, "cSTAEventReport": 21,
        "routeRequest": 31, "reRouteRequest": 32, "routeSelectRequest": 33,
        "routeEndRequest": 35, "singleStepTrans": 50, "monitorStart": 71, "monitorStop": 73,
        "snapshotDevice": 74, "systemStatus": 211, "deflectCall": 218, "routeRegister": 248,
        "getAgentState": 304, "setAgentState": 312,
    }  # fmt: skip


def test_encode_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError, match="unknown CSTA operation"):
        rose.encode(CstaMessage("invoke", 1, "teleport", {}))
    with pytest.raises(LocalProtocolError, match="has no result"):
        rose.encode(CstaMessage("result", 1, "routeRequest", {}))
    with pytest.raises(LocalProtocolError, match="cannot encode MakeCallArgument"):
        rose.encode(CstaMessage("invoke", 1, "makeCall", {"callingDevice": 6001}))
    with pytest.raises(LocalProtocolError, match="needs an invokeID"):
        rose.encode(CstaMessage("invoke", None, "makeCall", {}))
    with pytest.raises(LocalProtocolError, match="unknown CSTA error"):
        rose.encode(CstaMessage("error", 1, argument=("unspecified", None), error="oops"))
    with pytest.raises(LocalProtocolError, match="bad reject problem"):
        rose.encode(rose.reject(1, ("invoke", "noSuchProblem")))


@pytest.mark.parametrize(
    ("hexdump", "invoke_id", "problem"),
    [
        ("a1080500020115", None, ("general", "mistypedPDU")),  # shorter than it says
        ("a1070500020115 3000", None, ("general", "mistypedPDU")),  # invoke with absent id
        ("a1060201010201 15", 1, ("invoke", "mistypedArgument")),  # event report, no argument
        ("a109020101 06022b0c 3000", 1, ("invoke", "unrecognizedOperation")),  # global opcode
        ("a20a020101 3005 020163 0500", 1, ("returnResult", "mistypedResult")),  # unknown opcode 99
        ("a30a020101020109a7020500", 1, ("returnError", "unrecognizedError")),  # errcode 9
        ("a306020101020101", 1, ("returnError", "mistypedParameter")),  # no parameter
        ("3003020101", None, ("general", "unrecognizedPDU")),  # not a ROS PDU at all
    ],
)
def test_rose_problems(hexdump: str, invoke_id: int | None, problem: tuple[str, str]) -> None:
    data = bytes.fromhex(hexdump.replace(" ", ""))
    with pytest.raises(rose.RoseProblem) as caught:
        rose.decode(data)
    assert (caught.value.invoke_id, caught.value.problem) == (invoke_id, problem)


def test_unknown_reject_problem_numbers_are_kept() -> None:
    message = rose.decode(bytes.fromhex("a406020101810163"))
    assert message.argument == ("invoke", 99)


def test_csta_version_bits() -> None:
    assert acse.version_bits(("versionFive",)) == (b"\x08", 5)
    assert acse.version_bits(("versionFive", "versionNineteen")) == (b"\x08\x00\x20", 19)
    with pytest.raises(LocalProtocolError):
        acse.version_bits(())
    with pytest.raises(LocalProtocolError):
        acse.version_bits(("versionNinetyNine",))
    request = acse.AssociateRequest(csta_versions=("versionFive", "versionNineteen"))
    assert acse.decode(acse.encode(request)) == request


def test_acse_decode_refuses_other_pdus() -> None:
    with pytest.raises(RemoteProtocolError):
        acse.decode(bytes.fromhex("a4050500800101"))


def test_schema_directory_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CTILINK_CSTA_SCHEMAS", str(tmp_path))
    assert asn1.schema_dir() == tmp_path
    monkeypatch.delenv("CTILINK_CSTA_SCHEMAS")
    assert (asn1.schema_dir() / "events.asn").is_file()
    # Outside a checkout (an installed wheel), where the wheel's data files go.
    monkeypatch.setattr(asn1, "SCHEMA_DIR", tmp_path / "not-a-checkout")
    assert asn1.schema_dir() == Path(sys.prefix) / "share" / "ctilink" / "schemas" / "csta"


@pytest.mark.parametrize(
    ("failure", "code", "text"),
    [
        (("operation", "invalidCallID"), "not_found", "makeCall: refused (invalidCallID)"),
        (("operation", "generic"), "error", "makeCall: refused (generic)"),
        (("operation", "routeingTimerExpired"), "timeout",
         "makeCall: refused (routeingTimerExpired)"),
        (("security", "generic"), "not_allowed", "makeCall: security check failed (generic)"),
        (("performanceManagement", "performanceLimitExceeded"), "error",
         "makeCall: switch overloaded (performanceLimitExceeded)"),
        (("reject", ("invoke", "mistypedArgument")), "invalid",
         "makeCall: rejected by the switch (mistypedArgument)"),
    ],
)  # fmt: skip
def test_command_error_codes_and_messages(failure: object, code: str, text: str) -> None:
    error = operations.command_error("makeCall", failure)
    assert (error.code, str(error)) == (code, text)
