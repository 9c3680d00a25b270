"""The services the CSTA simulator answers, one function each (``SERVICES``).

Each takes the connection that asked and the request's argument, acts on the switch
model (``simulator_switch``) and returns the result value, or raises ``ServiceError`` with
the universalFailure a switch would answer (an unknown call: ``invalidCallID``; a
connection in the wrong state: ``invalidConnectionState``...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ctilink.adapters.csta_values import connection_parts, device_text
from ctilink.csta.simulator_switch import SimCall

if TYPE_CHECKING:
    from ctilink.csta.simulator import CstaSimulator, SimulatorProtocol

NO_DATA: Final = ("noData", None)
Service = Callable[["SimulatorProtocol", dict[str, Any]], Any]
Failure_ = tuple[str, Any]


class ServiceError(Exception):
    """A request the switch refuses with universalFailure ``failure``."""

    def __init__(self, failure: Failure_) -> None:
        super().__init__(failure)
        self.failure = failure


def _device(value: Any, what: str = "device") -> str:
    device = device_text(value)
    if device is None:
        raise ServiceError(("operation", "invalidDeviceID"))
    return device


def _call(sim: CstaSimulator, value: Any) -> tuple[SimCall, str]:
    switch_id, device = connection_parts(value)
    call = sim.switch.find(switch_id)
    if call is None:
        raise ServiceError(("operation", "invalidCallID"))
    if device is None or device not in call.connections:
        raise ServiceError(("operation", "invalidConnectionID"))
    return call, device


def _monitor_start(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    kind, value = arg["monitorObject"]
    if kind != "deviceObject":
        raise ServiceError(("operation", "invalidMonitorObjectType"))
    cross_ref = b"%d" % next(proto.sim.cross_refs)
    proto.monitors[cross_ref] = _device(value)
    return {"crossRefIdentifier": cross_ref}


def _monitor_stop(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    if proto.monitors.pop(arg["crossRefIdentifier"], None) is None:
        raise ServiceError(("operation", "invalidMonitorCrossRefID"))
    return NO_DATA


def _snapshot(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    data = proto.sim.switch.snapshot(_device(arg["snapshotObject"]))
    return {"crossRefIDorSnapshotData": ("snapshotData", data)}


def _route_register(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    point = _device(arg.get("routeingDevice"))
    register_id = b"RR%d" % next(proto.sim.cross_refs)
    proto.sim.registrations[point] = (proto, register_id)
    return {"routeRegisterReqID": register_id}


def _make_call(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    sim = proto.sim
    calling = _device(arg["callingDevice"])
    called = _device(arg["calledDirectoryNumber"], "called number")
    data = dict(
        item.split("=", 1) for item in arg.get("userData", b"").decode().split(";") if "=" in item
    )
    call = sim.switch.originate(calling, called, data)
    sim.ring(call, called)
    return {"callingDevice": sim.switch.conn(call, calling)}


def _answer(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    call, device = _call(proto.sim, arg["callToBeAnswered"])
    if call.connections[device] != "alerting":
        raise ServiceError(("stateIncompatibility", "invalidConnectionState"))
    proto.sim.switch.answer(call, device)
    return NO_DATA


def _clear_connection(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    call, device = _call(proto.sim, arg["connectionToBeCleared"])
    proto.sim.switch.clear_connection(call, device)
    return NO_DATA


def _clear_call(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    call = proto.sim.switch.find(connection_parts(arg["callToBeCleared"])[0])
    if call is None:
        raise ServiceError(("operation", "invalidCallID"))
    proto.sim.switch.clear_call(call)
    return NO_DATA


def _hold(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    return _hold_or_retrieve(proto, arg["callToBeHeld"], "connected", proto.sim.switch.hold)


def _retrieve(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    return _hold_or_retrieve(proto, arg["callToBeRetrieved"], "hold", proto.sim.switch.retrieve)


def _hold_or_retrieve(
    proto: SimulatorProtocol, connection: Any, state: str, act: Callable[[SimCall, str], None]
) -> Any:
    call, device = _call(proto.sim, connection)
    if call.connections[device] != state:
        raise ServiceError(("stateIncompatibility", "invalidConnectionState"))
    act(call, device)
    return NO_DATA


def _consult(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    sim = proto.sim
    call, device = _call(sim, arg["existingCall"])
    destination = _device(arg["consultedDevice"])
    consultation = sim.switch.consult(call, device, destination)
    sim.answer_later(consultation, destination)
    return {"initiatedCall": sim.switch.conn(consultation, device)}


def _two_calls(proto: SimulatorProtocol, arg: dict[str, Any]) -> tuple[SimCall, SimCall, str]:
    held, device = _call(proto.sim, arg["heldCall"])
    active, other = _call(proto.sim, arg["activeCall"])
    if other != device:
        raise ServiceError(("operation", "notSameDevice"))
    return held, active, device


def _transfer(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    held, active, device = _two_calls(proto, arg)
    joined = proto.sim.switch.transfer(held, active, device)
    return {"transferredCall": proto.sim.switch.conn(joined, None)}


def _conference(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    held, active, device = _two_calls(proto, arg)
    joined = proto.sim.switch.conference(held, active, device)
    return {"conferenceCall": proto.sim.switch.conn(joined, device)}


def _alternate(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    held, active, device = _two_calls(proto, arg)
    proto.sim.switch.hold(active, device)
    proto.sim.switch.retrieve(held, device)
    return NO_DATA


def _reconnect(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    held, active, device = _two_calls(proto, arg)
    proto.sim.switch.clear_connection(active, device)
    proto.sim.switch.retrieve(held, device)
    return NO_DATA


def _single_step(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    sim = proto.sim
    call, device = _call(sim, arg["activeCall"])
    destination = _device(arg["transferredTo"])
    sim.switch.single_step(call, device, destination)
    sim.answer_later(call, destination)
    return {"transferredCall": sim.switch.conn(call, None)}


def _deflect(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    sim = proto.sim
    call, device = _call(sim, arg["callToBeDiverted"])
    destination = _device(arg["newDestination"])
    sim.switch.divert(call, device, destination)
    sim.ring(call, destination)
    return NO_DATA


_REQUESTED_STATES: Final = {"ready": "agentReady", "notReady": "agentNotReady",
                            "workingAfterCall": "agentWorkingAfterCall"}  # fmt: skip


def _set_agent_state(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    switch = proto.sim.switch
    device = _device(arg["device"])
    group = device_text(arg.get("group"))
    requested = arg["requestedAgentState"]
    if requested in ("loggedOn", "loggedOff"):
        if group is None:
            raise ServiceError(("operation", "invalidAgentGroup"))
        (switch.log_on if requested == "loggedOn" else switch.log_off)(device, group)
    elif device not in switch.agents or not switch.agents[device].groups:
        raise ServiceError(("stateIncompatibility", "invalidObjectState"))
    else:
        switch.agent_state(device, _REQUESTED_STATES[requested])
    return {}


def _get_agent_state(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    info = proto.sim.switch.agent_info(_device(arg["device"]))
    if info is None:
        raise ServiceError(("operation", "invalidAgentIdentifier"))
    return info


def _route_select(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    proto.sim.route_answered(arg["crossRefIdentifier"], device_text(arg["routeSelected"]))


def _route_end(proto: SimulatorProtocol, arg: dict[str, Any]) -> Any:
    proto.sim.route_answered(arg["crossRefIdentifier"], None)


SERVICES: Final[dict[str, Service]] = {
    "monitorStart": _monitor_start, "monitorStop": _monitor_stop, "snapshotDevice": _snapshot,
    "routeRegister": _route_register, "makeCall": _make_call, "answerCall": _answer,
    "clearConnection": _clear_connection, "clearCall": _clear_call, "holdCall": _hold,
    "retrieveCall": _retrieve, "consultationCall": _consult, "transferCall": _transfer,
    "conferenceCall": _conference, "alternateCall": _alternate, "reconnectCall": _reconnect,
    "singleStepTrans": _single_step, "deflectCall": _deflect,
    "setAgentState": _set_agent_state, "getAgentState": _get_agent_state,
    "routeSelectRequest": _route_select, "routeEndRequest": _route_end,
}  # fmt: skip
