"""CSTA routeing: the switch asks where a call goes, the router answers in time.

Theory of operation
-------------------
At link-up the adapter registers as the routeing server of each configured route point
(``routeRegister``). When a call reaches one, the switch invokes ``routeRequest`` with a
``crossRefIdentifier`` that names the routeing dialogue; ctilink

1. publishes ``route_request`` for the call (its ctilink ``call_id``: the call is found by
   ``routedCall``, or started so that its later events carry the same id);
2. asks the ``Router`` (the interface FastAGI uses) for a ``RouteDecision`` within
   ``budget`` seconds, and never later than the switch's own routeing timer
   (``replyTimeout`` in the request, less a margin);
3. answers ``routeSelectRequest`` with the destination (the agent's device, else the
   queue, as a dialling number) and publishes ``route_selected``. A router that fails,
   answers nonsense or is late gets the configured ``fallback`` answered instead (with a
   ``Routes`` router: its default route in force at that moment, which a reload may have
   swapped), with a WARNING saying why; with no fallback the dialogue is ended
   (``routeEndRequest``) and the switch routes the call by its own default, also with a
   WARNING.

``reRouteRequest`` (the selected destination did not work) is answered with the fallback
if it was not already the answer, else ``routeEndRequest``. The switch's
``routeEndRequest`` ends the dialogue (a router still thinking is cancelled). A CSTA route
select carries no priority: ``RouteDecision.priority`` is reported in ``route_selected``
only. Nothing here blocks; a dialogue lives in ``pending`` until the switch ends it or the
link goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ctilink.adapters import csta_values as values
from ctilink.adapters.csta_events import CstaNormalizer
from ctilink.ami.normalizer import new_call_id
from ctilink.csta.operations import CstaError
from ctilink.model import events as ev
from ctilink.routing.static import RouteDecision, RouteQuery, Router, Routes

log = logging.getLogger(__name__)

TIMER_MARGIN: Final = 0.2  # answer this long before the switch's routeing timer expires
NO_ROUTE: Final = ("operation", "generic")
ANSWER_WAIT: Final = 2.0  # how long a refusal of our route select may take to come back

Invoke = Callable[[str, Any, float], "Deferred[Any]"]


@dataclass
class Dialogue:
    cross_ref: bytes
    register_id: bytes | None
    query: RouteQuery
    routing: Deferred[Any] | None = None
    fell_back: bool = False


class CstaRouting:
    def __init__(
        self,
        switch: str,
        normalizer: CstaNormalizer,
        publish: Callable[[ev.Event], object],
        clock: IReactorTime | None,
        invoke: Invoke | None,
        *,
        router: Router | None,
        fallback: RouteDecision | None,
        budget: float,
        now: Callable[[], float] | None = None,
    ) -> None:
        """Without ``invoke`` (a replay) requests are only reported: nothing is answered."""
        self.switch = switch
        self.normalizer = normalizer
        self._publish = publish
        self._clock = clock
        self._invoke = invoke
        self._now = now or (clock.seconds if clock is not None else lambda: 0.0)
        self.router = router
        self._fallback = fallback
        self.budget = budget
        self.pending: dict[bytes, Dialogue] = {}
        self.registrations: dict[str, bytes] = {}  # route point -> routeRegisterReqID
        self.answered = 0
        self.fallbacks = 0
        self.ended = 0

    @property
    def fallback(self) -> RouteDecision | None:
        """The route answered when the router cannot: a ``Routes`` router's default route
        in force (a reload may swap it), else the one given."""
        if isinstance(self.router, Routes):
            return self.router.fallback
        return self._fallback

    @fallback.setter
    def fallback(self, decision: RouteDecision | None) -> None:
        if isinstance(self.router, Routes):
            raise AttributeError("the fallback is the Routes' default route: set it there")
        self._fallback = decision

    # -- the switch asks -------------------------------------------------------------------
    def route_request(self, argument: dict[str, Any]) -> None:
        cross_ref: bytes = argument["crossRefIdentifier"]
        current = values.device_of(argument.get("currentRoute"))
        point = values.device_of(argument.get("routeingDevice")) or current
        switch_id, _ = values.connection_parts(argument.get("routedCall"))
        call = self.normalizer.book.start(switch_id) if switch_id is not None else None
        data = {"cross_ref": cross_ref.hex()}
        if current is not None:
            data["current_route"] = current
        correlator = values.octets_text(argument.get("correlatorData"))
        if correlator is not None:
            data["correlator_data"] = correlator
        query = RouteQuery(
            switch=self.switch,
            call_id=call.call_id if call is not None else new_call_id(),
            calling_number=values.device_of(argument.get("callingDevice")),
            called_number=current,
            route_point=point,
            data={**(call.data if call is not None else {}), **data},
        )
        dialogue = Dialogue(cross_ref, argument.get("routeRegisterReqID"), query)
        self._cancel(self.pending.pop(cross_ref, None))
        self.pending[cross_ref] = dialogue
        self._publish_event(ev.RouteRequest, query, route_data=data)
        if self._invoke is None or self._clock is None:
            return  # replaying: the recorded client's answer is not ours to give
        if self.router is None:  # the configured static route is the answer
            why = None if self.fallback is not None else "no router is configured"
            self._answer(dialogue, self.fallback, why)
            return
        budget = self.budget
        timer = argument.get("replyTimeout")
        if isinstance(timer, int) and timer > 0:
            budget = max(0.05, min(budget, timer - TIMER_MARGIN))
        routing: Deferred[Any] = maybeDeferred(self.router.route, query)
        if not routing.called:
            routing.addTimeout(budget, self._clock)
            dialogue.routing = routing
        routing.addBoth(self._routed, dialogue, budget)

    def _routed(self, result: object, dialogue: Dialogue, budget: float) -> None:
        dialogue.routing = None
        if self.pending.get(dialogue.cross_ref) is not dialogue:
            return  # ended meanwhile; this also swallows the router's failure
        if isinstance(result, RouteDecision):
            self._answer(dialogue, result, None)
        elif isinstance(result, Failure) and result.check(TimeoutError):
            self._answer(dialogue, None, f"the router did not answer within {budget:g} s")
        elif isinstance(result, Failure):
            why = f"{type(result.value).__name__}: {result.getErrorMessage()}"
            self._answer(dialogue, None, f"the router failed: {why}")
        else:
            self._answer(dialogue, None, f"the router answered {result!r}, not a RouteDecision")

    def re_route(self, argument: dict[str, Any]) -> None:
        dialogue = self.pending.get(argument["crossRefIdentifier"])
        if dialogue is None:
            self._end(argument["crossRefIdentifier"], argument.get("routeRegisterReqID"))
            return
        why = "the switch asked to re-route"
        if dialogue.fell_back or self.fallback is None:
            self._warn(dialogue, f"{why} and there is no other destination; ending the dialogue")
            self._end(dialogue.cross_ref, dialogue.register_id)
            return
        self._answer(dialogue, None, why)

    def route_end(self, argument: dict[str, Any]) -> None:
        dialogue = self.pending.pop(argument["crossRefIdentifier"], None)
        if dialogue is None:
            return
        self._cancel(dialogue)
        call = self.normalizer.book.calls.get(dialogue.query.call_id)
        if call is not None and not call.announced:
            self.normalizer.book.forget(call)  # routed away before any event: not ours

    def reset(self) -> None:
        """The link is gone: every dialogue with it is over."""
        pending, self.pending = self.pending, {}
        for dialogue in pending.values():
            self._cancel(dialogue)
        self.registrations.clear()

    # -- answering -------------------------------------------------------------------------
    def _answer(self, dialogue: Dialogue, decision: RouteDecision | None, why: str | None) -> None:
        if decision is None or why is not None:
            decision = self.fallback
            self.fallbacks += 1
            dialogue.fell_back = True
            if decision is None:
                self._warn(dialogue, f"{why}; no fallback route: ending the dialogue")
                self._end(dialogue.cross_ref, dialogue.register_id)
                return
            self._warn(dialogue, f"{why}; answering the fallback {decision.destination}")
        destination = (
            self.normalizer.agents.device_of(decision.agent) if decision.agent else decision.queue
        )
        assert destination is not None
        argument: dict[str, Any] = {
            "crossRefIdentifier": dialogue.cross_ref,
            "routeSelected": values.device_id(destination),
            "routeUsedReq": False,
        }
        if dialogue.register_id is not None:
            argument["routeRegisterReqID"] = dialogue.register_id
        self._send("routeSelectRequest", argument, dialogue.query)
        self.answered += 1
        self._publish_event(
            ev.RouteSelected,
            dialogue.query,
            destination=decision.destination,
            priority=decision.priority,
            rule=decision.rule,
        )

    def _end(self, cross_ref: bytes, register_id: bytes | None) -> None:
        self.ended += 1
        argument: dict[str, Any] = {"crossRefIdentifier": cross_ref, "errorValue": NO_ROUTE}
        if register_id is not None:
            argument["routeRegisterReqID"] = register_id
        self._send("routeEndRequest", argument, None)

    def _send(self, operation: str, argument: dict[str, Any], query: RouteQuery | None) -> None:
        def refused(failure: Failure) -> None:
            if isinstance(failure.value, CstaError) and failure.value.code == "link_down":
                return  # sent; the link went before the time for an error ran out
            where = f" for call {query.call_id}" if query is not None else ""
            log.warning(
                "switch %s: %s%s failed: %s",
                self.switch,
                operation,
                where,
                failure.getErrorMessage(),
            )

        if self._invoke is not None:
            self._invoke(operation, argument, ANSWER_WAIT).addErrback(refused)

    @staticmethod
    def _cancel(dialogue: Dialogue | None) -> None:
        if dialogue is not None and dialogue.routing is not None:
            routing, dialogue.routing = dialogue.routing, None
            routing.cancel()

    def _warn(self, dialogue: Dialogue, message: str) -> None:
        point = dialogue.query.route_point or "?"
        log.warning(
            "switch %s: route request at %s (call %s): %s",
            self.switch,
            point,
            dialogue.query.call_id,
            message,
        )

    def _publish_event(
        self, cls: type[ev.RouteRequest | ev.RouteSelected], query: RouteQuery, **extra: Any
    ) -> None:
        try:
            self._publish(
                cls(
                    switch=self.switch,
                    time=self._now(),
                    call_id=query.call_id,
                    device=query.route_point,
                    calling_number=query.calling_number,
                    called_number=query.called_number,
                    connection_state=None,
                    **extra,
                )
            )
        except Exception:
            log.exception("switch %s: publishing %s failed", self.switch, cls.TYPE)
