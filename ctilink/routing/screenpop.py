"""Screen-pop enrichment: the caller's record pushed to the agent a call is offered to.

Theory of operation
-------------------
``ScreenPopper`` is a hub consumer. When a call is ``delivered`` to an agent (an event with
``agent`` set) or a ``route_selected`` names one (``agent:<id>``, before the agent's phone
even rings), it publishes one ``screen_pop`` for that call and agent's device (never two),
carrying the customer record and recent interactions (``customer``), the IVR data (the
call's data), the queue, and how long the caller waited (``customer.wait_seconds``).

Timing, the design choice: the lookup goes through the directory's cache first
(``CustomerDirectory.peek``), which is synchronous. On a hit (the usual case: the routing
service looked the caller up moments before, for the same call) the pop is published from
inside the consumer call, i.e. right after the delivered event, before the adapter
publishes anything else: clients see ``delivered`` then ``screen_pop`` with consecutive
seqs. On a miss, the lookup runs on the asyncio loop (at most ``timeout`` seconds) and the
pop is published as soon as it answers, so it follows the delivered event by at most the
lookup time, unless the call ended meanwhile (then nothing is published). A lookup that
fails pops the number and IVR data anyway, marked ``unavailable`` (one warning per outage).
Unknown callers pop as unknown with their number.

Publishing from inside a consumer call is fine: the hub hands the pop on once the
delivered event has reached every consumer, so every consumer sees them in that order.
``start_routing`` subscribes the popper last all the same.

The ``customer`` object (``schemas/events/screen_pop.schema.json``): ``known``,
``number`` (E.164 when it could be read, else as the switch sent it), ``identified_by``,
the record's fields (``id``, ``account``, ``accounts``, ``name``, ``tier``, ``language``,
``preferred_agent``, ``notes``) when known, ``interactions`` (the most recent first),
``wait_seconds``, and ``unavailable`` when the database could not be asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ctilink.model import events as ev
from ctilink.model.wire import iso_time
from ctilink.reactor import deferred
from ctilink.routing.directory import Caller, CallerKey, CustomerDirectory
from ctilink.routing.numbers import NumberNormalizer
from ctilink.routing.strategies import LiveView

log = logging.getLogger(__name__)


def customer_payload(
    caller: Caller | None,
    number: str | None,
    wait: float | None,
    history: int,
    *,
    unavailable: bool = False,
) -> dict[str, Any]:
    """The ``customer`` object of a screen pop."""
    customer = caller.customer if caller is not None else None
    out: dict[str, Any] = {
        "known": customer is not None,
        "number": number,
        "identified_by": caller.identified_by if caller is not None else None,
    }
    if caller is not None and customer is not None:
        out.update(
            id=customer.id,
            account=customer.account,
            accounts=list(customer.accounts),
            name=customer.name,
            tier=customer.tier,
            language=customer.language,
            preferred_agent=customer.preferred_agent,
            notes=customer.notes,
        )
        out["interactions"] = [
            {
                "call_id": past.call_id,
                "started": iso_time(past.started),
                "answered": iso_time(past.answered) if past.answered is not None else None,
                "ended": iso_time(past.ended),
                "queue": past.queue,
                "agent": past.agent,
                "outcome": past.outcome,
            }
            for past in caller.history[:history]
        ]
    out["wait_seconds"] = round(wait, 3) if wait is not None else None
    if unavailable:
        out["unavailable"] = True
    return out


class ScreenPopper:
    """Hub consumer publishing screen pops (see the module docstring)."""

    def __init__(
        self,
        publish: Callable[[ev.Event], object],
        directory: CustomerDirectory,
        live: LiveView,
        clock: IReactorTime,
        *,
        normalizer: NumberNormalizer,
        tenants: Mapping[str, str] | None = None,
        account_keys: tuple[str, ...] = ("CUSTOMER_ACCOUNT", "account"),
        history: int = 5,
        timeout: float = 1.0,
    ) -> None:
        self._publish = publish
        self.directory = directory
        self.live = live
        self.clock = clock
        self.normalizer = normalizer
        self.tenants = dict(tenants or {})
        self.account_keys = account_keys
        self.history = history
        self.timeout = timeout
        self.popped = 0  # screen pops published
        self.synchronous = 0  # of which from the cache, inside the consumer call
        self._done: dict[str, set[str]] = {}  # call id -> devices popped (or being looked up)
        self._failing = False

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Delivered) and event.agent:
            self._pop(event, event.device or event.agent, event.agent)
        elif isinstance(event, ev.RouteSelected) and event.destination.startswith("agent:"):
            agent = event.destination.removeprefix("agent:")
            record = self.live.agents.get((event.switch, agent))
            device = record.device if record is not None and record.device else agent
            self._pop(event, device, agent)
        elif isinstance(event, ev.CallCleared):
            self._done.pop(event.call_id, None)

    def _pop(self, event: ev.CallEvent, device: str, agent: str) -> None:
        devices = self._done.setdefault(event.call_id, set())
        if device in devices:
            return
        devices.add(device)
        call = self.live.calls.get(event.call_id)
        data = dict(call.data) if call is not None else dict(event.data)
        data.update(event.data)
        calling = event.calling_number or (call.calling_number if call is not None else None)
        account = next((data[k] for k in self.account_keys if data.get(k)), None)
        e164 = self.normalizer.normalize(calling)
        key = CallerKey(self.tenants.get(event.switch, "default"), account, e164)
        queue = event.queue or (call.queue if call is not None else None)
        head: dict[str, Any] = {
            "switch": event.switch,
            "time": event.time,
            "call_id": event.call_id,
            "device": device,
            "calling_number": calling,
            "called_number": event.called_number,
            "connection_state": None,  # a remark, not a change of the device's connection
            "queue": queue,
            "agent": agent,
            "switch_call_id": event.switch_call_id,
            "data": data,
        }
        wait = self._waited(event, queue)
        number = e164 or calling
        caller = self.directory.peek(key) if (key.account or key.number) else None
        if caller is not None or not (key.account or key.number):
            self.synchronous += 1
            self._emit(head, customer_payload(caller, number, wait, self.history))
            return
        deferred(self._lookup(key, head, number, wait))

    async def _lookup(
        self, key: CallerKey, head: dict[str, Any], number: str | None, wait: float | None
    ) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                caller = await self.directory.lookup(key)
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "screen pops: customer lookups fail (%s: %s); popping without records",
                    type(exc).__name__,
                    str(exc).split("\n")[0][:200],
                )
            payload = customer_payload(None, number, wait, self.history, unavailable=True)
        else:
            if self._failing:
                self._failing = False
                log.info("screen pops: customer lookups work again")
            payload = customer_payload(caller, number, wait, self.history)
        if head["call_id"] in self.live.calls:  # not if the call ended meanwhile
            self._emit(head, payload)

    def _emit(self, head: dict[str, Any], customer: dict[str, Any]) -> None:
        self.popped += 1
        self._publish(ev.ScreenPop(**head, customer=customer))

    def _waited(self, event: ev.CallEvent, queue: str | None) -> float | None:
        if queue is None:
            return None
        record = self.live.queues.get((event.switch, queue))
        if record is None:
            return None
        for waiting in record.waiting:
            if waiting.call_id == event.call_id:
                return max(0.0, event.time - waiting.since)
        return None
