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

``run_daemon`` is what ``ctilink run`` and ``ctilink demo`` call: migrate the database
(synchronously, before the reactor runs), install the asyncio reactor, start the service
and run until SIGINT/SIGTERM, stopping cleanly.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
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
from ctilink.hub import Hub
from ctilink.routing import RouteDecision, StaticRouter
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.web import make_site
from ctilink.store import EventLog

log = logging.getLogger(__name__)

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
        self.event_socket: EventSocket | None = None
        self.port: IListeningPort | None = None
        self.fastagi_ports: list[IListeningPort] = []
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
        endpoint = serverFromString(self.reactor, self.config.event_socket.listen)
        self.port = await endpoint.listen(make_site(self.event_socket))
        for switch, adapter in zip(self.config.switches, self.adapters, strict=True):
            if switch.asterisk is not None and switch.asterisk.fastagi is not None:
                factory = self._fastagi(switch.name, adapter)
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
        routing = self.config.routing
        default = RouteDecision(
            queue=routing.default_queue,
            agent=routing.default_agent,
            priority=routing.default_priority,
            rule="default",
        )
        router = StaticRouter(
            routing.default_queue, routing.default_priority, routing.default_agent
        )
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
            budget=routing.budget_ms / 1000,
        )

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
        for port in (self.port, *self.fastagi_ports):
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


def run_daemon(config: Config, *, demo: bool = False) -> int:
    """Run until stopped by a signal; returns the process exit status."""
    logs.configure(config.daemon.log_level, config.daemon.log_format)
    state_dir = config.daemon.state_dir
    try:
        os.makedirs(state_dir, exist_ok=True)
    except OSError as exc:
        log.error("daemon.state_dir: cannot create %s: %s", state_dir, exc.strerror or exc)
        return 2
    url = config.database.connect_url()
    log.info("preparing the database %s", db.masked(url))
    try:
        db.upgrade(url)
    except Exception as exc:
        log.error("cannot prepare the database %s: %s", db.masked(url), _one_line(exc))
        return 1
    from ctilink.reactor import install_asyncio_reactor

    reactor = install_asyncio_reactor()
    service = CtilinkService(config, reactor)
    status = [0]

    def started(svc: CtilinkService) -> None:
        if demo:
            host, port = svc.address
            print(
                f"ctilink demo: replaying {len(config.switches[0].replay.traces)} real Asterisk"  # type: ignore[union-attr]
                f" traces in a loop; database {state_dir / 'ctilink.sqlite3'}\n"
                f"ctilink demo: connect a WebSocket client to ws://{host}:{port}/events"
                " (Ctrl-C to stop)",
                flush=True,
            )

    stopping = [False]

    def failed(failure: Any) -> None:
        if failure.check(CancelledError) or stopping[0]:
            return  # stopped (SIGTERM/SIGINT) while starting: not a failure
        hint = " (try another --port)" if demo else ""
        log.error("ctilink could not start: %s%s", _one_line(failure.value), hint)
        status[0] = 1
        if reactor.running:
            reactor.stop()

    def stop() -> Deferred[None]:
        stopping[0] = True
        return service.stopService()

    reactor.callWhenRunning(service.startService)
    service.ready.addCallbacks(started, failed)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    sys.stdout.flush()
    return status[0]


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (drivers put SQL and hints on further lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
