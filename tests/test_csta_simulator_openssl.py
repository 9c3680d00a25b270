"""Every PDU the CSTA adapter and the switch simulator put on the wire in a full run (every
scenario, every call-control service, refusals, heartbeats, release) is accepted whole by
an independent BER decoder: ``openssl asn1parse -inform DER``.

The run happens at collection time on a ``Clock`` (no sockets, no reactor), so each
distinct PDU is its own test case."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from ctilink.csta import acse, operations, rose
from ctilink.csta.simulator_scenarios import CALL_SCENARIOS
from ctilink.routing.static import RouteDecision, StaticRouter
from tests.cstasim import ClockRig

OPENSSL = shutil.which("openssl")
_TOP = re.compile(r"^\s*0:d=0\s+hl=(\d+)\s+l=\s*(\d+)\s+cons:", re.MULTILINE)


def _settle(rig: ClockRig, deferred: Deferred[Any]) -> None:
    rig.advance(1.5)
    deferred.addErrback(lambda _failure: None)  # refusals are part of the run


def _exercise(rig: ClockRig) -> None:
    """Every call-control service, once accepted and once refused."""
    adapter, sw = rig.adapter, rig.simulator.switch
    customer = sw.arrive("5551234567", "6001")
    rig.pump()
    first = rig.of("delivered")[-1].call_id
    for step in (
        lambda: adapter.answer_call(first, "6001"),
        lambda: adapter.hold_call(first, "6001"),
        lambda: adapter.retrieve_call(first, "6001"),
        lambda: adapter.consultation_call(first, "6001", "6002"),
    ):
        _settle(rig, step())
    second = rig.of("service_initiated")[-1].call_id
    for step in (
        lambda: adapter.alternate_call(second, first, "6001"),
        lambda: adapter.alternate_call(first, second, "6001"),
        lambda: adapter.conference_call(first, second, "6001"),
        lambda: adapter.consultation_call(first, "6002", "6003"),
    ):
        _settle(rig, step())
    third = rig.of("service_initiated")[-1].call_id
    for step in (
        lambda: adapter.transfer_call(first, third, "6002"),
        lambda: adapter.single_step_transfer(first, "6003", "6004"),
        lambda: adapter.consultation_call(first, "6001", "6002"),
    ):
        _settle(rig, step())
    fourth = rig.of("service_initiated")[-1].call_id
    last: tuple[Callable[[], Deferred[Any]], ...] = (
        lambda: adapter.reconnect_call(first, fourth, "6001"),
        lambda: adapter.deflect_call(first, "6004", "6002"),
        lambda: adapter.clear_connection(first, "6001"),
        lambda: adapter.clear_call(first),
        lambda: adapter.make_call("6001", "5550001111", {"CUSTOMER_ACCOUNT": "ACME-002"}),
        lambda: adapter.set_agent_state("6002", "not_ready"),
        lambda: adapter.set_agent_state("6004", "logged_on", queue="sales"),
        lambda: adapter.get_agent_state("6002"),
    )
    for ask in last:
        _settle(rig, ask())
    for operation, failure in (("makeCall", ("operation", "invalidCalledDeviceID")),
                               ("holdCall", ("stateIncompatibility", "invalidConnectionState")),
                               ("getAgentState", ("unspecified", None))):  # fmt: skip
        rig.simulator.fail_next[operation] = failure
    made = rig.of("originated")[-1].call_id
    _settle(rig, adapter.make_call("6001", "9"))
    _settle(rig, adapter.hold_call(made, "6001"))
    _settle(rig, adapter.get_agent_state("6001"))
    del customer


@cache
def captured() -> dict[tuple[str, bytes], None]:
    """(sender, PDU) of every distinct frame of the run, in order of first sight."""
    rig = ClockRig(router=StaticRouter("sales", 5))
    rig.start()
    for name in CALL_SCENARIOS:
        rig.play(name)
    # A route the switch cannot use: it asks again (reRouteRequest), the fallback goes.
    rig.adapter.routing.router = StaticRouter("nowhere")
    rig.adapter.routing.fallback = RouteDecision("support", None, 0, "fallback")
    rig.play("route_request")
    _exercise(rig)
    rig.advance(11)  # heartbeats both ways
    rig.adapter.stop()
    rig.pump()
    pdus: dict[tuple[str, bytes], None] = {}
    for sender, frames in (
        ("ctilink", rig.simulator.frames_in),
        ("simulator", rig.simulator.frames_out),
    ):
        for frame in frames:
            pdus[(sender, frame[2:])] = None
    return pdus


def describe(pdu: bytes) -> str:
    if acse.is_acse(pdu):
        return type(acse.decode(pdu)).__name__
    message = rose.decode(pdu)
    return f"{message.kind}-{message.operation or message.error or 'reject'}"


CASES = list(captured())


def test_the_run_covers_every_operation_and_pdu_kind() -> None:
    kinds = {describe(pdu) for _sender, pdu in CASES}
    for op in operations.OPERATIONS:
        assert f"invoke-{op.name}" in kinds, op.name
        if op.result is not None:
            assert f"result-{op.name}" in kinds, op.name
    assert {"error-universalFailure", "AssociateRequest", "AssociateResponse",
            "ReleaseRequest", "ReleaseResponse"} <= kinds  # fmt: skip
    assert {sender for sender, _ in CASES} == {"ctilink", "simulator"}


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize(
    "sender,pdu", CASES, ids=[f"{s}-{i}-{describe(p)}" for i, (s, p) in enumerate(CASES)]
)
def test_openssl_parses_the_whole_pdu(sender: str, pdu: bytes, tmp_path: Path) -> None:
    path = tmp_path / "pdu.der"
    path.write_bytes(pdu)
    assert OPENSSL is not None
    done = subprocess.run(
        [OPENSSL, "asn1parse", "-inform", "DER", "-in", str(path), "-i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "error" not in (done.stdout + done.stderr).lower()
    top = _TOP.search(done.stdout)
    assert top is not None, done.stdout
    assert int(top[1]) + int(top[2]) == len(pdu)  # one value spanning the PDU exactly
    assert len(re.findall(r"d=0 ", done.stdout)) == 1
