"""Real-time statistics: per queue and per agent, from model events only.

Theory of operation
-------------------
``Statistics`` is a hub consumer. The hub applies every event to the state tracker before
any consumer sees it, so the *live* figures are read from the tracker (the single owner of
live state): calls waiting and the longest wait from its queue records, agents ready / busy
/ not ready / in wrap-up from its agent records and their queue memberships. The
*counters* are kept here, from the events themselves, so they work for every switch kind:

* ``queued`` starts a call's wait in a queue (a repeated ``queued`` for the same queue, a
  position update, keeps the first time) and counts the call as offered there;
* ``established`` of a waiting call answers it: the wait (entering the queue → established)
  adds to the average speed of answer, and the call counts as answered within target when
  that wait is at most the queue's service-level target;
* the caller leaving while the call waits (``connection_cleared`` of the calling party or
  cause ``abandoned``, or ``call_cleared``) abandons it, unless the cause is ``resync`` (the
  link came back and the call was gone: its fate is unknown);
* ``diverted`` away from the queue, or a merge into another call, ends the wait uncounted;
* ``established`` with ``agent`` counts one handled call for that agent (once per call).

Service level = answered within target / (answered + abandoned), in percent. Counters run
from construction (or ``reset``) and are in memory only.

Publishing: an event marks the queues and agents it touches dirty. A flush (on the
injected clock, never inside the hub's consumer call, so the stream stays in seq order)
computes each dirty item's figures and publishes ``queue_stats`` / ``agent_stats`` when
they differ from what was last published for it, at most once per ``min_interval`` per
queue or agent. Time-based figures (longest wait, time in state) are reported as of the
flush but are not by themselves a reason to publish; clients tick them on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.records import AgentRecord
from ctilink.model.states import AgentState
from ctilink.model.wire import iso_time

log = logging.getLogger(__name__)

DEFAULT_TARGET = 20.0  # seconds: the classic 80/20 service level's 20
MIN_INTERVAL = 1.0  # seconds between two publications for one queue or agent
# Fields that follow the clock, not events: reported, never compared.
_VOLATILE = frozenset({"seq", "time", "longest_wait_seconds", "seconds_in_state"})

QueueKey = tuple[str, str]  # (switch, queue)
AgentKey = tuple[str, str]  # (switch, agent)


@dataclass
class QueueCounters:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    within_target: int = 0
    answer_wait_total: float = 0.0


@dataclass
class _Wait:
    switch: str
    queue: str
    since: float


class Statistics:
    """Hub consumer keeping queue and agent statistics; publishes them when they change."""

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        *,
        service_level_target: float = DEFAULT_TARGET,
        targets: Mapping[str, float] | None = None,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        self.hub = hub
        self.tracker = hub.tracker
        self.clock = clock
        self.service_level_target = service_level_target
        self.targets = dict(targets or {})  # per queue name
        self.min_interval = min_interval
        self.since = clock.seconds()
        self.counters: dict[QueueKey, QueueCounters] = {}
        self.handled: dict[AgentKey, int] = {}
        self._waits: dict[str, _Wait] = {}  # call id -> its wait in a queue
        self._answered_by: dict[str, set[str]] = {}  # call id -> agents counted for it
        self._agent_queues: dict[AgentKey, set[str]] = {}  # memberships last seen
        self._dirty: set[tuple[str, Hashable]] = set()  # ("queue"|"agent", key)
        self._sent: dict[tuple[str, Hashable], tuple[float, dict[str, Any]]] = {}
        self._timer: IDelayedCall | None = None
        self.published = 0
        self._handlers: dict[type[ev.Event], Callable[[Any], None]] = {
            ev.Queued: self._on_queued,
            ev.Established: self._on_established,
            ev.Diverted: self._on_diverted,
            ev.ConnectionCleared: self._on_connection_cleared,
            ev.CallCleared: self._on_call_cleared,
            ev.Transferred: self._on_merged,
            ev.Conferenced: self._on_merged,
        }
        self._unsubscribe = hub.subscribe(self)

    def close(self) -> None:
        self._unsubscribe()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def reset(self) -> None:
        """Start the counters again (e.g. at the start of a business day)."""
        self.since = self.clock.seconds()
        self.counters.clear()
        self.handled.clear()
        for queue in self.queue_keys():
            self._mark(("queue", queue))
        for agent in self.tracker.agents:
            self._mark(("agent", agent))

    # -- events ----------------------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.AgentEvent):
            self._on_agent(event)
        else:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(event)

    def _target(self, queue: str) -> float:
        return self.targets.get(queue, self.service_level_target)

    def _counters(self, switch: str, queue: str) -> QueueCounters:
        key = (switch, queue)
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = QueueCounters()
        return counters

    def _mark_queue(self, switch: str, queue: str) -> None:
        self._mark(("queue", (switch, queue)))

    def _end_wait(self, call_id: str) -> _Wait | None:
        wait = self._waits.pop(call_id, None)
        if wait is not None:
            self._mark_queue(wait.switch, wait.queue)
        return wait

    def _on_queued(self, event: ev.Queued) -> None:
        queue = event.queue or event.device
        if queue is None:
            return
        wait = self._waits.get(event.call_id)
        if wait is not None and (wait.switch, wait.queue) == (event.switch, queue):
            self._mark_queue(event.switch, queue)  # a position update: same wait
            return
        self._end_wait(event.call_id)
        self._waits[event.call_id] = _Wait(event.switch, queue, event.time)
        self._counters(event.switch, queue).offered += 1
        self._mark_queue(event.switch, queue)

    def _on_established(self, event: ev.Established) -> None:
        wait = self._end_wait(event.call_id)
        if wait is not None:
            counters = self._counters(wait.switch, wait.queue)
            waited = max(0.0, event.time - wait.since)
            counters.answered += 1
            counters.answer_wait_total += waited
            if waited <= self._target(wait.queue):
                counters.within_target += 1
        if event.agent:
            agents = self._answered_by.setdefault(event.call_id, set())
            if event.agent not in agents:
                agents.add(event.agent)
                key = (event.switch, event.agent)
                self.handled[key] = self.handled.get(key, 0) + 1
                self._mark(("agent", key))

    def _on_diverted(self, event: ev.Diverted) -> None:
        wait = self._waits.get(event.call_id)
        if wait is not None and wait.queue in (event.queue, event.device):
            self._end_wait(event.call_id)

    def _abandon(self, event: ev.CallEvent) -> None:
        wait = self._end_wait(event.call_id)
        if wait is not None and event.cause != "resync":
            self._counters(wait.switch, wait.queue).abandoned += 1

    def _on_connection_cleared(self, event: ev.ConnectionCleared) -> None:
        caller_left = event.device is not None and event.device == event.calling_number
        if event.call_id in self._waits and (caller_left or event.cause == "abandoned"):
            self._abandon(event)

    def _on_call_cleared(self, event: ev.CallCleared) -> None:
        self._abandon(event)
        self._answered_by.pop(event.call_id, None)

    def _on_merged(self, event: ev.Transferred | ev.Conferenced) -> None:
        if event.secondary_call_id:
            self._end_wait(event.secondary_call_id)
            self._answered_by.pop(event.secondary_call_id, None)

    def _on_agent(self, event: ev.AgentEvent) -> None:
        key = (event.switch, event.agent)
        self._mark(("agent", key))
        record = self.tracker.agents.get(key)
        now = set(record.queues) if record is not None else set()
        before = self._agent_queues.get(key, set())
        self._agent_queues[key] = now
        for queue in now | before | ({event.queue} if event.queue else set()):
            self._mark_queue(event.switch, queue)

    # -- figures ---------------------------------------------------------------------------
    def queue_keys(self) -> list[QueueKey]:
        keys = dict.fromkeys(self.tracker.queues)
        keys.update(dict.fromkeys(self.counters))
        return list(keys)

    def queue_stats(self, switch: str, queue: str, now: float) -> ev.QueueStats:
        record = self.tracker.queues.get((switch, queue))
        waiting = record.waiting if record is not None else []
        agents = {"ready": 0, "busy": 0, "not_ready": 0, "working_after_call": 0}
        for agent in self.tracker.agents.values():
            if agent.switch == switch and queue in agent.queues:
                state = _state_in_queue(agent, queue)
                if state is not None:
                    agents[state] += 1
        counters = self.counters.get((switch, queue)) or QueueCounters()
        finished = counters.answered + counters.abandoned
        return ev.QueueStats(
            switch=switch,
            time=now,
            queue=queue,
            calls_waiting=len(waiting),
            longest_wait_seconds=round(max(0.0, now - waiting[0].since), 3) if waiting else 0.0,
            agents_ready=agents["ready"],
            agents_busy=agents["busy"],
            agents_not_ready=agents["not_ready"],
            agents_working_after_call=agents["working_after_call"],
            calls_offered=counters.offered,
            calls_answered=counters.answered,
            calls_abandoned=counters.abandoned,
            answered_within_target=counters.within_target,
            service_level_target_seconds=self._target(queue),
            counters_since=iso_time(self.since),
            service_level_percent=(
                round(100.0 * counters.within_target / finished, 1) if finished else None
            ),
            average_speed_of_answer_seconds=(
                round(counters.answer_wait_total / counters.answered, 3)
                if counters.answered
                else None
            ),
        )

    def agent_stats(self, switch: str, agent: str, now: float) -> ev.AgentStats | None:
        record = self.tracker.agents.get((switch, agent))
        if record is None:
            return None
        return ev.AgentStats(
            switch=switch,
            time=now,
            agent=agent,
            state=record.state,
            state_since=iso_time(record.since),
            seconds_in_state=round(max(0.0, now - record.since), 3),
            calls_handled=self.handled.get((switch, agent), 0),
            queues=tuple(record.queues),
            reason=record.reason,
            agent_name=record.agent_name,
            device=record.device,
        )

    def all_queue_stats(self, now: float) -> list[ev.QueueStats]:
        return [self.queue_stats(switch, queue, now) for switch, queue in self.queue_keys()]

    def all_agent_stats(self, now: float) -> list[ev.AgentStats]:
        out = []
        for switch, agent in list(self.tracker.agents):
            stats = self.agent_stats(switch, agent, now)
            if stats is not None:
                out.append(stats)
        return out

    # -- publishing ------------------------------------------------------------------------
    def _due(self, item: tuple[str, Hashable]) -> float:
        sent = self._sent.get(item)
        return sent[0] + self.min_interval if sent is not None else 0.0

    def _mark(self, item: tuple[str, Hashable]) -> None:
        """``item`` changed: publish it when it is due (O(1): runs for every event)."""
        self._dirty.add(item)
        self._wake_at(self._due(item))

    def _wake_at(self, at: float) -> None:
        now = self.clock.seconds()
        at = max(at, now)
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= at:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(at - now, self.flush)

    def flush(self) -> None:
        """Publish the figures of every dirty queue and agent that is due and changed."""
        self._timer = None
        now = self.clock.seconds()
        for item in sorted(self._dirty, key=repr):
            if self._due(item) > now:
                continue
            self._dirty.discard(item)
            kind, key = item
            switch, name = cast(tuple[str, str], key)
            stats: ev.Event | None = (
                self.queue_stats(switch, name, now)
                if kind == "queue"
                else self.agent_stats(switch, name, now)
            )
            if stats is None:
                continue
            stable = _stable(stats)
            sent = self._sent.get(item)
            if sent is not None and sent[1] == stable:
                continue
            self._sent[item] = (now, stable)
            self.published += 1
            self.hub.publish(stats)
        if self._dirty:  # held back by the rate limit
            self._wake_at(min(self._due(item) for item in self._dirty))


def _state_in_queue(agent: AgentRecord, queue: str) -> str | None:
    """How an agent counts for one queue it is logged on to (None: not at all)."""
    member = agent.queues[queue]
    if agent.state is AgentState.LOGGED_OFF:
        return None
    if agent.state is AgentState.BUSY:
        return "busy"
    if agent.state is AgentState.WORKING_AFTER_CALL:
        return "working_after_call"
    if member.paused or agent.state is AgentState.NOT_READY:
        return "not_ready"
    return "ready"


def _stable(stats: ev.Event) -> dict[str, Any]:
    """The figures that only events change (what decides whether to publish)."""
    return {f.name: getattr(stats, f.name) for f in fields(stats) if f.name not in _VOLATILE}
