"""Screen-pop acknowledgements: a client says it showed a pop; ctilink measures how long that took.

Theory of operation
-------------------
A client that displays a ``screen_pop`` to the agent answers on the event socket with
``{"type": "ack", "seq": N}``, N being the pop's ``seq`` (``schemas/client/ack.schema.json``).
``Acks`` is two things:

* a hub consumer that notes, for each ``screen_pop`` published, when (the clock at
  publication) and what it is about (switch, device, agent, queue);
* the ``ack`` handler of the event socket (``EventSocket.handlers["ack"]``), which puts
  ``now - published`` into the histogram ``ctilink_screen_pop_ack_seconds{switch}`` the
  first time a pop is acknowledged. The figure is the whole way round: publication, the
  frame to the client, its rendering, and the ack back.

A good ack gets no answer. One that is not measured gets an ``error`` (the connection
stays open) and counts in ``ctilink_screen_pop_acks_refused_total{reason}``:

* ``bad_request``: ``seq`` missing or not a positive integer, or another field;
* ``not_found``: no screen pop with that ``seq`` was published in the last ``keep``
  seconds, or it is not one the client's token may see (another tenant; outside its
  agents, queues and devices). Both are said the same way, so that an ack never tells
  whether another tenant's pop exists;
* ``duplicate``: the pop was acknowledged already (by this client or another one: the
  first ack is the one that measures how long the agent waited).

Memory is bounded: a pop is remembered for ``keep`` seconds (an ack later than that is
``not_found``) and at most ``max_pops`` of them (the oldest are forgotten first).

Wiring (the daemon, once the event socket exists)::

    install_acks(self.event_socket, self.hub, self.reactor, self.metrics.registry)
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.internet.interfaces import IReactorTime

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.screenpop.connection import EventSocketProtocol
from ctilink.screenpop.eventsocket import EventSocket

log = logging.getLogger(__name__)

ACK = "ack"  # the client message type
KEEP = 600.0  # seconds a pop may be acknowledged after its publication
MAX_POPS = 10_000  # pops remembered at once
# From a page on the same LAN (tens of ms) to an agent whose screen was busy (seconds).
ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REFUSALS = ("bad_request", "not_found", "duplicate")


@dataclass(slots=True)
class _Pop:
    published: float
    switch: str
    device: str | None
    agent: str | None
    queue: str | None
    acked: bool = False


class Acks:
    """Hub consumer and ``ack`` handler (see the module docstring)."""

    def __init__(
        self,
        tenant_of: Callable[[str], str | None],
        clock: IReactorTime,
        registry: CollectorRegistry,
        *,
        keep: float = KEEP,
        max_pops: int = MAX_POPS,
    ) -> None:
        self.tenant_of = tenant_of
        self.clock = clock
        self.keep = keep
        self.max_pops = max_pops
        self.pops: OrderedDict[int, _Pop] = OrderedDict()  # by seq, oldest first
        self.latency = Histogram(
            "ctilink_screen_pop_ack_seconds",
            "Screen pop published to acknowledged by a client",
            ["switch"],
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        self.refused = Counter(
            "ctilink_screen_pop_acks_refused",
            "Screen pop acknowledgements not measured (unknown, duplicate, malformed)",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSALS:
            self.refused.labels(reason)  # every series from the start, at 0
        self._unsubscribe: Callable[[], None] | None = None

    # -- the hub side ----------------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        if not isinstance(event, ev.ScreenPop):
            return
        now = self.clock.seconds()
        self._forget(now)
        self.pops[event.seq] = _Pop(now, event.switch, event.device, event.agent, event.queue)
        while len(self.pops) > self.max_pops:
            self.pops.popitem(last=False)

    def _forget(self, now: float) -> None:
        while self.pops:
            oldest = next(iter(self.pops.values()))
            if oldest.published > now - self.keep:
                return
            self.pops.popitem(last=False)

    # -- the client side -------------------------------------------------------------------
    def handle(self, client: EventSocketProtocol, message: dict[str, Any]) -> None:
        seq = message.get("seq")
        extra = sorted(set(message) - {"type", "seq"})
        if extra:
            self._refuse(client, "bad_request", f"unknown ack field {extra[0]!r}")
            return
        if type(seq) is not int or seq < 1:
            self._refuse(client, "bad_request", "an ack needs 'seq': the screen pop's seq")
            return
        now = self.clock.seconds()
        self._forget(now)
        pop = self.pops.get(seq)
        if pop is None or not self._may_see(client, pop):
            self._refuse(client, "not_found", f"no screen pop with seq {seq} to acknowledge")
            return
        if pop.acked:
            self._refuse(client, "duplicate", f"screen pop {seq} was acknowledged already")
            return
        pop.acked = True
        self.latency.labels(pop.switch).observe(max(0.0, now - pop.published))

    def _may_see(self, client: EventSocketProtocol, pop: _Pop) -> bool:
        token = client.token
        if token is None:  # authentication off: every client sees everything
            return True
        return token.tenant == self.tenant_of(pop.switch) and token.can_read(
            pop.switch, device=pop.device, agent=pop.agent, queue=pop.queue
        )

    def _refuse(self, client: EventSocketProtocol, code: str, message: str) -> None:
        self.refused.labels(code).inc()
        log.debug("event socket client %s: ack refused (%s)", client.peer, code)
        client.send_json({"type": "error", "code": code, "message": message})

    def start(self, hub: Hub) -> None:
        """Note the screen pops ``hub`` publishes from now on."""
        self._unsubscribe = hub.subscribe(self)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def install_acks(
    event_socket: EventSocket, hub: Hub, clock: IReactorTime, registry: CollectorRegistry
) -> Acks:
    """Measure screen-pop acknowledgements on ``event_socket`` into ``registry``."""
    acks = Acks(event_socket.audiences.tenant, clock, registry)
    acks.start(hub)
    event_socket.handlers[ACK] = acks.handle
    return acks
