"""Prometheus metrics: what the daemon is doing, scraped at ``/metrics``.

Theory of operation
-------------------
``Metrics`` is a hub consumer with its own ``CollectorRegistry`` (not the process-global
one: tests and several daemons in one process stay apart). Counters that follow the
event stream are updated as events pass, with label children cached in dicts (a
``labels()`` call costs microseconds; a dict lookup a fraction of that). Gauges that
describe *state* (queues, agents, clients, the event log) are read from their owners at
scrape time by a custom collector, so they can never drift from the truth.

Families (names and units per Prometheus conventions):

    ctilink_link_up{switch}                      1 while the link is up
    ctilink_link_reconnects_total{switch}        link_up events after the first
    ctilink_events_in_total{switch,type}         model events published
    ctilink_events_out_total                     events written to event-socket clients
    ctilink_clients_connected                    event-socket clients
    ctilink_slow_clients_closed_total            clients closed for falling behind (4408)
    ctilink_clients_resumed_total                reconnections caught up from the event log
    ctilink_clients_gaps_total                   resumes too old: gap + snapshot instead
    ctilink_clients_refused_total{status}        handshakes refused (400, 401, 403)
    ctilink_route_requests_total{switch}         route requests (FastAGI, CSTA routeRequest)
    ctilink_route_fallbacks_total{switch}        requests answered with the default route
    ctilink_route_decision_seconds{switch}       request → decision latency (histogram)
    ctilink_screen_pops_total{switch}            screen pops published
    ctilink_queue_calls_waiting{switch,queue}    calls waiting now
    ctilink_queue_longest_wait_seconds{...}      the longest current wait
    ctilink_agents{switch,state}                 agents by CSTA state
    ctilink_calls_live{switch}                   calls the tracker holds now
    ctilink_event_log_written_total              events stored in the database
    ctilink_event_log_dropped_total              events the event log had to drop
    ctilink_database_up                          0 while the event log cannot write
    ctilink_database_errors_total{component}     failed writes and lookups (event_log, routing,
                                                 audit, interactions)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.state import StateTracker

# The default route's rule names (the FastAGI fallback and the routing service's).
FALLBACK_RULES = frozenset({"default", "fallback"})
DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Hub consumer and owner of the daemon's metric registry."""

    def __init__(self, tracker: StateTracker, now: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tracker = tracker
        self._now = now
        self._events_in = PromCounter(
            "ctilink_events_in",
            "Model events published",
            ["switch", "type"],
            registry=self.registry,
        )
        self._reconnects = PromCounter(
            "ctilink_link_reconnects",
            "Links re-established after the first link_up",
            ["switch"],
            registry=self.registry,
        )
        self._route_requests = PromCounter(
            "ctilink_route_requests",
            "Route requests received",
            ["switch"],
            registry=self.registry,
        )
        self._fallbacks = PromCounter(
            "ctilink_route_fallbacks",
            "Route requests answered with the default route",
            ["switch"],
            registry=self.registry,
        )
        self._pops = PromCounter(
            "ctilink_screen_pops", "Screen pops published", ["switch"], registry=self.registry
        )
        self._decisions = Histogram(
            "ctilink_route_decision_seconds",
            "Route request to decision",
            ["switch"],
            buckets=DECISION_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], Any] = {}
        self._requests: dict[str, float] = {}  # call id -> route request time
        self._links: dict[str, bool] = {}
        self._ups: Counter[str] = Counter()
        self.sources = _Sources()
        self.registry.register(_StateCollector(self))
        self._handlers: dict[type[ev.Event], Callable[[Any], None]] = {
            ev.LinkUp: self._link_up,
            ev.LinkDown: self._link_down,
            ev.RouteRequest: self._route_request,
            ev.RouteSelected: self._route_selected,
            ev.ScreenPop: self._screen_pop,
        }

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def __call__(self, event: ev.Event) -> None:
        self._child(self._events_in, event.switch, event.TYPE).inc()
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _link_up(self, event: ev.LinkUp) -> None:
        self._links[event.switch] = True
        self._ups[event.switch] += 1
        if self._ups[event.switch] > 1:
            self._child(self._reconnects, event.switch).inc()

    def _link_down(self, event: ev.LinkDown) -> None:
        self._links[event.switch] = False

    def _route_request(self, event: ev.RouteRequest) -> None:
        self._child(self._route_requests, event.switch).inc()
        self._requests[event.call_id] = event.time
        if len(self._requests) > 10_000:  # requests never answered must not pile up
            self._requests.pop(next(iter(self._requests)))

    def _route_selected(self, event: ev.RouteSelected) -> None:
        asked = self._requests.pop(event.call_id, None)
        if asked is not None:
            self._child(self._decisions, event.switch).observe(max(0.0, event.time - asked))
        if event.rule in FALLBACK_RULES:
            self._child(self._fallbacks, event.switch).inc()

    def _screen_pop(self, event: ev.ScreenPop) -> None:
        self._child(self._pops, event.switch).inc()

    def link_states(self) -> dict[str, bool]:
        return dict(self._links)


