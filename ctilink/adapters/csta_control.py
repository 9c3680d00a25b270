"""Call control on a CSTA switch: the common adapter interface as CSTA services.

Each method checks its input (devices and numbers are IA5 dialling strings), finds the
call's ``ConnectionID`` for the device (the one the switch itself gave in its events, so a
``dynamicID`` goes back as it came), sends one service request and fires when the switch
has answered. A ``universalFailure`` comes back as a ``CstaError`` (a ``CommandError``
whose ``code`` says why: ``invalid``, ``not_found``, ``not_allowed``, ``unsupported``...
and whose ``failure`` keeps the switch's own value); a lost link or no answer within the
request timeout fail with ``link_down`` / ``timeout``.

    make_call             makeCall; the call id is chosen first, so its events carry it
    answer_call           answerCall
    clear_connection      clearConnection
    clear_call            clearCall
    hold_call             holdCall
    retrieve_call         retrieveCall
    deflect_call          deflectCall (the alerting or connected call goes elsewhere)
    single_step_transfer  singleStepTrans
    consultation_call     consultationCall (holds the call, calls the destination)
    transfer_call         transferCall (held + active call of the device)
    conference_call       conferenceCall (held + active call of the device)
    alternate_call        alternateCall (hold the active call, retrieve the held one)
    reconnect_call        reconnectCall (clear the active call, retrieve the held one)
    set_agent_state       setAgentState (logged on/off, ready, not ready, after call work);
                          CSTA has no not-ready reason code: ``reason`` is not sent
    get_agent_state       getAgentState
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from twisted.internet.defer import Deferred, fail

from ctilink.adapters import csta_values as values
from ctilink.adapters.base import AGENT_STATES, SwitchAdapter
from ctilink.adapters.csta_calls import CstaCall
from ctilink.adapters.csta_events import CstaNormalizer
from ctilink.csta import CstaMessage
from ctilink.errors import CommandError

log = logging.getLogger(__name__)

# An IA5 dialling string as switches accept it: no spaces or control characters.
DIALLING: Final = re.compile(r"^[0-9A-Za-z*#+@._:-]{1,64}$")
_REQUESTED: Final = {
    "logged_on": "loggedOn",
    "logged_off": "loggedOff",
    "ready": "ready",
    "not_ready": "notReady",
    "working_after_call": "workingAfterCall",
}
_AGENT_STATES: Final = {
    "agentNotReady": "not_ready",
    "agentNull": "logged_off",
    "agentReady": "ready",
    "agentBusy": "busy",
    "agentWorkingAfterCall": "working_after_call",
}


def _dialling(value: str | None, what: str) -> str:
    if value is None or not DIALLING.match(value):
        raise CommandError("invalid", f"invalid {what}: {value!r}")
    return value


class CstaCallControl(SwitchAdapter):
    normalizer: CstaNormalizer

    def invoke(
        self, operation: str, argument: Any, timeout: float | None = None
    ) -> Deferred[CstaMessage | None]:
        raise NotImplementedError

    def _new_call_id(self) -> str:
        raise NotImplementedError

    # -- finding connections ---------------------------------------------------------------
    def _call(self, call_id: str) -> CstaCall:
        call = self.normalizer.book.calls.get(call_id)
        if call is None or call.switch_call_id is None:
            raise CommandError("not_found", f"no live call {call_id!r} on switch {self.name}")
        return call

    def _connection(self, call_id: str, device: str) -> Any:
        """The ConnectionID of ``device`` in the call (as the switch gave it)."""
        call = self._call(call_id)
        _dialling(device, "device")
        party = call.parties.get(device)
        if party is None:
            raise CommandError("not_found", f"device {device!r} is not in call {call_id}")
        if party.connection is not None and values.connection_parts(party.connection)[0]:
            return party.connection
        assert call.switch_call_id is not None
        return values.connection(call.switch_call_id, device)

    def _ask(self, operation: str, build: Any) -> Deferred[None]:
        """Send ``operation`` with the argument ``build()`` makes; fire None when answered."""
        try:
            argument = build()
        except CommandError as exc:
            return fail(exc)

        async def run() -> None:
            await self.invoke(operation, argument)

        return Deferred.fromCoroutine(run())

    # -- calls -----------------------------------------------------------------------------
    def make_call(
        self, calling_device: str, called_number: str, data: Mapping[str, str] | None = None
    ) -> Deferred[str]:
        try:
            device = _dialling(calling_device, "calling device")
            argument: dict[str, Any] = {
                "callingDevice": values.device_id(device),
                "calledDirectoryNumber": values.device_id(_dialling(called_number, "number")),
            }
        except CommandError as exc:
            return fail(exc)
        if data:
            argument["userData"] = values.encode_user_data(data)
        return self._originate("makeCall", argument, device, "callingDevice")

    def consultation_call(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        try:
            argument = {
                "existingCall": self._connection(call_id, device),
                "consultedDevice": values.device_id(_dialling(destination, "destination")),
            }
        except CommandError as exc:
            return fail(exc)
        made = self._originate("consultationCall", argument, device, "initiatedCall")
        return made.addCallback(lambda _call_id: None)

    def _originate(
        self, operation: str, argument: dict[str, Any], device: str, field: str
    ) -> Deferred[str]:
        """A service that makes a new call at ``device``: its id is promised first."""
        book = self.normalizer.book
        call_id = self._new_call_id()
        book.expect(device, call_id)

        async def run() -> str:
            try:
                result = await self.invoke(operation, argument)
            except Exception:
                if book.expected.get(device) == call_id:
                    del book.expected[device]
                raise
            made = result.argument if result is not None else None
            switch_id, _ = values.connection_parts((made or {}).get(field))
            if switch_id is not None:
                book.bind(switch_id, device, call_id)
            return call_id

        return Deferred.fromCoroutine(run())

    def answer_call(self, call_id: str, device: str) -> Deferred[None]:
        return self._ask(
            "answerCall", lambda: {"callToBeAnswered": self._connection(call_id, device)}
        )

    def clear_connection(self, call_id: str, device: str) -> Deferred[None]:
        return self._ask(
            "clearConnection", lambda: {"connectionToBeCleared": self._connection(call_id, device)}
        )

    def clear_call(self, call_id: str) -> Deferred[None]:
        def build() -> dict[str, Any]:
            switch_id = self._call(call_id).switch_call_id
            return {"callToBeCleared": ("callID", switch_id)}

        return self._ask("clearCall", build)

    def hold_call(self, call_id: str, device: str) -> Deferred[None]:
        return self._ask("holdCall", lambda: {"callToBeHeld": self._connection(call_id, device)})

    def retrieve_call(self, call_id: str, device: str) -> Deferred[None]:
        return self._ask(
            "retrieveCall", lambda: {"callToBeRetrieved": self._connection(call_id, device)}
        )

    def deflect_call(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        return self._ask(
            "deflectCall",
            lambda: {
                "callToBeDiverted": self._connection(call_id, device),
                "newDestination": values.device_id(_dialling(destination, "destination")),
            },
        )

    def single_step_transfer(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        return self._ask(
            "singleStepTrans",
            lambda: {
                "activeCall": self._connection(call_id, device),
                "transferredTo": values.device_id(_dialling(destination, "destination")),
            },
        )

    def _two_calls(self, operation: str, held: str, active: str, device: str) -> Deferred[None]:
        return self._ask(
            operation,
            lambda: {
                "heldCall": self._connection(held, device),
                "activeCall": self._connection(active, device),
            },
        )

    def transfer_call(self, held_call_id: str, active_call_id: str, device: str) -> Deferred[None]:
        return self._two_calls("transferCall", held_call_id, active_call_id, device)

    def conference_call(
        self, held_call_id: str, active_call_id: str, device: str
    ) -> Deferred[None]:
        return self._two_calls("conferenceCall", held_call_id, active_call_id, device)

    def alternate_call(self, held_call_id: str, active_call_id: str, device: str) -> Deferred[None]:
        """Hold the active call and retrieve the held one, at ``device``."""
        return self._two_calls("alternateCall", held_call_id, active_call_id, device)

    def reconnect_call(self, held_call_id: str, active_call_id: str, device: str) -> Deferred[None]:
        """Clear the active call and retrieve the held one, at ``device``."""
        return self._two_calls("reconnectCall", held_call_id, active_call_id, device)

    # -- agents ----------------------------------------------------------------------------
    def _agent_argument(self, agent: str, queue: str | None) -> dict[str, Any]:
        _dialling(agent, "agent")
        device = self.normalizer.agents.device_of(agent)
        argument: dict[str, Any] = {"device": values.device_id(device)}
        if queue is not None:
            argument["group"] = values.device_id(_dialling(queue, "queue"))
        if agent != device:
            argument["agentID"] = agent.encode("ascii")
        return argument

    def set_agent_state(
        self, agent: str, state: str, queue: str | None = None, reason: str | None = None
    ) -> Deferred[None]:
        def build() -> dict[str, Any]:
            if state not in AGENT_STATES:
                raise CommandError("invalid", f"unknown agent state {state!r}")
            argument = self._agent_argument(agent, queue)
            argument["requestedAgentState"] = _REQUESTED[state]
            if reason:
                log.debug("switch %s: CSTA carries no not-ready reason (%r)", self.name, reason)
            return argument

        return self._ask("setAgentState", build)

    def get_agent_state(
        self, agent: str, queue: str | None = None
    ) -> Deferred[list[dict[str, Any]]]:
        """The agent's state per ACD group: ``[{"queue", "logged_on", "state"}]``."""
        try:
            argument = self._agent_argument(agent, None)
            if queue is not None:
                argument = {"device": argument["device"], "acdGroup": values.device_id(queue)}
        except CommandError as exc:
            return fail(exc)

        async def run() -> list[dict[str, Any]]:
            answer = await self.invoke("getAgentState", argument)
            out: list[dict[str, Any]] = []
            for entry in (answer.argument if answer is not None else {})["agentStateList"]:
                for info in entry.get("agentInfo") or [{}]:
                    out.append(
                        {
                            "queue": values.device_text(info.get("acdGroup")),
                            "logged_on": bool(entry.get("loggedOn")),
                            "state": _AGENT_STATES.get(info.get("agentState", ""), "logged_off")
                            if entry.get("loggedOn")
                            else "logged_off",
                        }
                    )
            return out

        return Deferred.fromCoroutine(run())
