"""The daemon: one hub and state tracker, the event log, the event socket, the switches.

Theory of operation
-------------------
``CtilinkService`` is a Twisted service. Building it builds the switch adapters (so a
trace that cannot be read, or an unknown kind, fails before anything listens). Starting
it, in order: opens the database and continues event numbering after the last stored
event; binds the web site (event socket at ``/events``) on the configured endpoint;
starts every switch. ``ready`` fires when all of that is done. Stopping reverses it:
switches first (no new events), then clients are told, the listener closes, and the event
log is flushed and closed.

``reload`` applies a new configuration where that is possible without dropping links or
clients (log level, routing defaults); what needs a restart is logged as such.
``ctilink.runner`` runs the service as a process (signals, systemd notifications).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort

from ctilink import db, logs
from ctilink.adapters.base import SwitchAdapter
from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.agi.server import FastAgiFactory
from ctilink.config import (
    Config,
    EventSocketConfig,
    ReplayOptions,
    SwitchConfig,
    default_config,
)
from ctilink.control import listen_control
from ctilink.hub import Hub
from ctilink.metrics import Metrics
from ctilink.routing import RouteDecision, StaticRouter
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.web import make_site
from ctilink.store import EventLog

log = logging.getLogger(__name__)

CONTROL_SOCKET = "control.sock"  # in the state directory: ctilink record talks to it

AdapterFactory = Callable[[SwitchConfig, Hub, Any], SwitchAdapter]


def _replay_adapter(switch: SwitchConfig, hub: Hub, reactor: Any) -> SwitchAdapter:
    options = switch.replay
    assert options is not None
    traces = load_replay(options.traces, port=options.port)
    return ReplayAdapter(
        switch.name,
        traces,
        hub.publish,
        clock=reactor,
        speed=options.speed,
        loop=options.loop,
        tenant=switch.tenant,
    )


def _asterisk_adapter(switch: SwitchConfig, hub: Hub, reactor: Any) -> SwitchAdapter:
    from ctilink.adapters.asterisk import AsteriskAdapter

    assert switch.asterisk is not None
    return AsteriskAdapter(switch.name, switch.asterisk, hub.publish, reactor, tenant=switch.tenant)


ADAPTERS: dict[str, AdapterFactory] = {"replay": _replay_adapter, "asterisk": _asterisk_adapter}


class CtilinkService(Service):
    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.hub = Hub()
        self.adapters = [
            ADAPTERS[switch.kind](switch, self.hub, reactor) for switch in config.switches
        ]
        self.store: EventLog | None = None
        self.metrics = Metrics(self.hub.tracker, reactor.seconds)
        self.hub.subscribe(self.metrics)
        self.fastagi: list[FastAgiFactory] = []
        self.event_socket: EventSocket | None = None
        self.port: IListeningPort | None = None
        self.fastagi_ports: list[IListeningPort] = []
        self.control_port: IListeningPort | None = None
        self.ready: Deferred[CtilinkService] = Deferred()
        self._starting: Deferred[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the web site listens on."""
        assert self.port is not None
        host = self.port.getHost()
        assert isinstance(host, IPv4Address | IPv6Address)
        return host.host, host.port

    def startService(self) -> None:
        super().startService()
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addCallbacks(lambda _: self.ready.callback(self), self.ready.errback)

    async def _start(self) -> None:
        engine = db.create_engine(self.config.database.connect_url())
        self.store = EventLog(engine, clock=self.reactor)
        first = await self.store.start(self.hub)
        self.event_socket = EventSocket(self.hub, self.reactor)
        self._wire_metrics(self.event_socket, self.store)
        endpoint = serverFromString(self.reactor, self.config.event_socket.listen)
        site = make_site(
            self.event_socket, registry=self.metrics.registry, readiness=self.readiness
        )
        self.port = await endpoint.listen(site)
        control = self.config.daemon.state_dir / CONTROL_SOCKET
        self.control_port = await listen_control(self.reactor, str(control), self.adapters)
        for switch, adapter in zip(self.config.switches, self.adapters, strict=True):
            if switch.asterisk is not None and switch.asterisk.fastagi is not None:
                factory = self._fastagi(switch.name, adapter)
                self.fastagi.append(factory)
                fastagi = serverFromString(self.reactor, switch.asterisk.fastagi)
                self.fastagi_ports.append(await fastagi.listen(factory))
                log.info("switch %s: FastAGI routing on %s", switch.name, switch.asterisk.fastagi)
        for adapter in self.adapters:
            adapter.start()
        host, port = self.address
        log.info(
            "ctilink ready: event socket on %s:%d, %d switch(es), numbering from seq %d",
            host,
            port,
            len(self.adapters),
            first,
        )

    def _fastagi(self, switch: str, adapter: SwitchAdapter) -> FastAgiFactory:
        """The FastAGI routing entry of an Asterisk switch, answering from the routing
        service (the configured default route until the routing issue lands)."""
        router, default = _static_routes(self.config)
        normalizer = getattr(adapter, "normalizer", None)

        def resolve_call(uniqueid: str, channel: str) -> str:
            assert normalizer is not None
            return str(normalizer.call_id_for(uniqueid))

        return FastAgiFactory(
            switch,
            router,
            self.hub.publish,
            resolve_call,
            self.reactor,
            fallback=default,
            budget=self.config.routing.budget_ms / 1000,
        )

    def _wire_metrics(self, sockets: EventSocket, store: EventLog) -> None:
        sources = self.metrics.sources
        sources.clients = lambda: len(sockets.clients)
        sources.events_out = lambda: sockets.events_sent
        sources.slow_clients = lambda: sockets.slow_clients_closed
        sources.log_written = lambda: store.written
        sources.log_dropped = lambda: store.dropped
        sources.database_up = lambda: not store.failing

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every configured link is up and the database can be written."""
        states = self.metrics.link_states()
        links = {s.name: "up" if states.get(s.name) else "down" for s in self.config.switches}
        database = "up" if self.store is not None and not self.store.failing else "down"
        ready = database == "up" and all(state == "up" for state in links.values())
        return ready, {"links": links, "database": database}

    def link_summary(self) -> str:
        states = self.metrics.link_states()
        parts = [f"{s.name} {'up' if states.get(s.name) else 'down'}" for s in self.config.switches]
        return ", ".join(parts) or "no switches"

    def reload(self, new: Config) -> list[str]:
        """Apply what can change live; returns what needs a restart to take effect."""
        logs.set_level(new.daemon.log_level)
        for factory in self.fastagi:
            factory.router, factory.fallback = _static_routes(new)
        later = [
            name
            for name, old, now in (
                ("[[switch]]", self.config.switches, new.switches),
                ("[event_socket]", self.config.event_socket, new.event_socket),
                ("[database]", self.config.database, new.database),
                ("[daemon] state_dir/log_format",
                 (self.config.daemon.state_dir, self.config.daemon.log_format),
                 (new.daemon.state_dir, new.daemon.log_format)),
            )
            if old != now
        ]  # fmt: skip
        self.config = replace(new, switches=self.config.switches)
        return later

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        for adapter in self.adapters:
            await adapter.stop()
        if self.event_socket is not None:
            self.event_socket.close_all()
        for port in (self.port, self.control_port, *self.fastagi_ports):
            if port is not None:
                await maybeDeferred(port.stopListening)
        if self.store is not None:
            await self.store.close()
        log.info("ctilink stopped")


def demo_config(
    work_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    speed: float = 1.0,
    log_level: str = "info",
) -> Config:
    """The embedded demo: SQLite in ``work_dir`` and the bundled traces looping."""
    from ctilink.demo import TRACES

    base = default_config(work_dir.resolve())
    interface = host.replace(":", "\\:")
    return replace(
        base,
        daemon=replace(base.daemon, log_level=log_level),
        event_socket=EventSocketConfig(listen=f"tcp:port={port}:interface={interface}"),
        switches=(
            SwitchConfig(
                name="demo",
                kind="replay",
                tenant="default",
                replay=ReplayOptions(traces=TRACES, loop=True, speed=speed, port=5038),
            ),
        ),
    )


def _static_routes(config: Config) -> tuple[StaticRouter, RouteDecision]:
    """The router and the fallback the configured default route gives."""
    routing = config.routing
    default = RouteDecision(
        queue=routing.default_queue,
        agent=routing.default_agent,
        priority=routing.default_priority,
        rule="default",
    )
    router = StaticRouter(routing.default_queue, routing.default_priority, routing.default_agent)
    return router, default
