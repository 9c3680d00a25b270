"""The routing service: a ``Router`` deciding from the customer database and live state.

Theory of operation
-------------------
``RoutingService.route(query)`` answers a route request with a ``RouteDecision`` and always
answers (rule ``fallback``: the configured default route) when the database cannot:

1. The tenant is the switch's (``tenants``); the caller key is the account number from the
   route data or the call's data (``account_keys``) and the calling number in E.164.
2. Strategies run (``ctilink.routing.strategies``) against the reference snapshot (queues,
   skills: in memory, see ``reference``), the state tracker (read-only: agents' states and
   ``since``, queues' waiting calls; never the database) and the caller as the directory's
   cache knows them. When all of that is in memory the decision is made synchronously and
   the Deferred has fired on return.
3. Otherwise (a strategy needs a caller that is not cached, or the reference is not loaded
   yet) the lookup runs on the asyncio loop under ``lookup_timeout`` seconds (the routing
   budget's share for the database, see ``[routing] lookup_timeout_ms``), then the
   strategies run again with the answer.
4. A lookup that fails or times out answers the default route at once, and the first
   failure logs one ERROR for the outage. Then the breaker: after an error (connection
   refused or lost...) or ``breaker_after`` timeouts in a row (one slow lookup on a loaded
   machine is no outage), requests stop waiting for the database: one request at a time
   probes it after a backoff (``retry_initial`` doubling up to ``retry_max``) while the
   others get the default route immediately. The first success logs the recovery at
   WARNING with how many calls got the default route meanwhile. ``fallbacks`` counts them.
5. Every answer, fallbacks included, goes to the audit (``DecisionAudit``) with its steps,
   candidates and latency, after the decision: writing it never delays the answer.

A bug in a strategy is not an outage: it fails the Deferred, and the FastAGI server logs
it and answers its own fallback.

``decide(query, now, live)`` is the same decision without the budget, the breaker or the
audit, for ``ctilink route simulate`` (what would be decided, writing nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

from ctilink.config import RoutingConfig
from ctilink.db import failure_reason, masked
from ctilink.reactor import deferred
from ctilink.routing.audit import DecisionAudit, decision_row
from ctilink.routing.directory import Caller, CallerKey, CustomerDirectory
from ctilink.routing.numbers import NumberNormalizer
from ctilink.routing.reference import Reference, load_reference, read_revision
from ctilink.routing.static import RouteDecision, RouteQuery
from ctilink.routing.strategies import Evaluation, LiveView, NeedCaller, evaluate

log = logging.getLogger(__name__)


class NoRoute(Exception):
    """Nothing to answer: no decision and no default route configured."""


@dataclass
class Outcome:
    """A decision with its reasons (what the audit stores)."""

    decision: RouteDecision | None
    rule: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    caller: Caller | None = None


def caller_key(
    query: RouteQuery,
    tenant: str,
    live: LiveView,
    normalizer: NumberNormalizer,
    account_keys: tuple[str, ...],
) -> CallerKey:
    """Who to look up for ``query``: the IVR account (route data, then call data), the number."""
    call = live.calls.get(query.call_id)
    account = None
    for source in (query.data, call.data if call is not None else {}):
        account = next((source[k] for k in account_keys if source.get(k)), None)
        if account:
            break
    return CallerKey(tenant, account, normalizer.normalize(query.calling_number))


class RoutingService:
    """A ``Router`` (see the module docstring)."""

    def __init__(
        self,
        settings: RoutingConfig,
        engine: AsyncEngine,
        directory: CustomerDirectory,
        live: LiveView,
        clock: IReactorTime,
        *,
        tenants: Mapping[str, str] | None = None,
        normalizer: NumberNormalizer | None = None,
        audit: DecisionAudit | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 5.0,
        breaker_after: int = 3,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.directory = directory
        self.live = live
        self.clock = clock
        self.tenants = dict(tenants or {})
        self.normalizer = normalizer or NumberNormalizer(
            settings.default_region, settings.trunk_prefix
        )
        self.audit = audit
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.breaker_after = breaker_after
        self.reference: Reference | None = None
        self.reconfigure(settings)
        self.decisions = 0  # requests answered (fallbacks included)
        self.fallbacks = 0  # answered with the default route because of the database
        self.rules: Counter[str] = Counter()
        self._failures = 0  # failed lookups in a row
        self.errors = 0  # failed lookups since start (a metric)
        self._trips = 0  # times the breaker opened in this outage
        self._tripped = False  # requests do not wait for the database (but the probe)
        self._retry_at = 0.0
        self._outage_since = 0.0
        self._outage_fallbacks = 0
        self._probing = False

    def reconfigure(self, settings: RoutingConfig) -> None:
        """Rules, thresholds, lookup timeout and default route from ``settings`` (a
        reload), from the next decision on."""
        self.settings = settings
        self.lookup_timeout = settings.lookup_timeout
        self.default: RouteDecision | None = None
        if settings.default_queue is not None or settings.default_agent is not None:
            self.default = RouteDecision(
                settings.default_queue,
                settings.default_agent,
                settings.default_priority,
                "fallback",
            )

    def tenant(self, switch: str) -> str:
        return self.tenants.get(switch, "default")

    # -- the Router --------------------------------------------------------------------------
    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        started = time.perf_counter()
        now = self.clock.seconds()
        tenant = self.tenant(query.switch)
        try:
            if self._tripped and (self._probing or now < self._retry_at):
                return succeed(self._fallback(query, tenant, now, started, "database unavailable"))
            key = caller_key(query, tenant, self.live, self.normalizer, self.settings.account_keys)
            if self.reference is not None:
                try:
                    outcome = self._evaluate(query, tenant, now, self.reference, key, None)
                except NeedCaller:
                    pass
                else:
                    return succeed(self._answer(query, tenant, now, started, outcome))
        except Exception as exc:  # NoRoute, or a bug: the caller answers its fallback
            return fail(exc)
        need_caller = self.reference is not None  # it was evaluated: the caller is missing
        return deferred(self._route_async(query, tenant, now, started, key, need_caller))

    async def _route_async(
        self,
        query: RouteQuery,
        tenant: str,
        now: float,
        started: float,
        key: CallerKey,
        need_caller: bool,
    ) -> RouteDecision:
        probe = self._tripped  # the one request trying the database while the breaker is open
        self._probing = self._probing or probe
        try:
            async with asyncio.timeout(self.lookup_timeout):
                reference = await self._reference()
                caller = await self.directory.lookup(key) if need_caller else None
                try:
                    outcome = self._evaluate(query, tenant, now, reference, key, caller)
                except NeedCaller:
                    caller = await self.directory.lookup(key)
                    outcome = self._evaluate(query, tenant, now, reference, key, caller)
        except Exception as exc:
            if not _is_database_error(exc):
                raise
            self._note_failure(exc, now)
            return self._fallback(query, tenant, now, started, self._reason(exc))
        finally:
            if probe:
                self._probing = False
        self._note_success()
        return self._answer(query, tenant, now, started, outcome)

    async def _reference(self) -> Reference:
        if self.reference is None:
            async with self.engine.connect() as connection:
                self.reference = await load_reference(connection)
        return self.reference

    def _evaluate(
        self,
        query: RouteQuery,
        tenant: str,
        now: float,
        reference: Reference,
        key: CallerKey,
        caller: Caller | None,
        live: LiveView | None = None,
    ) -> Outcome:
        if caller is None:
            caller = self.directory.peek(key)
        ev = Evaluation(
            query, tenant, now, self.settings, reference, live or self.live, caller=caller
        )
        decision = evaluate(ev)
        rule = decision.rule if decision is not None else "none"
        return Outcome(decision, rule, ev.steps, ev.candidates, caller)

    def _answer(
        self, query: RouteQuery, tenant: str, now: float, started: float, outcome: Outcome
    ) -> RouteDecision:
        """The decision of ``outcome``, or the default route; recorded. NoRoute: neither."""
        decision = outcome.decision
        fallback = False
        if decision is None:
            outcome.steps.append(
                {"strategy": "default", "outcome": "default", "detail": "no queue nor agent"}
            )
            decision, fallback = self.default, True
            if decision is not None:
                decision = RouteDecision(
                    decision.queue, decision.agent, decision.priority, "default"
                )
        self._record(query, tenant, now, started, decision, outcome, fallback)
        if decision is None:
            raise NoRoute(f"no route for call {query.call_id} and no default route")
        return decision

    def _fallback(
        self, query: RouteQuery, tenant: str, now: float, started: float, why: str
    ) -> RouteDecision:
        """The default route because of the database; recorded. NoRoute: none configured."""
        self.fallbacks += 1
        self._outage_fallbacks += 1
        step = {"strategy": "database", "outcome": "unavailable", "detail": why}
        outcome = Outcome(self.default, "fallback", [step])
        self._record(query, tenant, now, started, self.default, outcome, True)
        if self.default is None:
            raise NoRoute(f"the database is unavailable ({why}) and no default route")
        return self.default

    def _record(
        self,
        query: RouteQuery,
        tenant: str,
        now: float,
        started: float,
        decision: RouteDecision | None,
        outcome: Outcome,
        fallback: bool,
    ) -> None:
        latency = time.perf_counter() - started
        rule = decision.rule if decision is not None else "none"
        self.decisions += 1
        self.rules[rule] += 1
        if self.audit is not None:
            self.audit.add(
                decision_row(
                    query,
                    tenant,
                    now,
                    decision,
                    rule=rule,
                    steps=outcome.steps,
                    candidates=outcome.candidates,
                    latency=latency,
                    fallback=fallback,
                )
            )

    # -- outages -----------------------------------------------------------------------------
    def _reason(self, exc: BaseException) -> str:
        return failure_reason(exc, self.engine, self.lookup_timeout)

    def _note_failure(self, exc: BaseException, now: float) -> None:
        self._failures += 1
        self.errors += 1
        if (
            self._tripped
            or not isinstance(exc, TimeoutError)
            or (self._failures >= self.breaker_after)
        ):
            self._trips += 1
            self._tripped = True
            self._retry_at = now + min(self.retry_max, self.retry_initial * 2 ** (self._trips - 1))
        if self._failures == 1:
            self._outage_since = now
            self._outage_fallbacks = 0
            default = self.default.destination if self.default is not None else "nothing"
            log.error(
                "routing: the customer database %s is unavailable (%s); answering the default"
                " route (%s) until a lookup succeeds again",
                masked(self.engine.url),
                self._reason(exc),
                default,
            )
        else:
            log.debug("routing: database probe %d failed: %s", self._failures, self._reason(exc))

    def _note_success(self) -> None:
        if not self._failures:
            return
        log.warning(
            "routing: the customer database answers again after %.1f s; %d calls got the"
            " default route meanwhile",
            self.clock.seconds() - self._outage_since,
            self._outage_fallbacks,
        )
        self._failures = self._trips = 0
        self._tripped = False

    @property
    def failing(self) -> bool:
        return self._failures > 0

    # -- reference refresh and what-if -----------------------------------------------------
    async def refresh(self) -> bool:
        """Reload queues and agents and clear the caller cache if the directory changed
        (``directory_revision``) since the last load; True if it did."""
        async with self.engine.connect() as connection:
            revision = await read_revision(connection)
            if self.reference is not None and revision == self.reference.revision:
                return False
            reference = await load_reference(connection)
        changed = self.reference is not None
        self.reference = reference
        if changed:
            self.directory.clear()
            log.info("routing: directory revision %d: queues and agents reloaded", revision)
        return True

    async def decide(self, query: RouteQuery, now: float, live: LiveView) -> Outcome:
        """What would be decided for ``query`` at ``now`` given ``live`` (no audit, no
        budget: database errors propagate)."""
        tenant = self.tenant(query.switch)
        key = caller_key(query, tenant, live, self.normalizer, self.settings.account_keys)
        reference = await self._reference()
        try:
            return self._evaluate(query, tenant, now, reference, key, None, live)
        except NeedCaller:
            caller = await self.directory.lookup(key)
            return self._evaluate(query, tenant, now, reference, key, caller, live)


def _is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | sa.exc.SQLAlchemyError | OSError | ConnectionError)
