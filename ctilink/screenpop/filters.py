"""Who sees what on the event socket: tenants, token limits, client subscriptions.

Theory of operation
-------------------
Every event has an *audience*: the tenant of its switch and a set of keys naming what it
is about, ``("a", agent)``, ``("d", device)``, ``("q", queue)``, ``("c", call_id)``:

* a call event is about its call, its own ``device``/``agent``/``queue`` fields (ctilink
  repeats the call's queue and agent on every event of the call), every device connected
  to the call at that ``seq`` (including the one that just left, so a party sees its own
  ``connection_cleared`` and every party at the end sees ``call_cleared``), the secondary
  call and its parties for ``transferred``/``conferenced``, and the agent logged on at
  each of those devices;
* an agent event is about the agent, its device and the queues it belongs to;
* a link event is about nothing but its switch: every client of the tenant sees it.

A client's ``View`` is its token (tenant; ``agents``/``queues``/``devices`` limits, a union)
intersected with its ``Selection`` (the filter it asked for: event ``types`` and the same
kinds of selectors plus ``calls``, a union too). It sees an event when the tenants match,
the type is selected, and, for non-link events, the keys meet the limits (if any) and the
selectors (if any). A selection can only narrow: naming an agent, queue or device outside a
limited token's list of that kind is *forbidden* (403), which never reveals whether the
name exists in another tenant.

"Connected at that seq" needs history, because a resuming client filters events read back
from the event log. ``CallParties`` keeps, per call, the span of ``seq`` during which each
device was connected (mirroring the state tracker's rules: the caller of an arriving call,
route points and queues released, merges), for calls that ended up to ``history`` seconds
ago. It works on wire objects (``ctilink.model.wire``), so live events and events read
from the log go through the same code. After a daemon restart the previous run's calls
are learnt again from the log (``Audiences.past``, filled by ``ctilink.screenpop.resume``).
Limits apply the agent→device mapping known now, not the one at the time of the event.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ctilink.model.events import EVENT_TYPES, AgentEvent, CallEvent, LinkEvent
from ctilink.model.records import AgentRecord, CallRecord, QueueRecord
from ctilink.model.wire import snapshot_to_wire
from ctilink.screenpop.auth import Token, bad_request, forbidden
from ctilink.state import StateTracker

log = logging.getLogger(__name__)

Key = tuple[str, str]
Wire = Mapping[str, Any]

SELECTORS = {"agents": "a", "queues": "q", "devices": "d", "calls": "c"}
MAX_NAMES = 500  # names in one selector
MAX_NAME = 256  # characters in one name
# Calls the tracker does not create from these events (ctilink's remarks about a call).
_NOT_CREATING = frozenset({"call_cleared", "route_request", "route_selected", "screen_pop"})


def _family(type_: str) -> str:
    cls = EVENT_TYPES.get(type_)
    if cls is None:
        return "other"
    if issubclass(cls, CallEvent):
        return "call"
    if issubclass(cls, AgentEvent):
        return "agent"
    return "link" if issubclass(cls, LinkEvent) else "other"


# -- what a client asks for ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Selection:
    """A client's filter; ``None`` means "no restriction" for that kind."""

    types: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    queues: frozenset[str] | None = None
    devices: frozenset[str] | None = None
    calls: frozenset[str] | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, Sequence[str]]) -> Selection:
        """From query parameters: ``types=delivered,established&agents=6001``."""
        values: dict[str, frozenset[str]] = {}
        for name in ("types", *SELECTORS):
            raw = params.get(name)
            if raw is not None:
                values[name] = _names(name, [p for v in raw for p in v.split(",")])
        return cls(**values)._checked()

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Selection:
        """From a ``{"type": "subscribe", "types": [...], "agents": [...]}`` message."""
        unknown = set(message) - {"type", "types", *SELECTORS}
        if unknown:
            raise bad_request(f"unknown subscribe field {sorted(unknown)[0]!r}")
        values: dict[str, frozenset[str]] = {}
        for name in ("types", *SELECTORS):
            raw = message.get(name)
            if raw is None:
                continue
            if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
                raise bad_request(f"{name!r} must be a list of strings")
            values[name] = _names(name, raw)
        return cls(**values)._checked()

    def _checked(self) -> Selection:
        unknown = sorted((self.types or frozenset()) - set(EVENT_TYPES))
        if unknown:
            raise bad_request(f"unknown event type {unknown[0]!r}")
        return self

    @property
    def selectors(self) -> frozenset[Key] | None:
        keys = [(kind, name) for attr, kind in SELECTORS.items() for name in _or_empty(self, attr)]
        if all(getattr(self, attr) is None for attr in SELECTORS):
            return None
        return frozenset(keys)


