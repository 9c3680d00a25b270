"""Running ctilink as a process: what ``ctilink run`` and ``ctilink demo`` do.

Theory of operation
-------------------
Before the reactor: logging, the state directory, database migrations (blocking, with a
connect timeout, so a dead database fails the start in bounded time). Then the asyncio
reactor is installed and the service started. Signals:

* SIGTERM / SIGINT: stop cleanly (switches first with AMI Logoff, clients told, listeners
  closed, the event log flushed) within ``STOP_BOUND`` seconds, exit 0. A stop that takes
  longer is cut short and the process exits 1.
* SIGHUP: read the configuration file again. A bad file is refused with one log line and
  the running configuration kept; a good one is applied live (log level, routing defaults)
  and whatever needs a restart is named in the log.

systemd (``Type=notify``): ``READY=1`` once listeners are bound and links started,
``STATUS=`` with the link states whenever a link changes, ``WATCHDOG=1`` every half
``WatchdogSec`` from the reactor (a blocked reactor stops the pings and systemd restarts
the service), ``RELOADING=1``/``READY=1`` around a reload, ``STOPPING=1`` when stopping.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall

from ctilink import db, logs
from ctilink.config import Config, load_config
from ctilink.daemon import CtilinkService
from ctilink.errors import ConfigError
from ctilink.model import events as ev
from ctilink.systemd import Notifier

log = logging.getLogger(__name__)

STOP_BOUND = 5.0  # seconds a clean stop may take


def run_daemon(
    config: Config, *, demo_token: str | None = None, notifier: Notifier | None = None
) -> int:
    """Run until stopped by a signal; returns the process exit status. ``demo_token``:
    this is ``ctilink demo`` (its database is seeded; the token is shown to the user)."""
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
        if demo_token is not None:
            from ctilink.routing.admin import seed_demo

            seed_demo(url, default_region=config.routing.default_region)
    except Exception as exc:
        log.error("cannot prepare the database %s: %s", db.masked(url), one_line(exc))
        return 1
    from ctilink.reactor import install_asyncio_reactor

    reactor = install_asyncio_reactor()
    return _Process(config, reactor, demo_token, notifier or Notifier()).run()


class _Process:
    def __init__(
        self, config: Config, reactor: Any, demo_token: str | None, notifier: Notifier
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.demo = demo_token is not None
        self.demo_token = demo_token
        self.notifier = notifier
        self.service = CtilinkService(config, reactor)
        self.status = 0
        self.stopping = False
        self.watchdog: LoopingCall | None = None

    def run(self) -> int:
        reactor = self.reactor
        reactor.callWhenRunning(self.service.startService)
        reactor.callWhenRunning(self._install_sighup)
        self.service.ready.addCallbacks(self._started, self._failed)
        reactor.addSystemEventTrigger("before", "shutdown", self._stop)
        reactor.run()
        self.notifier.close()
        sys.stdout.flush()
        return self.status

    # -- start -----------------------------------------------------------------------------
    def _started(self, service: CtilinkService) -> None:
        service.hub.subscribe(self._on_link_event)
        if self.notifier.watchdog_interval:
            self.watchdog = LoopingCall(self.notifier.watchdog)
            self.watchdog.clock = self.reactor
            self.watchdog.start(self.notifier.watchdog_interval, now=True)
        self.notifier.ready(service.link_summary())
        if self.demo:
            host, port = service.address
            web = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            print(
                f"ctilink demo: replaying real Asterisk traces in a loop; database "
                f"{self.config.daemon.state_dir / 'ctilink.sqlite3'}\n"
                f"ctilink demo: this run's token (tenant default, control): {self.demo_token}\n"
                f"ctilink demo: agent desktop http://{web}/desktop/ (sign in as agent 6001"
                " with the token)\n"
                f"ctilink demo: event socket ws://{web}/events?access_token=<token>;"
                f" REST API http://{web}/api/v1 (Ctrl-C to stop)",
                flush=True,
            )

    def _failed(self, failure: Any) -> None:
        if failure.check(CancelledError) or self.stopping:
            return  # stopped (SIGTERM/SIGINT) while starting: not a failure
        hint = " (try another --port)" if self.demo else ""
        log.error("ctilink could not start: %s%s", one_line(failure.value), hint)
        self.status = 1
        if self.reactor.running:
            self.reactor.stop()

    def _on_link_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.LinkEvent):
            self.notifier.status(self.service.link_summary())

    # -- reload ----------------------------------------------------------------------------
    def _install_sighup(self) -> None:
        loop = getattr(self.reactor, "_asyncioEventloop", None)
        if loop is not None:
            loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        source = self.config.source
        if source is None:
            log.warning("SIGHUP: no configuration file to read again (demo); nothing done")
            return
        self.notifier.reloading()
        try:
            new = load_config(source)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
        else:
            later = self.service.reload(new)
            self.config = new
            log.info("configuration reloaded from %s", source)
            if later:
                log.warning("changes to %s take effect after a restart", ", ".join(later))
        self.notifier.ready(self.service.link_summary())

    # -- stop ------------------------------------------------------------------------------
    def _stop(self) -> Deferred[None]:
        self.stopping = True
        self.notifier.stopping()
        if self.watchdog is not None and self.watchdog.running:
            self.watchdog.stop()
        stopping = self.service.stopService()
        stopping.addTimeout(STOP_BOUND, self.reactor)

        def late(failure: Any) -> None:
            log.error(
                "ctilink did not stop cleanly within %g s: %s", STOP_BOUND, one_line(failure.value)
            )
            self.status = 1

        return stopping.addErrback(late)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (drivers put SQL and hints on further lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
