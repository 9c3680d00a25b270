"""Telling systemd what the daemon is doing (sd_notify), in a few lines over a datagram.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) to a
``Type=notify`` service and ``WATCHDOG_USEC`` when ``WatchdogSec=`` is set. The daemon sends
``READY=1`` once its listeners are bound and its links started, ``STATUS=`` lines as links
change, ``RELOADING=1`` … ``READY=1`` around a reload, ``STOPPING=1`` on the way out, and
``WATCHDOG=1`` from the reactor every half watchdog interval: if the reactor blocks, the
pings stop and systemd restarts the service. Without ``NOTIFY_SOCKET`` every call is a no-op.
No library: the protocol is one datagram per message.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2_000_000 if usec.isdecimal() and mine else None
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> None:
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError as exc:
            if not self._warned:  # systemd gone or socket wrong: say so once, carry on
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._warned = True

    def ready(self, status: str | None = None) -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