class _Sources:
    """Where scrape-time values come from; the daemon fills these in once wired."""

    def __init__(self) -> None:
        self.clients: Callable[[], int] = lambda: 0
        self.events_out: Callable[[], int] = lambda: 0
        self.slow_clients: Callable[[], int] = lambda: 0
        self.resumed: Callable[[], int] = lambda: 0
        self.gaps: Callable[[], int] = lambda: 0
        self.refused: Callable[[], Mapping[int, int]] = dict
        self.log_written: Callable[[], int] = lambda: 0
        self.log_dropped: Callable[[], int] = lambda: 0
        self.database_up: Callable[[], bool] = lambda: True
        self.database_errors: Callable[[], Mapping[str, int]] = dict


class _StateCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        metrics, tracker, sources = self.metrics, self.metrics.tracker, self.metrics.sources
        up = GaugeMetricFamily(
            "ctilink_link_up", "1 while the link to the switch is up", labels=["switch"]
        )
        for switch, is_up in sorted(metrics.link_states().items()):
            up.add_metric([switch], 1.0 if is_up else 0.0)
        yield up
        waiting = GaugeMetricFamily(
            "ctilink_queue_calls_waiting", "Calls waiting in the queue", labels=["switch", "queue"]
        )
        longest = GaugeMetricFamily(
            "ctilink_queue_longest_wait_seconds",
            "Longest current wait in the queue",
            labels=["switch", "queue"],
        )
        now = metrics._now()
        for (switch, name), queue in sorted(tracker.queues.items()):
            waiting.add_metric([switch, name], len(queue.waiting))
            oldest = min((w.since for w in queue.waiting), default=now)
            longest.add_metric([switch, name], max(0.0, now - oldest))
        yield waiting
        yield longest
        agents = GaugeMetricFamily("ctilink_agents", "Agents by state", labels=["switch", "state"])
        counts: Counter[tuple[str, str]] = Counter(
            (agent.switch, agent.state.value) for agent in tracker.agents.values()
        )
        switches = {switch for switch, _ in counts} | {a.switch for a in tracker.agents.values()}
        for switch in sorted(switches):
            for state in AgentState:
                agents.add_metric([switch, state.value], counts[(switch, state.value)])
        yield agents
        calls = GaugeMetricFamily("ctilink_calls_live", "Calls in progress", labels=["switch"])
        per_switch: Counter[str] = Counter(call.switch for call in tracker.calls.values())
        for switch in sorted(set(per_switch) | set(metrics.link_states())):
            calls.add_metric([switch], per_switch[switch])
        yield calls
        yield GaugeMetricFamily(
            "ctilink_clients_connected", "Event-socket clients connected", value=sources.clients()
        )
        yield CounterMetricFamily(
            "ctilink_events_out",
            "Events written to event-socket clients",
            value=sources.events_out(),
        )
        yield CounterMetricFamily(
            "ctilink_slow_clients_closed",
            "Event-socket clients closed for falling behind",
            value=sources.slow_clients(),
        )
        yield CounterMetricFamily(
            "ctilink_clients_resumed",
            "Reconnecting clients caught up from the event log",
            value=sources.resumed(),
        )
        yield CounterMetricFamily(
            "ctilink_clients_gaps",
            "Resumes older than the event log: answered with gap and a snapshot",
            value=sources.gaps(),
        )
        refused = CounterMetricFamily(
            "ctilink_clients_refused",
            "Event-socket handshakes refused, by HTTP status",
            labels=["status"],
        )
        for status, count in sorted(sources.refused().items()):
            refused.add_metric([str(status)], count)
        yield refused
        yield CounterMetricFamily(
            "ctilink_event_log_written",
            "Events stored in the database",
            value=sources.log_written(),
        )
        yield CounterMetricFamily(
            "ctilink_event_log_dropped",
            "Events the event log dropped (buffer full during an outage)",
            value=sources.log_dropped(),
        )
        errors = CounterMetricFamily(
            "ctilink_database_errors",
            "Failed database operations, by component",
            labels=["component"],
        )
        for component, count in sorted(sources.database_errors().items()):
            errors.add_metric([component], count)
        yield errors
        yield GaugeMetricFamily(
            "ctilink_database_up",
            "0 while the database cannot be written",
            value=1.0 if sources.database_up() else 0.0,
        )
