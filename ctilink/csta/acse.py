"""Sans-I/O ACSE for a CSTA link: association and release PDUs as frozen dataclasses.

Theory of operation
-------------------
A CSTA link over BER is an ACSE association (X.227): the CTI application sends an AARQ
naming the CSTA application context and carrying, in its user information, the CSTA
versions it speaks (ECMA-285's ``ACSEUserInformationForCSTA``, ``newDefinition``); the
switch answers with an AARE that accepts (naming the one version chosen) or rejects with a
diagnostic. Either side ends it with RLRQ/RLRE; ABRT tears it down.

The user information is an EXTERNAL whose direct-reference names the abstract syntax of
ECMA-285's user information (the ``CSTA-application-context-information-csta3`` module,
``1.3.12.0.285.200``) and whose single-ASN1-type is the ``ACSEUserInformationForCSTA``.

The application context name defaults to ``1.3.12.0.218`` (``{iso(1)
identified-organization(3) icd-ecma(12) standard(0) csta(218)}``): the value that a public
CSTA client sends and a switch (Panasonic) echoes in its AARE, recorded in public code; the
ECMA-285 text that fixes it could not be consulted, so it is a parameter
(``AssociateRequest.application_context``) and any name the peer answers with is accepted.

Authentication, when configured, uses ACSE's own fields (X.227 authentication functional
unit): ``sender-acse-requirements`` with the ``authentication`` bit and the password as
``calling-authentication-value`` ``charstring``. ECMA-285's user information has no field
for it; switches that require it document this form. The password is never in ``repr``.

``encode(pdu) -> bytes`` and ``decode(bytes) -> pdu`` are the whole interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ctilink.csta import asn1
from ctilink.errors import LocalProtocolError, RemoteProtocolError

CSTA_APPLICATION_CONTEXT: Final = "1.3.12.0.218"
CSTA_USER_INFORMATION_SYNTAX: Final = "1.3.12.0.285.200"
_ACSE: Final = "ACSE-1"
_VERSION1: Final = (b"\x80", 1)  # protocol-version { version1 }

# CSTAVersion's named bits (ECMA-285 8.2.2), in bit order.
CSTA_VERSIONS: Final = (
    "versionOne", "versionTwo", "versionThree", "versionFour", "versionFive", "versionSix",
    "versionSeven", "versionEight", "versionNine", "versionTen", "versionEleven",
    "versionTwelve", "versionThirteen", "versionFourteen", "versionFifteen",
    "versionSixteen", "versionSeventeen", "versionEighteen", "versionNineteen",
    "versionTwenty", "versionTwentyone", "versionTwentytwo", "versionTwentythree",
    "versionTwentyfour",
)  # fmt: skip
# ECMA-285 2nd edition: what the switches in public traces announce.
DEFAULT_CSTA_VERSIONS: Final = ("versionFive",)

_RESULTS: Final = {0: "accepted", 1: "rejected-permanent", 2: "rejected-transient"}
_USER_DIAGNOSTICS: Final = (
    "null", "no-reason-given", "application-context-name-not-supported",
    "calling-AP-title-not-recognized", "calling-AP-invocation-identifier-not-recognized",
    "calling-AE-qualifier-not-recognized", "calling-AE-invocation-identifier-not-recognized",
    "called-AP-title-not-recognized", "called-AP-invocation-identifier-not-recognized",
    "called-AE-qualifier-not-recognized", "called-AE-invocation-identifier-not-recognized",
    "authentication-mechanism-name-not-recognized", "authentication-mechanism-name-required",
    "authentication-failure", "authentication-required",
)  # fmt: skip
_PROVIDER_DIAGNOSTICS: Final = ("null", "no-reason-given", "no-common-acse-version")
_RELEASE_REQUEST: Final = {0: "normal", 1: "urgent", 30: "user-defined"}
_RELEASE_RESPONSE: Final = {0: "normal", 1: "not-finished", 30: "user-defined"}
_ABORT_SOURCES: Final = {0: "acse-service-user", 1: "acse-service-provider"}


@dataclass(frozen=True, slots=True)
class AssociateRequest:
    """AARQ: the CTI application asks for a CSTA association."""

    csta_versions: tuple[str, ...] = DEFAULT_CSTA_VERSIONS
    application_context: str = CSTA_APPLICATION_CONTEXT
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AssociateResponse:
    """AARE: ``result`` is ``accepted``, ``rejected-permanent`` or ``rejected-transient``.

    ``diagnostic`` is ``(source, reason)``: ``("acse-service-user", "no-reason-given")``.
    """

    result: str = "accepted"
    csta_versions: tuple[str, ...] = DEFAULT_CSTA_VERSIONS
    diagnostic: tuple[str, str | int] = ("acse-service-user", "null")
    application_context: str = CSTA_APPLICATION_CONTEXT

    @property
    def accepted(self) -> bool:
        return self.result == "accepted"


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """RLRQ; ``reason`` ``normal``, ``urgent`` or ``user-defined`` (``None``: absent)."""

    reason: str | int | None = "normal"


@dataclass(frozen=True, slots=True)
class ReleaseResponse:
    """RLRE; ``reason`` ``normal``, ``not-finished`` or ``user-defined`` (``None``: absent)."""

    reason: str | int | None = "normal"


@dataclass(frozen=True, slots=True)
class Abort:
    """ABRT; ``source`` ``acse-service-user`` or ``acse-service-provider``."""

    source: str | int = "acse-service-user"


AcsePdu = AssociateRequest | AssociateResponse | ReleaseRequest | ReleaseResponse | Abort


def is_acse(pdu: bytes) -> bool:
    """Whether ``pdu`` is an ACSE APDU ([APPLICATION 0..4], constructed: 0x60..0x64)."""
    return bool(pdu) and 0x60 <= pdu[0] <= 0x64


# -- encoding ------------------------------------------------------------------------------
def encode(pdu: AcsePdu) -> bytes:
    return asn1.encode(_ACSE, "ACSE-apdu", _to_asn1(pdu))


def _to_asn1(pdu: AcsePdu) -> tuple[str, dict[str, Any]]:
    if isinstance(pdu, AssociateRequest):
        aarq: dict[str, Any] = {
            "protocol-version": _VERSION1,
            "application-context-name": pdu.application_context,
        }
        if pdu.password is not None:
            aarq["sender-acse-requirements"] = (b"\x80", 1)  # { authentication }
            aarq["calling-authentication-value"] = ("charstring", pdu.password)
        aarq["user-information"] = _user_information(pdu.csta_versions)
        return "aarq", aarq
    if isinstance(pdu, AssociateResponse):
        aare: dict[str, Any] = {
            "protocol-version": _VERSION1,
            "application-context-name": pdu.application_context,
            "result": _number(_RESULTS, pdu.result, "result"),
            "result-source-diagnostic": _diagnostic_to_asn1(pdu.diagnostic),
        }
        if pdu.accepted:
            aare["user-information"] = _user_information(pdu.csta_versions)
        return "aare", aare
    if isinstance(pdu, ReleaseRequest):
        return "rlrq", _reason(_RELEASE_REQUEST, pdu.reason)
    if isinstance(pdu, ReleaseResponse):
        return "rlre", _reason(_RELEASE_RESPONSE, pdu.reason)
    return "abrt", {"abort-source": _number(_ABORT_SOURCES, pdu.source, "abort source")}


def _user_information(versions: tuple[str, ...]) -> list[dict[str, Any]]:
    info = {"cSTAVersion": version_bits(versions)}
    return [
        {
            "direct-reference": CSTA_USER_INFORMATION_SYNTAX,
            "encoding": ("single-ASN1-type", ("newDefinition", info)),
        }
    ]


def version_bits(versions: tuple[str, ...]) -> tuple[bytes, int]:
    """The CSTAVersion BIT STRING with ``versions`` set, trailing zero bits dropped (DER)."""
    if not versions:
        raise LocalProtocolError("at least one CSTA version is needed")
    positions = []
    for name in versions:
        if name not in CSTA_VERSIONS:
            raise LocalProtocolError(f"unknown CSTA version {name!r}")
        positions.append(CSTA_VERSIONS.index(name))
    length = max(positions) + 1
    value = 0
    for position in positions:
        value |= 1 << (8 * ((length + 7) // 8) - 1 - position)
    return value.to_bytes((length + 7) // 8, "big"), length


def _number(names: dict[int, str], value: str | int, what: str) -> int:
    if isinstance(value, int):
        return value
    for number, name in names.items():
        if name == value:
            return number
    raise LocalProtocolError(f"unknown {what} {value!r}")


def _reason(names: dict[int, str], reason: str | int | None) -> dict[str, Any]:
    return {} if reason is None else {"reason": _number(names, reason, "reason")}


def _diagnostic_to_asn1(diagnostic: tuple[str, str | int]) -> tuple[str, int]:
    source, reason = diagnostic
    table = _USER_DIAGNOSTICS if source == "acse-service-user" else _PROVIDER_DIAGNOSTICS
    if source not in ("acse-service-user", "acse-service-provider"):
        raise LocalProtocolError(f"unknown diagnostic source {source!r}")
    if isinstance(reason, int):
        return source, reason
    if reason not in table:
        raise LocalProtocolError(f"unknown {source} diagnostic {reason!r}")
    return source, table.index(reason)


# -- decoding ------------------------------------------------------------------------------
def decode(data: bytes) -> AcsePdu:
    """The ACSE PDU ``data`` encodes (``RemoteProtocolError`` if it is not one)."""
    kind, value = asn1.decode(_ACSE, "ACSE-apdu", data)
    if kind == "aarq":
        password = None
        auth = value.get("calling-authentication-value")
        if auth is not None and auth[0] == "charstring":
            password = auth[1]
        return AssociateRequest(
            csta_versions=_versions(value),
            application_context=value["application-context-name"],
            password=password,
        )
    if kind == "aare":
        source, reason = value["result-source-diagnostic"]
        table = _USER_DIAGNOSTICS if source == "acse-service-user" else _PROVIDER_DIAGNOSTICS
        result = _RESULTS.get(value["result"], value["result"])
        return AssociateResponse(
            result=str(result),
            csta_versions=_versions(value) if result == "accepted" else (),
            diagnostic=(source, table[reason] if 0 <= reason < len(table) else reason),
            application_context=value["application-context-name"],
        )
    if kind == "rlrq":
        return ReleaseRequest(_named(_RELEASE_REQUEST, value.get("reason")))
    if kind == "rlre":
        return ReleaseResponse(_named(_RELEASE_RESPONSE, value.get("reason")))
    return Abort(_ABORT_SOURCES.get(value["abort-source"], value["abort-source"]))


def _named(names: dict[int, str], number: int | None) -> str | int | None:
    return None if number is None else names.get(number, number)


def _versions(apdu: dict[str, Any]) -> tuple[str, ...]:
    """The CSTA versions of the user information (``()`` when there is none)."""
    for external in apdu.get("user-information", []):
        form, info = external["encoding"]
        if form != "single-ASN1-type":
            raise RemoteProtocolError(f"CSTA user information encoded as {form}")
        data, length = info[1]["cSTAVersion"]
        return tuple(
            name
            for position, name in enumerate(CSTA_VERSIONS)
            if position < min(length, 8 * len(data))
            and data[position // 8] & (0x80 >> (position % 8))
        )
    return ()
