"""Wiring the routing service, screen pops and interaction recording into a daemon.

Usage (from the daemon's start coroutine, after the event log and the event socket are
subscribed to the hub, before adapters start)::

    from ctilink.routing.runtime import start_routing

    self.routing = await start_routing(
        self.config, self.config.database.connect_url(), self.hub, self.hub.tracker,
        self.reactor, self.config.daemon.state_dir,
    )
    router = self.routing.router      # the Router for FastAGIFactory (and CSTA routeRequest)
    ...
    await self.routing.close()        # on stop, after the adapters stopped

``start_routing`` returns a Deferred (await it from a Twisted coroutine, as the daemon
does with ``EventLog.start``); it never fails because the database is down: the router
then answers the default route (logged once) until the database answers, and the
recorder spools. What it starts:

* two engines on the URL: one for lookups on the decision path (never queued behind a
  batch write; autocommit and no pre-ping, so a decision costs one round trip), one for
  the batch writers (no pre-ping: a batch that fails is retried). Without pre-ping, a
  restart of the database server costs one failed lookup (the default route) and one
  failed batch (retried), each logged like a short outage;
* ``CustomerDirectory`` (caller lookups, LRU+TTL cache) shared by the router, the pops and
  the recorder;
* ``RoutingService`` (``runtime.router``) with its ``DecisionAudit`` writer; queues and
  agents are loaded now, and every ``[routing] refresh_seconds`` the directory revision is
  checked (an import or admin command elsewhere reloads them and clears the caller cache);
* ``InteractionRecorder`` subscribed to the hub, spooling to ``<state_dir>/spool/`` during
  outages; a spool left by a previous run is written first;
* ``ScreenPopper``, subscribed last (see ``ctilink.routing.screenpop``).

``runtime.close()`` (a Deferred) unsubscribes, stops the refresher, writes or spools what
is buffered, and disposes of the engines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from ctilink import db
from ctilink.config import Config, RoutingConfig
from ctilink.db import failure_reason
from ctilink.hub import Hub
from ctilink.reactor import deferred
from ctilink.routing.audit import DecisionAudit
from ctilink.routing.directory import CustomerDirectory
from ctilink.routing.interactions import InteractionRecorder
from ctilink.routing.numbers import NumberNormalizer
from ctilink.routing.screenpop import ScreenPopper
from ctilink.routing.service import RoutingService
from ctilink.state import StateTracker

log = logging.getLogger(__name__)

STARTUP_LOAD_TIMEOUT = 5.0  # seconds the first load of queues and agents may take


@dataclass
class RoutingRuntime:
    router: RoutingService
    directory: CustomerDirectory
    audit: DecisionAudit
    recorder: InteractionRecorder
    pops: ScreenPopper
    lookup_engine: AsyncEngine
    write_engine: AsyncEngine
    refresher: LoopingCall
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list)

    def reconfigure(self, settings: RoutingConfig) -> None:
        """Routing rules from a reloaded configuration (strategies and their order,
        priorities, thresholds, default route), in force from the next decision; queues
        and agents are read from the database again. Number and cache settings keep
        their values until a restart."""
        self.router.reconfigure(settings)
        _refresh(self.router)

    def close(self) -> Deferred[None]:
        return deferred(self.aclose())

    async def aclose(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.refresher.running:
            self.refresher.stop()
        await self.recorder.aclose()
        await self.audit.aclose()
        await self.lookup_engine.dispose()
        await self.write_engine.dispose()


def start_routing(
    config: Config,
    engine_url: str | URL,
    hub: Hub,
    tracker: StateTracker,
    clock: IReactorTime,
    state_dir: Path,
) -> Deferred[RoutingRuntime]:
    """Build and start the routing runtime (see the module docstring)."""
    return deferred(_start(config, engine_url, hub, tracker, clock, state_dir))


async def _start(
    config: Config,
    engine_url: str | URL,
    hub: Hub,
    tracker: StateTracker,
    clock: IReactorTime,
    state_dir: Path,
) -> RoutingRuntime:
    settings = config.routing
    tenants = {switch.name: switch.tenant for switch in config.switches}
    # Lookups are single reads: autocommit (no BEGIN/ROLLBACK round trips) and no
    # pre-ping (a connection the server dropped fails one lookup, which answers the default
    # route, and is replaced).
    lookup_engine = db.create_engine(
        engine_url,
        pool_size=10,
        max_overflow=10,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=False,
        pool_reset_on_return=None,  # nothing to roll back in autocommit
    )
    # Writers retry a failed batch anyway: no pre-ping round trip before each one.
    write_engine = db.create_engine(engine_url, pool_pre_ping=False)
    normalizer = NumberNormalizer(settings.default_region, settings.trunk_prefix)
    directory = CustomerDirectory(
        lookup_engine,
        now=clock.seconds,
        cache_size=settings.cache_size,
        ttl=settings.cache_ttl_seconds,
        history=max(10, settings.pop_history),
    )
    # Small, frequent audit batches: the loop is never busy long with one (tail latency).
    audit = DecisionAudit(write_engine, clock, flush_interval=0.05)
    router = RoutingService(
        settings,
        lookup_engine,
        directory,
        tracker,
        clock,
        tenants=tenants,
        normalizer=normalizer,
        audit=audit,
    )
    try:
        async with asyncio.timeout(STARTUP_LOAD_TIMEOUT):
            await router.refresh()
    except Exception as exc:
        log.warning(
            "routing: cannot load queues and agents from %s (%s); routing answers the default"
            " route until the database answers",
            db.masked(engine_url),
            failure_reason(exc, lookup_engine, STARTUP_LOAD_TIMEOUT),
        )
    recorder = InteractionRecorder(
        write_engine,
        clock,
        directory=directory,
        normalizer=normalizer,
        spool_dir=Path(state_dir) / "spool",
        tenants=tenants,
        account_keys=settings.account_keys,
    )
    recorder.start(hub)
    pops = ScreenPopper(
        hub.publish,
        directory,
        tracker,
        clock,
        normalizer=normalizer,
        tenants=tenants,
        account_keys=settings.account_keys,
        history=settings.pop_history,
    )
    refresher = LoopingCall(_refresh, router)
    refresher.clock = clock
    refresher.start(settings.refresh_seconds, now=False)
    runtime = RoutingRuntime(
        router, directory, audit, recorder, pops, lookup_engine, write_engine, refresher
    )
    runtime._unsubscribe.append(hub.subscribe(pops))  # last: see ctilink.routing.screenpop
    return runtime


def _refresh(router: RoutingService) -> Deferred[None]:
    def failed(failure: object) -> None:
        log.debug("routing: directory refresh failed: %s", failure)

    return deferred(router.refresh()).addCallbacks(lambda _: None, failed)
