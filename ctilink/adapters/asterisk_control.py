"""Call control on Asterisk: the common adapter interface as AMI actions.

Each method checks its input (numbers, devices and variable names against strict
patterns: a client never reaches an arbitrary dialplan context or smuggles AMI headers),
finds the channel that stands for the device in the call (the bridged one, else the real
one rather than a Local half), sends one action and fires when Asterisk has answered it.
Asterisk's refusal, a timeout or a lost link fail the Deferred with a ``CommandError``.

    make_call             Originate (Async, preset ChannelId → the call id is known
                          before the first event) into the first allowed context
    clear_connection      Hangup of the device's channel
    clear_call            Hangup of every party
    deflect_call          Redirect of the other party to a new destination
    single_step_transfer  BlindTransfer (the device's peer goes to the destination)
    consultation_call     Atxfer (needs the atxfer feature code in features.conf)
    transfer_call         Hangup of the transferring device: Asterisk completes an
                          attended transfer when the transferer hangs up
    set_agent_state       QueueAdd / QueueRemove / QueuePause (with reason); wrap-up is
                          a pause with reason ``wrapup``, lifted after wrapup_seconds
    answer_call, hold_call, retrieve_call, conference_call: not supported by AMI without
    phone-specific mechanisms; they fail with ``unsupported``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, FirstError, fail, gatherResults

from ctilink.adapters.base import AGENT_STATES, SwitchAdapter
from ctilink.ami.agents import WRAPUP_REASON
from ctilink.ami.calls import Call, Channel
from ctilink.ami.message import AmiMessage
from ctilink.errors import CommandError

if TYPE_CHECKING:
    from ctilink.ami.actions import AmiResult
    from ctilink.ami.normalizer import AmiNormalizer
    from ctilink.config import AsteriskOptions

NUMBER = re.compile(r"^[0-9*#+]{1,32}$")
DEVICE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
QUEUE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
REASON = re.compile(r"^[^\r\n\x00]{0,80}$")
ORIGINATE_TIMEOUT_MS = "30000"

log = logging.getLogger(__name__)


def _all(deferreds: list[Deferred[None]]) -> Deferred[None]:
    """Fires when every action has succeeded; fails with the first one's error."""

    async def wait() -> None:
        try:
            await gatherResults(deferreds, consumeErrors=True)
        except FirstError as exc:
            exc.subFailure.raiseException()

    return Deferred.fromCoroutine(wait())


def _check(pattern: re.Pattern[str], value: str | None, what: str) -> str:
    if value is None or not pattern.match(value):
        raise CommandError("invalid", f"invalid {what}: {value!r}")
    return value