def _or_empty(obj: Any, attr: str) -> frozenset[str]:
    value: frozenset[str] | None = getattr(obj, attr)
    return value if value is not None else frozenset()


def _names(name: str, raw: Iterable[str]) -> frozenset[str]:
    names = [value.strip() for value in raw]
    if not names or any(not value for value in names):
        raise bad_request(f"{name!r} has an empty value")
    if len(names) > MAX_NAMES or any(len(value) > MAX_NAME for value in names):
        raise bad_request(f"{name!r} is too long")
    return frozenset(names)


# -- what a client sees ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Audience:
    tenant: str | None
    type: str
    family: str
    keys: frozenset[Key]


@dataclass(frozen=True, slots=True)
class View:
    """A token and a selection, compiled. Hashable: clients with equal views share work."""

    tenant: str | None  # None: every tenant (authentication off)
    types: frozenset[str] | None
    limits: frozenset[Key] | None
    selectors: frozenset[Key] | None

    def sees(self, audience: Audience) -> bool:
        if self.tenant is not None and audience.tenant != self.tenant:
            return False
        if self.types is not None and audience.type not in self.types:
            return False
        return audience.family == "link" or self.reaches(audience.keys)

    def reaches(self, keys: frozenset[Key]) -> bool:
        """Whether something about ``keys`` (an event, a snapshot entry) is in view."""
        if self.limits is not None and self.limits.isdisjoint(keys):
            return False
        return self.selectors is None or not self.selectors.isdisjoint(keys)

    @property
    def everything(self) -> bool:
        return self.tenant is None and self.limits is None and self.selectors is None


def make_view(token: Token | None, selection: Selection) -> View:
    """The view of ``token`` (None: authentication off) asking for ``selection``.

    Raises ``AuthError`` 403 when the selection names an agent, queue or device outside
    the token's list of that kind.
    """
    if token is None:
        return View(None, selection.types, None, selection.selectors)
    limits: set[Key] = set()
    for attr, kind in SELECTORS.items():
        allowed: frozenset[str] | None = getattr(token, attr, None)
        if allowed is None:
            continue
        limits.update((kind, name) for name in allowed)
        outside = sorted(_or_empty(selection, attr) - allowed)
        if outside:
            raise forbidden(f"{attr} {', '.join(outside[:5])} not allowed for this token")
    return View(
        token.tenant, selection.types, frozenset(limits) if token.limited else None,
        selection.selectors,
    )  # fmt: skip


# -- who an event is about -------------------------------------------------------------
class _Call:
    """Device connection spans of one call: [device, first seq, last seq or None, state]."""

    __slots__ = ("ended", "first_seq", "open", "spans", "switch")

    def __init__(self, switch: str, first_seq: int) -> None:
        self.switch = switch
        self.first_seq = first_seq
        self.spans: list[list[Any]] = []
        self.open: dict[str, list[Any]] = {}
        self.ended: int | None = None

    def connect(self, device: str, state: str, seq: int, *, replace: bool = True) -> None:
        span = self.open.get(device)
        if span is None:
            span = [device, seq, None, state]
            self.spans.append(span)
            self.open[device] = span
        elif replace:
            span[3] = state

    def release(self, device: str, seq: int, only_state: str | None = None) -> None:
        span = self.open.get(device)
        if span is not None and (only_state is None or span[3] == only_state):
            span[2] = seq
            del self.open[device]

    def end(self, seq: int) -> None:
        for device in list(self.open):
            self.release(device, seq)
        self.ended = seq

    def devices_at(self, seq: int) -> Iterable[str]:
        return (s[0] for s in self.spans if s[1] <= seq and (s[2] is None or s[2] >= seq))


