"""Web callback requests: a customer asks to be called back; the next ready agent of the
queue is rung first and, once they answer, the switch calls the customer.

Theory of operation
-------------------
``Callbacks`` is a hub consumer and the owner of every callback request. Requests wait per
(switch, queue), in arrival order; the switch fixes the tenant. A request's life:

    queued ──(an agent of the queue is ready, not_before has passed)──► dialling
    dialling ──(make_call fails, the call clears/fails before the agent answers)──► attempt failed
    dialling ──(originated: the agent answered, the switch calls the customer)──► connected
    connected ──(call_cleared, normal clearing)──► completed
    connected ──(failed, or call_cleared with another cause: busy, no answer...)──► attempt failed
    dialling ──(no live call for it answer_timeout after the switch accepted it)──► attempt failed
    attempt failed ──► queued again after retry_delay, or failed after max_attempts (at once
                       when the switch refused for good: invalid, not_allowed, unsupported)
    queued ──(cancel)──► cancelled        (only a queued request can be cancelled)

Dispatch runs on the injected clock (``callLater(0)``, coalesced), never inside the hub's
consumer call, after any event that may free an agent or a queue, after a new request, and
when a ``not_before`` or retry time comes. For each queue with due requests it takes the
agents that are logged on to it, ready (overall state ``ready`` and not paused there), not
already ringing for a callback, the longest-ready first, and pairs them with the oldest due
requests. While live calls wait in the queue, callbacks wait (callers on the line first),
unless ``defer_to_waiting_calls`` is False; while the switch's link is down nothing is dialled.
Dialling is ``adapter.make_call(agent device, customer number, data)``: the adapter rings
the agent's device, then calls the number from it, only into allowed destinations; the call
id it returns maps the call's events back to the request. The request's data travel as call
data, with ``CTILINK_CALLBACK`` = the callback id (so the screen pop can tell).

Every change is published as a ``callback`` event (built at the change, published from the
clock so the stream stays in seq order). Requests live in memory: a restart forgets them
(persistence is a later step); finished ones are kept for ``keep_finished`` seconds.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ctilink.adapters.base import SwitchAdapter
from ctilink.errors import CommandError, CtilinkError
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.records import AgentRecord
from ctilink.model.states import AgentState, LinkState
from ctilink.model.wire import iso_time

log = logging.getLogger(__name__)

CALLBACK_VARIABLE = "CTILINK_CALLBACK"
PERMANENT = frozenset({"invalid", "not_allowed", "unsupported"})  # retrying cannot help
NORMAL_END = frozenset({"normal_clearing"})


class Status(StrEnum):
    QUEUED = "queued"
    DIALLING = "dialling"
    CONNECTED = "connected"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class CallbackStateError(CtilinkError):
    """The request is not in a state that allows this (e.g. cancelling a dialled one)."""


class CallbackLimitError(CtilinkError):
    """Too many requests are pending."""


@dataclass
class CallbackRequest:
    callback_id: str
    tenant: str
    switch: str
    queue: str
    number: str
    requested: float
    name: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    not_before: float | None = None
    status: Status = Status.QUEUED
    attempts: int = 0
    agent: str | None = None
    device: str | None = None
    call_id: str | None = None
    error: str | None = None
    updated: float = 0.0

    def due(self, now: float) -> bool:
        return self.status is Status.QUEUED and (self.not_before or 0.0) <= now

    def to_event(self) -> ev.CallbackChanged:
        return ev.CallbackChanged(
            switch=self.switch,
            time=self.updated,
            callback_id=self.callback_id,
            queue=self.queue,
            number=self.number,
            status=self.status.value,
            attempts=self.attempts,
            requested=iso_time(self.requested),
            name=self.name,
            not_before=None if self.not_before is None else iso_time(self.not_before),
            agent=self.agent,
            device=self.device,
            call_id=self.call_id,
            error=self.error,
            data=dict(self.data),
        )


class Callbacks:
    """Hub consumer that queues web callback requests and dials them when agents are ready."""

    def __init__(
        self,
        hub: Hub,
        adapters: Mapping[str, SwitchAdapter],
        clock: IReactorTime,
        *,
        max_attempts: int = 3,
        retry_delay: float = 60.0,
        max_pending: int = 10_000,
        keep_finished: float = 3600.0,
        defer_to_waiting_calls: bool = True,
        answer_timeout: float = 60.0,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.hub = hub
        self.tracker = hub.tracker
        self.adapters = adapters
        self.clock = clock
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_pending = max_pending
        self.keep_finished = keep_finished
        self.defer_to_waiting_calls = defer_to_waiting_calls
        self.answer_timeout = answer_timeout
        self._new_id = new_id
        self.requests: dict[str, CallbackRequest] = {}  # in arrival order
        self._by_call: dict[str, CallbackRequest] = {}
        self._unfinished: set[str] = set()  # ids of the requests not finished yet
        self._ringing: set[tuple[str, str]] = set()  # (switch, agent) dialled for a callback
        self._outbox: list[ev.CallbackChanged] = []
        self._flush_call: IDelayedCall | None = None
        self._dispatch_call: IDelayedCall | None = None
        self._wake_call: IDelayedCall | None = None
        self._checks: dict[str, IDelayedCall] = {}  # callback id -> its dialling check
        self._handlers: dict[type[ev.Event], Callable[[Any], None]] = {
            ev.Originated: self._on_originated,
            ev.Failed: self._on_failed,
            ev.CallCleared: self._on_call_cleared,
        }
        self._unsubscribe = hub.subscribe(self)

    def close(self) -> None:
        self._unsubscribe()
        timers = (self._flush_call, self._dispatch_call, self._wake_call, *self._checks.values())
        for call in timers:
            if call is not None and call.active():
                call.cancel()

    # -- the requests ----------------------------------------------------------------------
    def request(
        self,
        tenant: str,
        switch: str,
        queue: str,
        number: str,
        *,
        name: str | None = None,
        data: Mapping[str, str] | None = None,
        not_before: float | None = None,
    ) -> CallbackRequest:
        """Queue a callback (checked by the caller: the switch is the tenant's)."""
        self._prune()
        if sum(1 for cb in self.requests.values() if cb.status not in FINISHED) >= (
            self.max_pending
        ):
            raise CallbackLimitError(f"{self.max_pending} callback requests are pending already")
        now = self.clock.seconds()
        callback = CallbackRequest(
            callback_id=self._new_id(),
            tenant=tenant,
            switch=switch,
            queue=queue,
            number=number,
            requested=now,
            name=name,
            data=dict(data or {}),
            not_before=not_before,
            updated=now,
        )
        self.requests[callback.callback_id] = callback
        self._changed(callback)
        self._schedule_dispatch()
        return callback

    def get(self, callback_id: str) -> CallbackRequest | None:
        return self.requests.get(callback_id)

    def all(self) -> Iterator[CallbackRequest]:
        self._prune()
        return iter(list(self.requests.values()))

    def cancel(self, callback_id: str) -> CallbackRequest:
        callback = self.requests[callback_id]  # KeyError: the caller says 404
        if callback.status is not Status.QUEUED:
            raise CallbackStateError(
                f"callback {callback_id} is {callback.status.value}: only a queued callback"
                " can be cancelled"
            )
        callback.status = Status.CANCELLED
        self._changed(callback)
        return callback

    def _prune(self) -> None:
        horizon = self.clock.seconds() - self.keep_finished
        for key, callback in list(self.requests.items()):
            if callback.status in FINISHED and callback.updated < horizon:
                del self.requests[key]

    # -- events from the switch ------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        if not self._unfinished:
            return  # the usual case: nothing to do for any event
        if isinstance(event, ev.CallEvent) and event.call_id in self._by_call:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(event)
        if isinstance(event, ev.AgentEvent | ev.LinkEvent) or (
            isinstance(event, ev.CallEvent) and event.queue is not None
        ):
            self._schedule_dispatch()

    def _on_originated(self, event: ev.Originated) -> None:
        callback = self._by_call[event.call_id]
        if callback.status is Status.DIALLING:
            callback.status = Status.CONNECTED
            self._changed(callback)

    def _on_failed(self, event: ev.Failed) -> None:
        callback = self._by_call.pop(event.call_id)
        self._attempt_failed(callback, event.cause or f"the call failed at {event.device}")

    def _on_call_cleared(self, event: ev.CallCleared) -> None:
        callback = self._by_call.pop(event.call_id)
        if callback.status is Status.CONNECTED and event.cause in (None, *NORMAL_END):
            self._ringing.discard((callback.switch, callback.agent or ""))
            self._cancel_check(callback)
            callback.status = Status.COMPLETED
            callback.error = None
            self._changed(callback)
        elif callback.status is Status.CONNECTED:
            self._attempt_failed(callback, event.cause or "the call ended")
        else:
            why = event.cause or "cleared"
            self._attempt_failed(callback, f"the agent's device did not answer ({why})")

    # -- dialling --------------------------------------------------------------------------
    def _schedule_dispatch(self) -> None:
        if self._dispatch_call is None or not self._dispatch_call.active():
            self._dispatch_call = self.clock.callLater(0, self.dispatch)

    def dispatch(self) -> None:
        """Pair due requests with ready agents, per queue, oldest request first."""
        now = self.clock.seconds()
        due: dict[tuple[str, str], list[CallbackRequest]] = {}
        for callback in self.requests.values():
            if callback.due(now):
                due.setdefault((callback.switch, callback.queue), []).append(callback)
        for (switch, queue), waiting in due.items():
            if not self._may_dial(switch, queue):
                continue
            agents = self._ready_agents(switch, queue)
            for callback, agent in zip(waiting, agents, strict=False):
                self._dial(callback, agent)
        self._schedule_wake(now)

    def _may_dial(self, switch: str, queue: str) -> bool:
        if switch not in self.adapters:
            return False
        link = self.tracker.links.get(switch)
        if link is None or link.state is not LinkState.UP:
            return False
        record = self.tracker.queues.get((switch, queue))
        return not (self.defer_to_waiting_calls and record is not None and record.waiting)

    def _ready_agents(self, switch: str, queue: str) -> list[AgentRecord]:
        ready = [
            agent
            for (sw, name), agent in self.tracker.agents.items()
            if sw == switch
            and agent.state is AgentState.READY
            and queue in agent.queues
            and not agent.queues[queue].paused
            and (switch, name) not in self._ringing
        ]
        return sorted(ready, key=lambda agent: agent.since)

    def _dial(self, callback: CallbackRequest, agent: AgentRecord) -> None:
        callback.status = Status.DIALLING
        callback.attempts += 1
        callback.agent = agent.agent
        callback.device = agent.device or agent.agent
        callback.call_id = None
        self._ringing.add((callback.switch, agent.agent))
        self._changed(callback)
        data = {**callback.data, CALLBACK_VARIABLE: callback.callback_id}
        adapter = self.adapters[callback.switch]
        log.info(
            "callback %s: ringing agent %s at %s for %s (attempt %d)",
            callback.callback_id,
            agent.agent,
            callback.device,
            callback.number,
            callback.attempts,
        )
        dialled = adapter.make_call(callback.device, callback.number, data)
        dialled.addCallbacks(
            self._dialled,
            self._not_dialled,
            callbackArgs=(callback,),
            errbackArgs=(callback,),
        )

    def _dialled(self, call_id: str, callback: CallbackRequest) -> None:
        callback.call_id = call_id
        self._by_call[call_id] = callback
        self._changed(callback)
        self._check_later(callback)

    def _check_later(self, callback: CallbackRequest) -> None:
        self._checks[callback.callback_id] = self.clock.callLater(
            self.answer_timeout, self._check_dialling, callback, callback.attempts
        )

    def _cancel_check(self, callback: CallbackRequest) -> None:
        check = self._checks.pop(callback.callback_id, None)
        if check is not None and check.active():
            check.cancel()

    def _check_dialling(self, callback: CallbackRequest, attempt: int) -> None:
        """A dialled request whose call never showed up or never got anywhere: the switch
        lost it (no events at all); a call still live is left to its own clearing."""
        self._checks.pop(callback.callback_id, None)
        if callback.status is not Status.DIALLING or callback.attempts != attempt:
            return
        if callback.call_id is not None and callback.call_id in self.tracker.calls:
            self._check_later(callback)
        else:
            self._attempt_failed(callback, "the switch reported no call for it")

    def _not_dialled(self, failure: Any, callback: CallbackRequest) -> None:
        error = failure.value
        if isinstance(error, CommandError):
            self._attempt_failed(
                callback, f"{error.code}: {error}", permanent=error.code in PERMANENT
            )
        else:
            log.error("callback %s: make_call raised %r", callback.callback_id, error)
            self._attempt_failed(callback, f"error: {error}", permanent=False)

    def _attempt_failed(self, callback: CallbackRequest, why: str, permanent: bool = False) -> None:
        self._ringing.discard((callback.switch, callback.agent or ""))
        self._cancel_check(callback)
        if callback.call_id is not None:
            self._by_call.pop(callback.call_id, None)
        callback.error = why
        now = self.clock.seconds()
        if permanent or callback.attempts >= self.max_attempts:
            callback.status = Status.FAILED
            log.warning(
                "callback %s failed after %d attempt(s): %s",
                callback.callback_id,
                callback.attempts,
                why,
            )
        else:
            callback.status = Status.QUEUED
            callback.not_before = now + self.retry_delay
        self._changed(callback)
        self._schedule_dispatch()

    def _schedule_wake(self, now: float) -> None:
        """A dispatch when the next queued request becomes due (not_before, retries)."""
        later = [
            cb.not_before
            for cb in self.requests.values()
            if cb.status is Status.QUEUED and cb.not_before is not None and cb.not_before > now
        ]
        if self._wake_call is not None and self._wake_call.active():
            self._wake_call.cancel()
        self._wake_call = self.clock.callLater(min(later) - now, self.dispatch) if later else None

    # -- publishing ------------------------------------------------------------------------
    def _changed(self, callback: CallbackRequest) -> None:
        if callback.status in FINISHED:
            self._unfinished.discard(callback.callback_id)
        else:
            self._unfinished.add(callback.callback_id)
        callback.updated = self.clock.seconds()
        self._outbox.append(callback.to_event())
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        for event in outbox:
            self.hub.publish(event)
