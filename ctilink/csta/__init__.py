"""CSTA Phase III (ECMA-285) over BER: framing, ACSE, ROSE and the association, sans-I/O.

Layers, each in its own module, bytes flowing upward:

``framing``     the 2-byte big-endian length prefix of a CSTA link over TCP (and, as an
                option, Alcatel OmniPCX's ``B``/``P`` start handshake): bytes -> PDUs.
``acse``        the association PDUs (AARQ/AARE, RLRQ/RLRE, ABRT) as frozen dataclasses.
``rose``        the remote-operation PDUs (Invoke, ReturnResult, ReturnError, Reject) as
                ``CstaMessage``; the argument is decoded in a second stage by operation
                code, from the one table in ``operations``.
``asn1``        the ASN.1 modules of ``schemas/csta/`` compiled once with asn1tools.
``connection``  ``CstaConnection``: the association state machine, invokeID correlation
                with per-request timeouts (injected clock), incoming invokes as events,
                systemStatus heartbeats.

The representation shared by every layer
----------------------------------------
A CSTA service message is a ``CstaMessage``:

``kind``       ``"invoke"``, ``"result"``, ``"error"`` or ``"reject"`` (the four ROS PDUs).
``invoke_id``  the ROSE invokeID (``None`` only for a reject of an unreadable PDU).
``operation``  the operation's name as ECMA-285's ASN.1 spells its OPERATION object:
               ``"makeCall"``, ``"cSTAEventReport"``, ``"singleStepTrans"``,
               ``"routeSelectRequest"``... (``operations.OPERATIONS`` lists them). ``None``
               for an error or a reject, whose PDUs do not carry it, and for an empty
               result.
``argument``   the asn1tools Python value of the operation's argument (invoke), result
               (result), error parameter (error) or problem (reject): SEQUENCE and SET as
               ``dict`` keyed by the ASN.1 component names (absent OPTIONAL components are
               absent keys), CHOICE as a ``(alternative, value)`` tuple, OCTET STRING as
               ``bytes``, IA5String as ``str``, ENUMERATED as the value's name (``str``),
               INTEGER as ``int``, BIT STRING as ``(bytes, number_of_bits)``, NULL as
               ``None``. Components with a DEFAULT are present, with their default, in
               decoded values, and left out on the wire when they equal it. A reject's
               argument is ``(problem_kind, problem_name)``, e.g.
               ``("invoke", "unrecognizedOperation")``.
``error``      for kind ``"error"``, the error's name (``"universalFailure"``).

For example the event report a switch sends when extension 6001 rings::

    CstaMessage(
        kind="invoke", invoke_id=7, operation="cSTAEventReport",
        argument={
            "crossRefIdentifier": b"\\x01",
            "eventSpecificInfo": ("callControlEvents", ("delivered", {
                "connection": ("both", {"callID": b"\\x00\\x2a",
                                        "deviceID": ("staticID", {"deviceIdentifier":
                                                     ("dialingNumber", "6001")})}),
                "alertingDevice": ("deviceIdentifier", {"deviceIdentifier":
                                                        ("dialingNumber", "6001")}),
                ...
                "cause": "newCall",
            })),
        },
    )

The ECMA-323 (XML) codec produces the same values for the same messages, so everything
above the codecs (the CSTA adapter) is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["invoke", "result", "error", "reject"]


@dataclass(frozen=True, slots=True)
class CstaMessage:
    """One CSTA service PDU (see the module docstring). Not hashable (values are dicts)."""

    kind: Kind
    invoke_id: int | None
    operation: str | None = None
    argument: Any = None
    error: str | None = None