class CallParties:
    """Which devices each call had, seq by seq; the agents' devices and queues."""

    def __init__(self, history: float = 3600.0, max_calls: int = 100_000) -> None:
        self.history = history
        self.max_calls = max_calls
        self.calls: dict[str, _Call] = {}
        self.agent_at: dict[tuple[str, str], str] = {}  # (switch, device) -> agent
        self.memberships: dict[tuple[str, str], set[str]] = {}  # (switch, agent) -> queues
        self.members: dict[tuple[str, str], set[str]] = {}  # (switch, queue) -> agents
        self._ended: deque[tuple[float, str]] = deque()
        self.first_seq: int | None = None

    def seed(self, tracker: StateTracker) -> None:
        """Start from the tracker's live state (connections known since 'always')."""
        for record in tracker.calls.values():
            call = self.calls[record.call_id] = _Call(record.switch, 0)
            for device, state in record.connections.items():
                call.connect(device, state.value, 0)
        for agent in tracker.agents.values():
            self._agent_seen(agent.switch, agent.agent, agent.device)
            for queue in agent.queues:
                self._join(agent.switch, agent.agent, queue)

    def apply(self, wire: Wire, now: float) -> None:
        """Learn from one event (in seq order)."""
        if self.first_seq is None:
            self.first_seq = wire["seq"]
        family = _family(wire["type"])
        if family == "call":
            self._apply_call(wire, now)
        elif family == "agent":
            self._apply_agent(wire)

    def _apply_call(self, wire: Wire, now: float) -> None:
        call_id, type_, seq = wire["call_id"], wire["type"], wire["seq"]
        call = self.calls.get(call_id)
        if call is None or call.ended is not None:
            if type_ in _NOT_CREATING:
                return
            call = self.calls[call_id] = _Call(wire["switch"], seq)
        device, state = wire.get("device"), wire.get("connection_state")
        if device is not None and state is not None:
            if state == "null":
                call.release(device, seq)
            else:
                call.connect(device, state, seq)
        router = wire.get("last_redirection_device")
        if type_ in ("queued", "delivered") and router is not None:
            call.release(router, seq, only_state="alerting")
        if type_ == "delivered" and seq == call.first_seq and wire.get("calling_number"):
            call.connect(wire["calling_number"], "connected", seq, replace=False)
        elif type_ == "established":
            for span in list(call.open.values()):
                if span[3] == "queued":
                    call.release(span[0], seq)
        elif type_ == "diverted" and device is not None:
            call.release(device, seq)
        elif type_ in ("transferred", "conferenced"):
            self._merge(call, wire, now)
        elif type_ == "call_cleared":
            self._ended_now(call, call_id, seq, now)

    def _merge(self, call: _Call, wire: Wire, now: float) -> None:
        secondary = self.calls.get(wire.get("secondary_call_id") or "")
        if secondary is None or secondary.ended is not None:
            return
        seq = wire["seq"]
        for device, span in secondary.open.items():
            if not (wire["type"] == "transferred" and device == wire.get("device")):
                call.connect(device, span[3], seq, replace=False)
        self._ended_now(secondary, wire["secondary_call_id"], seq, now)

    def _ended_now(self, call: _Call, call_id: str, seq: int, now: float) -> None:
        call.end(seq)
        self._ended.append((now, call_id))
        self.prune(now)

    def prune(self, now: float) -> None:
        """Forget calls that ended more than ``history`` seconds ago (or the oldest ended
        ones beyond ``max_calls``)."""
        ended = self._ended
        while ended and (ended[0][0] < now - self.history or len(self.calls) > self.max_calls):
            _, call_id = ended.popleft()
            call = self.calls.get(call_id)
            if call is not None and call.ended is not None:
                del self.calls[call_id]

    def _apply_agent(self, wire: Wire) -> None:
        switch, agent, queue = wire["switch"], wire["agent"], wire.get("queue")
        self._agent_seen(switch, agent, wire.get("device"))
        if wire["type"] == "agent_logged_off":
            left = [queue] if queue is not None else list(self.memberships.get((switch, agent), ()))
            for name in left:
                self.memberships.get((switch, agent), set()).discard(name)
                self.members.get((switch, name), set()).discard(agent)
        elif queue is not None and wire["type"] in (
            "agent_logged_on", "agent_ready", "agent_not_ready",
        ):  # fmt: skip
            self._join(switch, agent, queue)

    def _join(self, switch: str, agent: str, queue: str) -> None:
        self.memberships.setdefault((switch, agent), set()).add(queue)
        self.members.setdefault((switch, queue), set()).add(agent)

    def _agent_seen(self, switch: str, agent: str, device: str | None) -> None:
        if device is not None:
            self.agent_at[(switch, device)] = agent

    def call_keys(self, wire: Wire) -> set[Key]:
        keys: set[Key] = {("c", wire["call_id"])}
        seq, switch = wire["seq"], wire["switch"]
        devices: set[str] = set()
        for call_id in (wire["call_id"], wire.get("secondary_call_id")):
            call = self.calls.get(call_id) if call_id else None
            if call is not None:
                devices.update(call.devices_at(seq))
            if call_id is not None:
                keys.add(("c", call_id))
        if wire.get("device") is not None:
            devices.add(wire["device"])
        for device in devices:
            keys.add(("d", device))
            agent = self.agent_at.get((switch, device))
            if agent is not None:
                keys.add(("a", agent))
        return keys

    def agent_keys(self, wire: Wire) -> set[Key]:
        switch, agent = wire["switch"], wire["agent"]
        keys: set[Key] = {("a", agent)}
        keys.update(("q", queue) for queue in self.memberships.get((switch, agent), ()))
        return keys


