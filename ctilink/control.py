"""The local control socket: how ``ctilink record`` taps a running link.

Theory of operation
-------------------
The daemon listens on a UNIX socket, ``<state_dir>/control.sock``, mode 0600 (the daemon's
user and root only; the state directory itself is private). A request is one JSON object on
one line; this version knows one::

    {"op": "tap", "switch": "pbx1"}

The answer is ``{"ok": true, "switch": ..., "kind": ...}`` and then the link's traffic as a
trace in the JSON Lines format (``{"t", "dir", "data"}``, ``t`` counted from the start of
the tap), beginning with what the switch sent first on the current connection (the AMI
banner) so that the recording replays with ``ctilink replay``. Secrets ctilink sends (the
AMI login) are masked before they reach a tap. A bad request gets ``{"ok": false, "error":
...}`` and the connection is closed.

A tap never slows the link: records are written to the recorder's socket; when its buffer is
full (Twisted pauses the producer) they wait in a bounded backlog, and a recorder that falls
``MAX_BACKLOG`` records behind is disconnected with a warning.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ctilink.adapters.base import SwitchAdapter
from ctilink.traces import TraceRecord
from ctilink.traces.jsonl import encode_record

log = logging.getLogger(__name__)

MAX_BACKLOG = 50_000


class ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 4096

    def __init__(self, adapters: Sequence[SwitchAdapter], clock: Any) -> None:
        self.adapters = {adapter.name: adapter for adapter in adapters}
        self.clock = clock
        self.adapter: SwitchAdapter | None = None
        self.started = 0.0
        self.last_t = 0.0
        self.paused = False
        self.backlog: deque[bytes] = deque()

    def lineReceived(self, line: bytes) -> None:
        if self.adapter is not None:
            return  # one request per connection
        try:
            request = json.loads(line)
            assert isinstance(request, dict) and request.get("op") == "tap"
            switch = request["switch"]
        except (ValueError, AssertionError, KeyError, TypeError):
            self._refuse('expected {"op": "tap", "switch": NAME}')
            return
        adapter = self.adapters.get(switch) if isinstance(switch, str) else None
        if adapter is None:
            self._refuse(f"no switch named {switch!r} (known: {', '.join(self.adapters)})")
            return
        self.adapter = adapter
        self.started = self.clock.seconds()
        self.transport.registerProducer(_Pressure(self), True)  # type: ignore[union-attr]
        self._send_line(json.dumps({"ok": True, "switch": adapter.name, "kind": adapter.kind}))
        first = adapter.first_bytes()
        if first:
            self._emit(self.started, "rx", first)
        adapter.taps.append(self.tap)
        log.info("recording switch %s for a control client", adapter.name)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse("request too long")

    def _refuse(self, error: str) -> None:
        log.warning("control socket: refused a request: %s", error)
        self._send_line(json.dumps({"ok": False, "error": error}))
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _send_line(self, text: str) -> None:
        self.transport.write(text.encode("utf-8") + b"\n")  # type: ignore[union-attr]

    def tap(self, at: float, direction: str, data: bytes) -> None:
        self._emit(at, direction, data)

    def _emit(self, at: float, direction: str, data: bytes) -> None:
        t = max(self.last_t, round(at - self.started, 6))
        self.last_t = t
        line = encode_record(TraceRecord(t, direction, data, "tap"), t)  # type: ignore[arg-type]
        if self.paused or self.backlog:
            self.backlog.append(line)
            if len(self.backlog) > MAX_BACKLOG:
                log.warning(
                    "recorder of switch %s fell %d records behind; disconnecting it",
                    self.adapter.name if self.adapter else "?",
                    len(self.backlog),
                )
                self._untap()
                self.backlog.clear()
                self.transport.abortConnection()  # type: ignore[union-attr]
        else:
            self.transport.write(line)  # type: ignore[union-attr]

    def drain(self) -> None:
        while self.backlog and not self.paused:
            self.transport.write(self.backlog.popleft())  # type: ignore[union-attr]

    def _untap(self) -> None:
        if self.adapter is not None and self.tap in self.adapter.taps:
            self.adapter.taps.remove(self.tap)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self.adapter is not None:
            log.info("recording of switch %s ended", self.adapter.name)
        self._untap()


class _Pressure:
    def __init__(self, control: ControlProtocol) -> None:
        self.control = control

    def pauseProducing(self) -> None:
        self.control.paused = True

    def resumeProducing(self) -> None:
        self.control.paused = False
        self.control.drain()

    def stopProducing(self) -> None:
        self.control.paused = True


def listen_control(reactor: Any, path: str, adapters: Sequence[SwitchAdapter]) -> Any:
    """Listen on ``path`` (a stale socket of a dead daemon is replaced); Deferred[port]."""
    factory = Factory.forProtocol(lambda: ControlProtocol(adapters, reactor))
    endpoint = UNIXServerEndpoint(reactor, path, mode=0o600, wantPID=True)
    port: Any = endpoint.listen(factory)
    return port


__all__ = ["MAX_BACKLOG", "ControlProtocol", "IListeningPort", "listen_control"]
