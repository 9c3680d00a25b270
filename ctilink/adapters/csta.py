"""The live CSTA link: a CTI application on Twisted over ctilink's sans-I/O CSTA codecs.

Theory of operation
-------------------
``CstaClientProtocol`` is a thin shim: bytes in go to ``CstaAdapter.received``, bytes out
come from the session's ``send``. The session is ``ctilink.csta.connection.CstaConnection``
(ECMA-285 BER: ACSE association, ROSE, systemStatus heartbeats) or, with ``xml``,
``ctilink.csta.xml_connection.CstaXmlConnection`` (ECMA-323), which offer the same calls
and events, so nothing else here knows the encoding. The adapter owns what outlives a
connection (the normalizer: calls, call ids, agents) and what lives per connection (the
session, the monitors, the routeing dialogues).

Link life, one connection after another (Twisted ``ClientService``, capped exponential
backoff; what the Asterisk adapter shares is in ``ctilink.adapters.link``):

    TCP connected → [Alcatel B/P] → AARQ/AARE (CSTA version, optional password) →
    ``link_up`` → monitorStart on every device, ACD group and route point, routeRegister
    on the route points → snapshotDevice of each (and getAgentState of each device) →
    resync (``csta_resync``) → ``link_resynced`` → live event reports; systemStatus
    heartbeats both ways: ``heartbeat_timeout`` without an answer (a silent or half-open
    switch), a broken stream, an abort or a release closes the connection →
    ``link_down`` → reconnect.

``stop`` stops the monitors and releases the association (RLRQ/RLRE) before closing.
Every request resolves or fails within ``request_timeout``; a request pending when the
link drops fails with ``link_down`` and is never sent again. Event reports go to
``CstaNormalizer`` (``csta_events``), route requests to ``CstaRouting``; call control is
``csta_control``. ``taps`` (``ctilink record``) see every whole frame both ways.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from ctilink.adapters import csta_values as values
from ctilink.adapters.csta_control import CstaCallControl
from ctilink.adapters.csta_events import CstaNormalizer
from ctilink.adapters.csta_resync import CstaResync
from ctilink.adapters.csta_routing import CstaRouting
from ctilink.adapters.csta_taps import FrameTap
from ctilink.adapters.link import LinkAdapter, LinkProtocol, client_service
from ctilink.ami.normalizer import new_call_id
from ctilink.config.model import Secret
from ctilink.csta import CstaMessage, acse, operations, xml
from ctilink.csta import connection as link
from ctilink.csta.operations import CstaError
from ctilink.model import events as ev
from ctilink.routing.static import RouteDecision, Router

log = logging.getLogger(__name__)

RELEASE_WAIT: Final = 1.0
RESYNC_TIMEOUT: Final = 60.0


@dataclass(frozen=True, slots=True)
class CstaSettings:
    """One CSTA switch link (TOML keys of the same names; ``password`` from a file/env)."""

    host: str
    port: int
    xml: bool = False  # ECMA-323 XML instead of ECMA-285 BER
    xml_edition: str = "ed4"  # ECMA-323 namespace sent: "ed3" or "ed4"
    xml_application_session: bool = False  # ECMA-354 StartApplicationSession first
    alcatel_handshake: bool = False  # Alcatel OmniPCX "B"/"P" before the AARQ
    csta_versions: tuple[str, ...] = acse.DEFAULT_CSTA_VERSIONS
    application_context: str = acse.CSTA_APPLICATION_CONTEXT
    user: str | None = None  # XML application id; BER's AARQ carries no user name
    password: Secret | None = field(default=None, repr=False)
    devices: tuple[str, ...] = ()  # extensions / agent devices monitored
    acd_groups: tuple[str, ...] = ()  # ACD groups (queues) monitored
    route_points: tuple[str, ...] = ()  # monitored and registered for route requests
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 60.0  # unanswered heartbeats for this long: link down
    request_timeout: float = 10.0
    connect_timeout: float = 10.0  # TCP connect, and association
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    routing_budget: float = 0.3  # the router's time, within the switch's routeing timer

    @property
    def monitored(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.devices, *self.acd_groups, *self.route_points)))

    @property
    def heartbeat_misses(self) -> int:
        return max(1, math.ceil(self.heartbeat_timeout / self.heartbeat_interval))

    @property
    def namespace(self) -> str:
        return xml.ED3 if self.xml_edition == "ed3" else xml.ED4


class CstaSession(Protocol):
    """What ``CstaConnection`` and ``CstaXmlConnection`` both offer."""

    csta_version: str | None

    def initiate(self) -> None: ...
    def accept(self, csta_version: str | None = None) -> None: ...
    def refuse(self, reason: str = ...) -> None: ...
    def release(self) -> None: ...
    def receive_data(self, data: bytes) -> None: ...
    def connection_lost(self, detail: str = ...) -> None: ...
    def send_result(self, invoke_id: int, operation: str, result: Any) -> None: ...
    def send_error(self, invoke_id: int, failure: tuple[str, Any]) -> None: ...
    def send_invoke(
        self, operation: str, argument: Any, timeout: float | None = None
    ) -> Deferred[CstaMessage | None]: ...


def make_session(
    settings: CstaSettings,
    role: str,
    clock: Any,
    send: Callable[[bytes], None],
    on_event: Callable[[link.ConnectionEvent], None],
) -> CstaSession:
    """The sans-I/O session for ``settings`` (BER or XML), ``role`` client or server."""
    timers = {
        "invoke_timeout": settings.request_timeout,
        "association_timeout": settings.connect_timeout,
        "heartbeat_interval": settings.heartbeat_interval,
        "heartbeat_misses": settings.heartbeat_misses,
    }
    if settings.xml:
        from ctilink.csta.xml_connection import CstaXmlConnection
        from ctilink.csta.xml_session import ApplicationSession

        session = None
        if settings.xml_application_session and role == "client":
            session = ApplicationSession(application_id=settings.user or "ctilink")
        return CstaXmlConnection(
            "client" if role == "client" else "server",
            clock,
            send=send,
            on_event=on_event,
            session=session,
            namespace=settings.namespace,
            **timers,  # type: ignore[arg-type]
        )
    password = settings.password.reveal() if settings.password is not None else None
    request = acse.AssociateRequest(
        csta_versions=settings.csta_versions,
        application_context=settings.application_context,
        password=password,
    )
    return link.CstaConnection(
        "client" if role == "client" else "server",
        clock,
        send=send,
        on_event=on_event,
        request=request,
        alcatel=settings.alcatel_handshake,
        **timers,  # type: ignore[arg-type]
    )


class CstaClientProtocol(LinkProtocol):
    """Frames are bytes both ways: the shim as it is."""


class CstaAdapter(LinkAdapter[CstaClientProtocol], CstaCallControl):
    kind = "csta"
    _log = log
    state: str  # down, associating, up

    def __init__(
        self,
        name: str,
        settings: CstaSettings,
        publish: Callable[[ev.Event], object],
        reactor: Any,
        *,
        tenant: str = "default",
        endpoint: IStreamClientEndpoint | None = None,
        call_id_factory: Callable[[], str] = new_call_id,
        retry_policy: Callable[[int], float] | None = None,
        router: Router | None = None,
        fallback: RouteDecision | None = None,
    ) -> None:
        super().__init__(name, tenant)
        self.settings = settings
        self.reactor = reactor
        self._publish = publish
        self._call_ids = call_id_factory
        self.normalizer = CstaNormalizer(
            name,
            publish,
            call_id_factory=call_id_factory,
            monitored=frozenset(settings.monitored),
            routing_devices=frozenset((*settings.acd_groups, *settings.route_points)),
        )
        self._resync = CstaResync(self.normalizer)
        self.routing = CstaRouting(
            name,
            self.normalizer,
            publish,
            reactor,
            self.invoke,
            router=router,
            fallback=fallback,
            budget=settings.routing_budget,
        )
        self._session: CstaSession | None = None
        self._frames = FrameTap(xml=settings.xml, alcatel=settings.alcatel_handshake)
        self._released: Deferred[None] | None = None
        self.monitors: dict[bytes, str] = {}  # crossRefIdentifier -> monitored object
        self._why_down: str | None = None  # what the session said before we closed
        self._invoked: dict[str, Callable[[CstaMessage], None]] = {
            "cSTAEventReport": self._event_report,
            "routeRequest": lambda m: self.routing.route_request(m.argument),
            "reRouteRequest": lambda m: self.routing.re_route(m.argument),
            "routeEndRequest": lambda m: self.routing.route_end(m.argument),
            "systemStatus": self._system_status,
        }
        self._service = client_service(
            reactor,
            endpoint,
            (settings.host, settings.port),
            settings.connect_timeout,
            lambda: CstaClientProtocol(self),
            retry_policy,
            initial_delay=settings.reconnect_initial_delay,
            max_delay=settings.reconnect_max_delay,
        )

    # -- service ---------------------------------------------------------------------------
    def start(self) -> None:
        encoding = "XML" if self.settings.xml else "BER"
        log.info(
            "switch %s: connecting to CSTA (%s) at %s:%d",
            self.name,
            encoding,
            self.settings.host,
            self.settings.port,
        )
        self._service.startService()

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        session = self._session
        if session is not None and self.state == "up":
            for cross_ref in list(self.monitors):  # as a polite application does
                stopping = session.send_invoke(
                    "monitorStop", {"crossRefIdentifier": cross_ref}, RELEASE_WAIT
                )
                stopping.addErrback(lambda _failure: None)
            self._released = Deferred()
            self._released.addTimeout(RELEASE_WAIT, self.reactor, lambda *_: None)
            session.release()
            await self._released
        await self._service.stopService()

    def first_bytes(self) -> bytes:
        return self._frames.first

    def invoke(
        self, operation: str, argument: Any, timeout: float | None = None
    ) -> Deferred[CstaMessage | None]:
        """Send a request on the current connection; fails at once if the link is not up."""
        if self._session is None:
            return fail(CstaError("link_down", operation, f"switch {self.name} is not connected"))
        return self._session.send_invoke(operation, argument, timeout)

    # -- the connection --------------------------------------------------------------------
    def _opened(self, protocol: CstaClientProtocol) -> None:
        self.state = "associating"
        self._why_down = None
        self._frames.reset()
        session = make_session(
            self.settings,
            "client",
            self.reactor,
            lambda data: self._send(protocol, data),
            lambda event: self._on_event(protocol, event),
        )
        self._session = session
        session.initiate()

    def _received(self, protocol: CstaClientProtocol, data: bytes) -> None:
        if self._session is None:
            return
        self._frames.received(data, self.reactor.seconds(), self.taps)
        self._session.receive_data(data)

    def _send(self, protocol: CstaClientProtocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        protocol.write(data)
        for tap in self.taps:
            tap(self.reactor.seconds(), "tx", data)

    def _closed(self, reason: Failure) -> str:
        session, self._session = self._session, None
        detail = self._why_down or reason.getErrorMessage()
        if session is not None:
            session.connection_lost(detail)  # pending requests fail with link_down
        self.routing.reset()
        self.monitors.clear()
        if self._released is not None and not self._released.called:
            self._released.callback(None)
        return detail

    # -- session events --------------------------------------------------------------------
    def _on_event(self, protocol: CstaClientProtocol, event: link.ConnectionEvent) -> None:
        if protocol is not self._protocol:
            return
        if isinstance(event, link.Invoked):
            self._on_invoked(event)
        elif isinstance(event, link.AssociationAccepted):
            self._associated(protocol, event.csta_version)
        elif isinstance(event, link.AssociationRefused):
            self._refused(protocol, event.response)
        elif isinstance(event, link.LinkDown):
            self._link_down(protocol, event)
        elif isinstance(event, link.Released):
            log.info("switch %s: CSTA association released", self.name)
            if self._released is not None and not self._released.called:
                self._released.callback(None)
            protocol.abort()
        elif isinstance(event, link.PeerRejected):
            log.warning("switch %s: the switch rejected a PDU: %s", self.name, event.message)

    def _refused(self, protocol: CstaClientProtocol, response: acse.AssociateResponse) -> None:
        log.log(
            self._failure_level(),
            "switch %s: CSTA association refused (%s, %s); will retry",
            self.name,
            response.result,
            response.diagnostic[1],
        )
        protocol.abort()

    def _link_down(self, protocol: CstaClientProtocol, event: link.LinkDown) -> None:
        self._why_down = f"{event.reason}: {event.detail}"
        if event.reason == "protocol_error":
            log.error("switch %s: broken CSTA stream (%s); reconnecting", self.name, event.detail)
        else:
            log.warning("switch %s: CSTA link %s (%s)", self.name, event.reason, event.detail)
        protocol.abort()

    def _associated(self, protocol: CstaClientProtocol, version: str | None) -> None:
        settings = self.settings
        encoding = "XML" if settings.xml else "BER"
        self._link_up(f"CSTA {version or '?'} ({encoding})", (settings.host, settings.port))
        Deferred.fromCoroutine(self._monitor_and_resync(protocol))

    def _on_invoked(self, event: link.Invoked) -> None:
        message = event.message
        handler = self._invoked.get(message.operation or "")
        if handler is not None:
            handler(message)
            return
        op = operations.BY_NAME.get(message.operation or "")
        if not event.answered and op is not None and op.result is not None:
            assert self._session is not None and message.invoke_id is not None
            self._session.send_error(message.invoke_id, ("operation", "serviceNotSupported"))
        log.info("switch %s: the switch invoked %s; not served", self.name, message.operation)

    def _event_report(self, message: CstaMessage) -> None:
        self.normalizer.handle(message.argument, self.reactor.seconds())

    def _system_status(self, message: CstaMessage) -> None:
        status = (message.argument or {}).get("systemStatus")
        if status not in ("normal", None):
            log.info("switch %s: the switch reports system status %s", self.name, status)

    # -- monitors and resync ---------------------------------------------------------------
    async def _request(
        self, operation: str, argument: Any, refused: str, level: int = logging.WARNING
    ) -> CstaMessage | None:
        """A link-up request; its refusal is logged (``refused``: what to say) and None
        returned (link loss raises)."""
        try:
            return await self.invoke(operation, argument, RESYNC_TIMEOUT)
        except CstaError as exc:
            if exc.code == "link_down":
                raise
            log.log(level, "switch %s: %s: %s", self.name, refused, exc)
            return None

    async def _monitor_and_resync(self, protocol: CstaClientProtocol) -> None:
        try:
            await self._monitor_and_resync_now(protocol)
        except CstaError as exc:  # the link went while we were at it
            log.info("switch %s: resync abandoned (%s)", self.name, exc)

    async def _monitor_and_resync_now(self, protocol: CstaClientProtocol) -> None:
        settings = self.settings
        self._resync.begin()
        for device in settings.monitored:
            monitor = {"monitorObject": ("deviceObject", values.device_id(device))}
            started = await self._request(
                "monitorStart", monitor, f"monitorStart of {device} failed"
            )
            if started is not None:
                self.monitors[started.argument["crossRefIdentifier"]] = device
        for point in settings.route_points:
            register = {"routeingDevice": values.device_id(point)}
            registered = await self._request(
                "routeRegister", register, f"routeRegister of {point} failed"
            )
            if registered is not None:
                self.routing.registrations[point] = registered.argument["routeRegisterReqID"]
        snapshots: dict[str, list[dict[str, Any]] | None] = {}
        for device in settings.monitored:
            snapshot = {"snapshotObject": values.device_id(device)}
            answer = await self._request(
                "snapshotDevice", snapshot, f"snapshotDevice of {device} failed"
            )
            kind, data = answer.argument["crossRefIDorSnapshotData"] if answer else (None, None)
            snapshots[device] = data if kind == "snapshotData" else None
        agents: list[tuple[str, Any]] = []
        for device in settings.devices:  # maybe not an agent's device: a refusal says so
            agent = {"device": values.device_id(device)}
            answer = await self._request(
                "getAgentState", agent, f"no agent state for {device}", logging.DEBUG
            )
            if answer is not None:
                agents.append((device, answer.argument))
        if protocol is not self._protocol:
            return
        report = self._resync.finish(snapshots, self.reactor.seconds())
        for device, result in agents:
            self.normalizer.agents.reconcile(device, result)
        self._link_resynced(report)
