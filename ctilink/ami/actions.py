"""Pending AMI actions: ActionID → Deferred, each with its own timeout.

Theory of operation
-------------------
Like twisted.names' pending-query table: every action ctilink sends gets a fresh
``ActionID`` and a Deferred that fires exactly once, with the response, with the list it
introduced (``EventList: start`` ... ``<Name>Complete``), or with an ``ActionFailed`` when
Asterisk answers ``Response: Error``, when the timeout (from an injectable clock) expires,
or when the connection is lost. Nothing is ever re-sent: an action pending when the link
drops fails with reason ``link_down``, so a client never gets a duplicate Originate or
Hangup behind its back. The table holds no sockets; the session writes the bytes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ctilink.ami.message import AmiMessage
from ctilink.errors import CommandError


class ActionFailed(CommandError):
    """An AMI action did not succeed; ``code`` says why (stable, machine-readable).

    ``error`` (Asterisk said ``Response: Error``; ``message`` is its text), ``timeout``,
    ``link_down`` (not connected, or the connection was lost before the answer).
    """

    def __init__(self, code: str, action: str, message: str) -> None:
        super().__init__(code, f"{action}: {message}")
        self.action = action
        self.message = message


@dataclass
class AmiResult:
    """A successful action: its response and, for list actions, the list's events."""

    response: AmiMessage
    events: list[AmiMessage] = field(default_factory=list)


@dataclass
class _Pending:
    action: str
    deferred: Deferred[AmiResult]
    timer: IDelayedCall
    result: AmiResult | None = None  # set when a list response arrived; events follow


class PendingActions:
    def __init__(self, clock: IReactorTime, prefix: str = "ctilink") -> None:
        self._clock = clock
        self._prefix = prefix
        self._numbers = itertools.count(1)
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._numbers)}"

    def expect(self, action_id: str, action: str, timeout: float) -> Deferred[AmiResult]:
        """Register an action about to be sent; the Deferred fires once, within ``timeout``."""
        deferred: Deferred[AmiResult] = Deferred(lambda _d: self._cancel(action_id))
        timer = self._clock.callLater(timeout, self._expire, action_id, timeout)
        self._pending[action_id] = _Pending(action, deferred, timer)
        return deferred

    def owns(self, message: AmiMessage) -> bool:
        """Whether ``message`` answers (or belongs to the list of) a pending action."""
        action_id = message.get("ActionID")
        if action_id is None or action_id not in self._pending:
            return False
        if message.kind == "response":
            return True
        # An event with our ActionID is a list item only while the list is open; other
        # events carrying it (OriginateResponse) are ordinary events for the normalizer.
        return self._pending[action_id].result is not None

    def receive(self, message: AmiMessage) -> None:
        """Apply a message for which ``owns`` was True."""
        action_id = message["ActionID"]
        pending = self._pending[action_id]
        if message.kind == "response":
            status = message.name.lower()
            if status == "error":
                text = message.get("Message", "error")
                self._finish(action_id, ActionFailed("error", pending.action, text))
            elif (message.get("EventList") or "").lower() == "start":
                pending.result = AmiResult(message)
            else:
                self._finish(action_id, AmiResult(message))
            return
        assert pending.result is not None
        if (message.get("EventList") or "").lower() in ("complete", "cancelled"):
            pending.result.events.append(message)
            self._finish(action_id, pending.result)
        else:
            pending.result.events.append(message)

    def fail_all(self, code: str, message: str) -> None:
        for action_id, pending in list(self._pending.items()):
            self._finish(action_id, ActionFailed(code, pending.action, message))

    def _expire(self, action_id: str, timeout: float) -> None:
        pending = self._pending.get(action_id)
        if pending is not None:
            self._finish(
                action_id,
                ActionFailed("timeout", pending.action, f"no answer within {timeout:g} s"),
            )

    def _cancel(self, action_id: str) -> None:
        pending = self._pending.pop(action_id, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()

    def _finish(self, action_id: str, outcome: AmiResult | ActionFailed) -> None:
        pending = self._pending.pop(action_id)
        if pending.timer.active():
            pending.timer.cancel()
        if isinstance(outcome, ActionFailed):
            pending.deferred.errback(outcome)
        else:
            pending.deferred.callback(outcome)
