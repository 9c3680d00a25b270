"""The link life both live adapters share (``AsteriskAdapter``, ``CstaAdapter``).

``LinkProtocol`` is the Twisted shim: bytes in go to the adapter's ``received``, bytes out
through ``write``. ``LinkAdapter`` owns one connection after another: a connection that is
no longer the current one (closed, replaced) is ignored; a connection lost while the link
was up publishes ``link_down``; ``_link_up`` and ``_link_resynced`` publish the other link
events. What happens on a connection (login, association, resync) is the adapter's: its
``_opened``, ``_received`` and ``_closed``. ``client_service`` reconnects with capped
exponential backoff.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Self, TypeVar

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from ctilink.adapters.base import SwitchAdapter
from ctilink.model import events as ev

P = TypeVar("P", bound="LinkProtocol")


class LinkProtocol(Protocol):
    """Hands everything to ``link``, typed for the protocol class the link expects."""

    def __init__(self, link: LinkAdapter[Self]) -> None:
        self.link = link

    def connectionMade(self: Self) -> None:
        self.link.connected(self)

    def dataReceived(self: Self, data: bytes) -> None:
        self.link.received(self, data)

    def connectionLost(self: Self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.link.lost(self, reason)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


def client_service(
    reactor: Any,
    endpoint: IStreamClientEndpoint | None,
    address: tuple[str, int],
    connect_timeout: float,
    protocol: Callable[[], Protocol],
    retry_policy: Callable[[int], float] | None,
    *,
    initial_delay: float,
    max_delay: float,
) -> ClientService:
    """Connect to ``endpoint`` (by default TCP to ``address``) and again after each loss."""
    host, port = address
    endpoint = endpoint or HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
    policy = retry_policy or backoffPolicy(
        initialDelay=initial_delay,
        maxDelay=max_delay,
        factor=2.0,
        jitter=lambda: random.uniform(0, 0.25),
    )
    return ClientService(endpoint, Factory.forProtocol(protocol), retryPolicy=policy, clock=reactor)


class LinkAdapter(SwitchAdapter, Generic[P]):
    """A live adapter's connections; ``state`` is "down", "up" or the adapter's own steps."""

    _log: ClassVar[logging.Logger]  # the adapter module's logger
    reactor: Any
    _publish: Callable[[ev.Event], object]
    _call_ids: Callable[[], str]

    def __init__(self, name: str, tenant: str = "default") -> None:
        super().__init__(name, tenant)
        self._protocol: P | None = None
        self.state = "down"
        self.connections = 0
        self._failures = 0  # since the link was last up

    def _new_call_id(self) -> str:
        return self._call_ids()

    @property
    def up(self) -> bool:
        return self.state == "up"

    # -- the connection --------------------------------------------------------------------
    def connected(self, protocol: P) -> None:
        self._protocol = protocol
        self.connections += 1
        self._opened(protocol)

    def received(self, protocol: P, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        self._received(protocol, data)

    def lost(self, protocol: P, reason: Failure) -> None:
        if protocol is not self._protocol:
            return
        was_up = self.state == "up"
        self.state = "down"
        self._protocol = None
        detail = self._closed(reason)
        if was_up:
            self._log.warning("switch %s: link down (%s)", self.name, detail)
            self._publish(ev.LinkDown(switch=self.name, time=self.reactor.seconds(), detail=detail))

    def _opened(self, protocol: P) -> None:
        """A new connection, now the current one."""
        raise NotImplementedError

    def _received(self, protocol: P, data: bytes) -> None:
        """Bytes from the current connection."""
        raise NotImplementedError

    def _closed(self, reason: Failure) -> str:
        """The current connection is gone (state is down): forget it; returns why it went."""
        raise NotImplementedError

    # -- link events -----------------------------------------------------------------------
    def _failure_level(self) -> int:
        """Count a failure to bring the link up: ERROR the first time, WARNING after."""
        self._failures += 1
        return logging.ERROR if self._failures == 1 else logging.WARNING

    def _link_up(self, detail: str, address: tuple[str, int]) -> None:
        self._failures = 0
        self.state = "up"
        self._log.info("switch %s: link up (%s)", self.name, detail)
        host, port = address
        self._publish(
            ev.LinkUp(
                switch=self.name, time=self.reactor.seconds(), detail=f"{detail} at {host}:{port}"
            )
        )

    def _link_resynced(self, report: object) -> None:
        self._log.info("switch %s: resynced: %s", self.name, report)
        self._publish(
            ev.LinkResynced(switch=self.name, time=self.reactor.seconds(), detail=str(report))
        )