class AsteriskCallControl(SwitchAdapter):
    options: AsteriskOptions
    normalizer: AmiNormalizer
    reactor: Any

    def send_action(
        self,
        action: str,
        fields: Mapping[str, str | list[str]] | None = None,
        timeout: float | None = None,
    ) -> Deferred[AmiResult]:
        raise NotImplementedError

    def _new_call_id(self) -> str:
        raise NotImplementedError

    # -- finding channels -----------------------------------------------------------------
    def _call(self, call_id: str) -> Call:
        call = self.normalizer.find_call(call_id)
        if call is None:
            raise CommandError("not_found", f"no live call {call_id!r} on switch {self.name}")
        return call

    @staticmethod
    def _representative(channels: list[Channel]) -> Channel:
        """The channel that stands for a party: bridged first, then a real one."""
        return sorted(channels, key=lambda c: (c.bridge is None, c.pair is not None))[0]

    def _party(self, call: Call, device: str) -> Channel:
        channels = [c for c in call.channels.values() if c.leg and c.leg.device == device]
        if not channels:
            raise CommandError("not_found", f"device {device!r} is not in call {call.call_id}")
        return self._representative(channels)

    def _others(self, call: Call, device: str) -> list[Channel]:
        legs = {id(c.leg): c.leg for c in call.channels.values() if c.leg}
        out = []
        for leg in legs.values():
            if leg is not None and leg.device != device and not leg.cleared:
                out.append(
                    self._representative(
                        [call.channels[uid] for uid in leg.channels if uid in call.channels]
                    )
                )
        return out

    def _act(self, action: str, fields: Mapping[str, str | list[str]]) -> Deferred[None]:
        async def run() -> None:
            await self.send_action(action, fields)

        return Deferred.fromCoroutine(run())

    def _context(self) -> str:
        if not self.options.originate_contexts:
            raise CommandError(
                "not_allowed",
                f"switch {self.name}: no originate_contexts configured, so ctilink may not"
                " place or transfer calls into the dialplan",
            )
        return self.options.originate_contexts[0]

    # -- calls -----------------------------------------------------------------------------
    def make_call(
        self, calling_device: str, called_number: str, data: Mapping[str, str] | None = None
    ) -> Deferred[str]:
        try:
            context = self._context()
            device = _check(DEVICE, calling_device, "calling device")
            number = _check(NUMBER, called_number, "called number")
            variables = [
                f"{_check(VARIABLE, key, 'variable name')}={_check(REASON, value, 'value')}"
                for key, value in (data or {}).items()
            ]
        except CommandError as exc:
            return fail(exc)
        call_id = self._new_call_id()
        channel_id = str(uuid.uuid4())
        self.normalizer.expect_call(channel_id, call_id, number)
        fields: dict[str, str | list[str]] = {
            "Channel": self.options.device_channel.format(device=device),
            "Context": context,
            "Exten": number,
            "Priority": "1",
            "Async": "true",
            "ChannelId": channel_id,
            "Timeout": ORIGINATE_TIMEOUT_MS,
            "CallerID": f"<{device}>",
        }
        if variables:
            fields["Variable"] = variables

        async def run() -> str:
            await self.send_action("Originate", fields)
            return call_id

        return Deferred.fromCoroutine(run())

    def clear_connection(self, call_id: str, device: str) -> Deferred[None]:
        try:
            channel = self._party(self._call(call_id), device)
        except CommandError as exc:
            return fail(exc)
        return self._act("Hangup", {"Channel": channel.name, "Cause": "16"})

    def clear_call(self, call_id: str) -> Deferred[None]:
        try:
            call = self._call(call_id)
        except CommandError as exc:
            return fail(exc)
        return _all(
            [
                self._act("Hangup", {"Channel": chan.name, "Cause": "16"})
                for chan in self._others(call, "")
            ]
        )

    def deflect_call(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        try:
            call = self._call(call_id)
            self._party(call, device)
            number = _check(NUMBER, destination, "destination")
            context = self._context()
            others = self._others(call, device)
        except CommandError as exc:
            return fail(exc)
        if not others:
            return fail(CommandError("not_found", f"call {call_id} has no other party"))
        fields = {"Channel": others[0].name, "Context": context, "Exten": number, "Priority": "1"}
        return self._act("Redirect", fields)

    def single_step_transfer(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        return self._dial_from(call_id, device, destination, "BlindTransfer")

    def consultation_call(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        return self._dial_from(call_id, device, destination, "Atxfer")

    def _dial_from(
        self, call_id: str, device: str, destination: str, action: str
    ) -> Deferred[None]:
        """``action`` on the device's channel towards ``destination`` in the allowed context."""
        try:
            channel = self._party(self._call(call_id), device)
            number = _check(NUMBER, destination, "destination")
            context = self._context()
        except CommandError as exc:
            return fail(exc)
        return self._act(action, {"Channel": channel.name, "Context": context, "Exten": number})

    def transfer_call(self, held_call_id: str, active_call_id: str, device: str) -> Deferred[None]:
        return self.clear_connection(active_call_id, device)

    # -- agents ----------------------------------------------------------------------------
    def set_agent_state(
        self, agent: str, state: str, queue: str | None = None, reason: str | None = None
    ) -> Deferred[None]:
        try:
            if state not in AGENT_STATES:
                raise CommandError("invalid", f"unknown agent state {state!r}")
            _check(DEVICE, agent, "agent")
            if queue is not None:
                _check(QUEUE, queue, "queue")
            if reason is not None:
                _check(REASON, reason, "reason")
            actions = self._agent_actions(agent, state, queue, reason)
        except CommandError as exc:
            return fail(exc)
        done = _all([self._act(name, fields) for name, fields in actions])
        if state == "working_after_call" and self.options.wrapup_seconds > 0:
            done.addCallback(lambda _: self._end_wrapup_later(agent, queue))
        return done

    def _agent_actions(
        self, agent: str, state: str, queue: str | None, reason: str | None
    ) -> list[tuple[str, dict[str, str | list[str]]]]:
        known = self.normalizer.agents.agents.get(agent)
        interface = (
            known.interface
            if known and known.interface
            else self.options.device_channel.format(device=agent)
        )
        scope: dict[str, str | list[str]] = {"Interface": interface}
        if queue is not None:
            scope["Queue"] = queue
        if state == "logged_on":
            if queue is None:
                raise CommandError("invalid", "logging on needs a queue")
            member = {**scope, "Paused": "false"}
            if known and known.name:
                member["MemberName"] = known.name
            return [("QueueAdd", member)]
        if state == "logged_off":
            queues = [queue] if queue else sorted(known.queues) if known else []
            if not queues:
                raise CommandError("not_found", f"agent {agent!r} is in no queue")
            return [("QueueRemove", {"Interface": interface, "Queue": q}) for q in queues]
        if state == "ready":
            return [("QueuePause", {**scope, "Paused": "false"})]
        why = WRAPUP_REASON if state == "working_after_call" else (reason or "")
        return [("QueuePause", {**scope, "Paused": "true", "Reason": why})]

    def _end_wrapup_later(self, agent: str, queue: str | None) -> None:
        self.reactor.callLater(self.options.wrapup_seconds, self._end_wrapup, agent, queue)

    def _end_wrapup(self, agent: str, queue: str | None) -> None:
        known = self.normalizer.agents.agents.get(agent)
        if known is None:
            return
        wrapping = [
            q
            for q, m in known.queues.items()
            if m.paused and m.reason == WRAPUP_REASON and queue in (None, q)
        ]
        for name in wrapping:  # only what is still in wrap-up: a later pause stays
            self.send_action(
                "QueuePause",
                {"Interface": known.interface or agent, "Queue": name, "Paused": "false"},
            ).addErrback(self._log_failure, f"ending wrap-up of agent {agent}")

    def _log_failure(self, failure: Any, what: str) -> None:
        log.warning("switch %s: %s failed: %s", self.name, what, failure.getErrorMessage())

    def agent_complete(self, msg: AmiMessage) -> None:
        """AgentComplete: start ctilink's wrap-up for the agent, if configured."""
        if self.options.wrapup_seconds <= 0:
            return
        from ctilink.ami.names import device_of_dialstring

        agent = device_of_dialstring(msg.get("Interface"))
        queue = msg.get("Queue")
        if agent is not None and queue:
            self.set_agent_state(agent, "working_after_call", queue).addErrback(
                self._log_failure, f"wrap-up of agent {agent}"
            )
