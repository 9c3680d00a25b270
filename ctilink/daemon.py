"""The daemon: one hub and state tracker, the event log, the event socket, the switches.

Theory of operation
-------------------
``CtilinkService`` is a Twisted service. Building it builds the switch adapters (so a
trace that cannot be read, or an unknown kind, fails before anything listens). Starting
it, in order: opens the database and continues event numbering after the last stored
event; builds the event socket (tokens, tenants, resume from the event log), screen-pop
acknowledgements, live statistics, web callbacks, the routing runtime (customer database,
routing service, interaction history, screen pops) and the command API; binds the web
site (``/events``, ``/api/v1``, ``/desktop/``, ``/metrics``, ``/healthz``, ``/readyz``) on
the configured endpoint; starts every switch. ``ready`` fires when all of that is done.
Stopping reverses it: switches first (no new events), then clients are told, the
listener closes, interactions are written, and the event log is flushed and closed.

Route requests (FastAGI, CSTA routeRequest) go to ``routes`` (``ctilink.routing.Routes``):
the configured default route until the routing service has started, then the service.

``reload`` applies a new configuration where that is possible without dropping links or
clients (log level, routing rules and default route, tokens); what needs a restart is
logged as such.
``ctilink.runner`` runs the service as a process (signals, systemd notifications).
"""

from __future__ import annotations

import logging
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
from ctilink.adapters.factories import build_adapter
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
from ctilink.routing import RouteDecision, Routes, StaticRouter
from ctilink.routing.admin import DEMO_TENANT
from ctilink.routing.runtime import RoutingRuntime, start_routing
from ctilink.screenpop.acks import Acks, install_acks
from ctilink.screenpop.api import CommandApi, mount
from ctilink.screenpop.auth import Authenticator, Scope, TokenStore, new_token
from ctilink.screenpop.callbacks import Callbacks
from ctilink.screenpop.desktop import mount_desktop
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.stats import Statistics
from ctilink.screenpop.web import make_site
from ctilink.store import EventLog

log = logging.getLogger(__name__)

CONTROL_SOCKET = "control.sock"  # in the state directory: ctilink record talks to it