class Audiences:
    """The audience of each event, for live events and events read back from the log."""

    def __init__(self, tenants: Mapping[str, str] | None, history: float = 3600.0) -> None:
        self.tenants = tenants
        self.live = CallParties(history)
        self.past: CallParties | None = None  # the log before ``live.first_seq``
        self._unknown_switches: set[str] = set()

    def tenant(self, switch: str) -> str | None:
        if self.tenants is None:
            return None
        tenant = self.tenants.get(switch)
        if tenant is None and switch not in self._unknown_switches:
            self._unknown_switches.add(switch)
            log.warning("event socket: switch %r has no tenant; its events go to nobody", switch)
        return tenant

    def observe(self, wire: Wire, now: float) -> Audience:
        """A live event: learn from it, then say who it is about."""
        self.live.apply(wire, now)
        return self._audience(wire, self.live)

    def audience_of(self, wire: Wire) -> Audience:
        """An event read back from the log (already observed, or from a previous run)."""
        first = self.live.first_seq
        parties = self.live
        if self.past is not None and (first is None or wire["seq"] < first):
            parties = self.past
        return self._audience(wire, parties)

    def _audience(self, wire: Wire, parties: CallParties) -> Audience:
        type_ = wire["type"]
        family = _family(type_)
        if family == "call":
            keys = parties.call_keys(wire)
        elif family == "agent":
            keys = parties.agent_keys(wire)
        else:
            keys = set()
        for name, kind in (("device", "d"), ("agent", "a"), ("queue", "q"), ("call_id", "c")):
            value = wire.get(name)
            if isinstance(value, str):
                keys.add((kind, value))
        if family == "other":  # ctilink's own (statistics, callbacks)
            queues = [v for v in wire.get("queues", ()) if isinstance(v, str)]
            keys.update(("q", queue) for queue in queues)
            # A queue's own figures go to its members too (an agent's wallboard).
            for kind, name in list(keys):
                if kind == "q" and wire.get("agent") is None:
                    members = parties.members.get((wire["switch"], name), ())
                    keys.update(("a", agent) for agent in members)
        return Audience(self.tenant(wire["switch"]), type_, family, frozenset(keys))


# -- the snapshot a view sees ----------------------------------------------------------
def snapshot_for(
    tracker: StateTracker, view: View, audiences: Audiences, now: float
) -> dict[str, Any]:
    """The tracker's snapshot with only the calls, agents, queues and links ``view`` sees."""
    if view.everything:
        return tracker.snapshot(now)

    def tenant_ok(switch: str) -> bool:
        return view.tenant is None or audiences.tenant(switch) == view.tenant

    agent_at = {(a.switch, a.device): a.agent for a in tracker.agents.values() if a.device}
    members: dict[tuple[str, str], set[str]] = {}
    for agent in tracker.agents.values():
        for queue in agent.queues:
            members.setdefault((agent.switch, queue), set()).add(agent.agent)

    def call_seen(call: CallRecord) -> bool:
        keys: set[Key] = {("c", call.call_id)}
        for device in call.connections:
            keys.add(("d", device))
            if (call.switch, device) in agent_at:
                keys.add(("a", agent_at[(call.switch, device)]))
        if call.agent is not None:
            keys.add(("a", call.agent))
        if call.queue is not None:
            keys.add(("q", call.queue))
        return tenant_ok(call.switch) and view.reaches(frozenset(keys))

    def agent_seen(agent: AgentRecord) -> bool:
        keys: set[Key] = {("a", agent.agent), *(("q", q) for q in agent.queues)}
        if agent.device is not None:
            keys.add(("d", agent.device))
        return tenant_ok(agent.switch) and view.reaches(frozenset(keys))

    def queue_seen(queue: QueueRecord) -> bool:
        agents = members.get((queue.switch, queue.queue), set())
        keys = frozenset({("q", queue.queue), *(("a", a) for a in agents)})
        return tenant_ok(queue.switch) and view.reaches(keys)

    return snapshot_to_wire(
        tracker.last_seq,
        now,
        [c for c in tracker.calls.values() if call_seen(c)],
        [a for a in tracker.agents.values() if agent_seen(a)],
        [q for q in tracker.queues.values() if queue_seen(q)],
        [link for link in tracker.links.values() if tenant_ok(link.switch)],
    )