class CtilinkService(Service):
    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.hub = Hub()
        self.routes = Routes(*_static_routes(config))
        self.adapters = [
            build_adapter(switch, self.hub, reactor, self.routes) for switch in config.switches
        ]
        self.store: EventLog | None = None
        self.routing: RoutingRuntime | None = None
        self.authenticator = Authenticator(TokenStore(), reactor)
        self.acks: Acks | None = None
        self.statistics: Statistics | None = None
        self.callbacks: Callbacks | None = None
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
        config = self.config
        engine = db.create_engine(config.database.connect_url())
        self.store = EventLog(engine, clock=self.reactor)
        first = await self.store.start(self.hub)
        tokens = _tokens(config.event_socket)
        if tokens is not None:
            self.authenticator.store = tokens
        self.event_socket = EventSocket(
            self.hub,
            self.reactor,
            tokens=tokens,
            tenants={switch.name: switch.tenant for switch in config.switches},
            event_log=self.store,
            max_backlog=config.event_socket.max_backlog,
            history=self.store.retention,
        )
        self._wire_metrics(self.event_socket, self.store)
        # The routing runtime's screen popper subscribes last (ctilink.routing.screenpop).
        self.acks = install_acks(self.event_socket, self.hub, self.reactor, self.metrics.registry)
        by_name = {adapter.name: adapter for adapter in self.adapters}
        self.statistics = Statistics(self.hub, self.reactor)
        self.callbacks = Callbacks(self.hub, by_name, self.reactor)
        self.routing = await start_routing(
            config,
            config.database.connect_url(),
            self.hub,
            self.hub.tracker,
            self.reactor,
            config.daemon.state_dir,
        )
        self.routes.router = self.routing.router
        api = CommandApi(
            self.hub,
            by_name,
            self.authenticator,
            self.reactor,
            statistics=self.statistics,
            callbacks=self.callbacks,
        )
        endpoint = serverFromString(self.reactor, config.event_socket.listen)
        site = make_site(
            self.event_socket, registry=self.metrics.registry, readiness=self.readiness
        )
        mount(site.resource, api)
        mount_desktop(site.resource)
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
        """The FastAGI routing entry of an Asterisk switch, answering from ``routes``."""
        normalizer = getattr(adapter, "normalizer", None)
        fallback = self.routes.fallback
        assert fallback is not None  # the configuration requires a default route here

        def resolve_call(uniqueid: str, channel: str) -> str:
            assert normalizer is not None
            return str(normalizer.call_id_for(uniqueid))

        return FastAgiFactory(
            switch,
            self.routes,
            self.hub.publish,
            resolve_call,
            self.reactor,
            fallback=fallback,
            budget=self.config.routing.budget_ms / 1000,
        )

    def _wire_metrics(self, sockets: EventSocket, store: EventLog) -> None:
        sources = self.metrics.sources
        sources.clients = lambda: len(sockets.clients)
        sources.events_out = lambda: sockets.events_sent
        sources.slow_clients = lambda: sockets.slow_clients_closed
        sources.resumed = lambda: sockets.resumed
        sources.gaps = lambda: sockets.gaps
        sources.refused = lambda: sockets.refused
        sources.log_written = lambda: store.written
        sources.log_dropped = lambda: store.dropped
        sources.database_up = lambda: not store.failing
        sources.database_errors = self._database_errors

    def _database_errors(self) -> dict[str, int]:
        errors = {"event_log": self.store.errors if self.store is not None else 0}
        if self.routing is not None:
            errors["routing"] = self.routing.router.errors
            errors["audit"] = self.routing.audit.errors
            errors["interactions"] = self.routing.recorder.errors
        return errors

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
        tokens = _tokens(new.event_socket)  # a bad token file refuses the reload (ConfigError)
        old = self.config
        logs.set_level(new.daemon.log_level)
        static, self.routes.fallback = _static_routes(new)
        if self.routing is None:
            self.routes.router = static
        else:
            self.routing.reconfigure(new.routing)
        for factory in self.fastagi:
            if self.routes.fallback is not None:  # required by the config where FastAGI is
                factory.fallback = self.routes.fallback
        if self.event_socket is not None and old.event_socket.auth == new.event_socket.auth:
            store = tokens if tokens is not None else TokenStore()
            if tokens is not None:
                self.event_socket.replace_tokens(store)
            self.authenticator.store = store
        restart_only = (
            ("[[switch]]", old.switches, new.switches),
            ("[database]", old.database, new.database),
            ("[event_socket] listen/auth/max_backlog",
             (old.event_socket.listen, old.event_socket.auth, old.event_socket.max_backlog),
             (new.event_socket.listen, new.event_socket.auth, new.event_socket.max_backlog)),
            ("[routing] default_region/trunk_prefix/cache/refresh",
             _routing_restart_keys(old), _routing_restart_keys(new)),
            ("[daemon] state_dir/log_format",
             (old.daemon.state_dir, old.daemon.log_format),
             (new.daemon.state_dir, new.daemon.log_format)),
        )  # fmt: skip
        later = [name for name, before, after in restart_only if before != after]
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
        for part in (self.statistics, self.callbacks, self.acks):
            if part is not None:
                part.close()
        if self.event_socket is not None:
            self.event_socket.close_all()
        for port in (self.port, self.control_port, *self.fastagi_ports):
            if port is not None:
                await maybeDeferred(port.stopListening)
        if self.routing is not None:
            await self.routing.close()  # interactions of the calls that just ended, too
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
) -> tuple[Config, str]:
    """The embedded demo: SQLite in ``work_dir``, the bundled traces looping, and a fresh
    control token for the demo tenant (its file in ``work_dir``, written now; returned
    secret shown to the user once). The database is seeded by ``ctilink.runner``."""
    from ctilink.demo import TRACES

    work_dir = work_dir.resolve()
    base = default_config(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    secret, token = new_token("demo", DEMO_TENANT, Scope.CONTROL)
    tokens_file = work_dir / "tokens.toml"
    tokens_file.write_text(
        "# The demo's token, made anew by each `ctilink demo` run.\n" + token.to_toml()
    )
    tokens_file.chmod(0o600)
    interface = host.replace(":", "\\:")
    config = replace(
        base,
        daemon=replace(base.daemon, log_level=log_level),
        event_socket=EventSocketConfig(
            listen=f"tcp:port={port}:interface={interface}",
            auth="token",
            tokens_file=tokens_file,
        ),
        switches=(
            SwitchConfig(
                name="demo",
                kind="replay",
                tenant=DEMO_TENANT,
                replay=ReplayOptions(traces=TRACES, loop=True, speed=speed, port=5038),
            ),
        ),
    )
    return config, secret


def _tokens(settings: EventSocketConfig) -> TokenStore | None:
    """The token store of ``[event_socket]`` (None: authentication off)."""
    if settings.auth == "none":
        return None
    assert settings.tokens_file is not None  # the configuration checks it
    return TokenStore.load(settings.tokens_file)


def _routing_restart_keys(config: Config) -> tuple[object, ...]:
    routing = config.routing
    return (routing.default_region, routing.trunk_prefix, routing.cache_size,
            routing.cache_ttl_seconds, routing.refresh_seconds)  # fmt: skip


def _static_routes(config: Config) -> tuple[StaticRouter | None, RouteDecision | None]:
    """The router and the fallback the configured default route gives (None, None when no
    default route is configured: the configuration requires one where routes are asked)."""
    routing = config.routing
    if routing.default_queue is None and routing.default_agent is None:
        return None, None
    default = RouteDecision(
        queue=routing.default_queue,
        agent=routing.default_agent,
        priority=routing.default_priority,
        rule="default",
    )
    router = StaticRouter(routing.default_queue, routing.default_priority, routing.default_agent)
    return router, default
