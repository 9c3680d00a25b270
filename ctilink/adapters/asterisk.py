"""The live Asterisk link: an AMI client on Twisted, over ctilink's own codec.

Theory of operation
-------------------
``AmiClientProtocol`` is a thin shim: bytes in go to ``AsteriskAdapter.received``, bytes
out come from ``send``. The adapter owns everything that outlives a connection (the
normalizer, hence call ids and agents) and everything per connection (the codec, reset by
``AmiInbound.reset``; the pending-action table, failed on loss).

Link life, one connection after another (Twisted ``ClientService``, capped exponential
backoff; what the CSTA adapter shares is in ``ctilink.adapters.link``):

    TCP connected → banner (within connect_timeout) → [Challenge, MD5] Login with
    ``Events: <classes>`` (floods such as Newexten/VarSet are filtered by Asterisk
    itself unless ``dialplan`` is asked for) → ``link_up`` → resync (CoreShowChannels,
    QueueStatus; see ctilink.ami.resync) → ``link_resynced`` → live events and a Ping
    every ``ping_interval``; a Ping unanswered within ``ping_timeout`` (a silent or
    half-open peer) or a framing error closes the connection → ``link_down`` → reconnect.

Every action resolves or fails within its timeout; an action pending when the link drops
fails with ``link_down`` and is never sent again. An exception in an event handler is
logged by the normalizer and the link carries on. Call control lives in
``ctilink.adapters.asterisk_control``.

Why not panoramisk: its parser decodes each chunk separately (a UTF-8 character split
across reads is corrupted, a non-UTF-8 byte dropped) and strips messages (an empty last
value is lost); its action futures re-send pending actions after a reconnect (a second
Originate), never resolve some (QueueAdd) or any sent while disconnected; its ping never
checks the reply; a callback exception closes the connection; and its reconnect loop is
asyncio-native, so no Twisted clock can drive it in tests. Covering all of that means
replacing its parser, action table, ping and reconnect: what would remain is the TCP
connect. One codec (ctilink.ami.codec) now serves live links and replays.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, FirstError, fail, gatherResults
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from ctilink.adapters.ami import AmiInbound
from ctilink.adapters.asterisk_control import AsteriskCallControl
from ctilink.adapters.link import LinkAdapter, LinkProtocol, client_service
from ctilink.ami.actions import ActionFailed, AmiResult, PendingActions
from ctilink.ami.codec import serialize
from ctilink.ami.message import AmiMessage
from ctilink.ami.normalizer import AmiNormalizer, new_call_id
from ctilink.ami.resync import Resync
from ctilink.config import AsteriskOptions
from ctilink.errors import CommandError, RemoteProtocolError
from ctilink.model import events as ev

log = logging.getLogger(__name__)

# Never written to a recording: the login secret and the MD5 key derived from it.
_SECRET_HEADERS = frozenset({"secret", "key"})
RESYNC_TIMEOUT = 120.0  # a list of thousands of channels takes a while
LOGOFF_WAIT = 1.0


class AmiClientProtocol(LinkProtocol):
    def send(self, message: AmiMessage) -> None:
        self.write(serialize(message))


class AsteriskAdapter(LinkAdapter[AmiClientProtocol], AsteriskCallControl):
    kind = "asterisk"
    _log = log
    state: str  # down, banner, login, up

    def __init__(
        self,
        name: str,
        options: AsteriskOptions,
        publish: Callable[[ev.Event], object],
        reactor: Any,
        *,
        tenant: str = "default",
        endpoint: IStreamClientEndpoint | None = None,
        call_id_factory: Callable[[], str] = new_call_id,
        retry_policy: Callable[[int], float] | None = None,
    ) -> None:
        super().__init__(name, tenant)
        self.options = options
        self.reactor = reactor
        self._publish = publish
        self.normalizer = AmiNormalizer(
            name,
            publish,
            call_id_factory=call_id_factory,
            call_data_variables=frozenset(options.call_data_variables),
        )
        self._call_ids = call_id_factory
        self.normalizer.register("AgentComplete", self.agent_complete)
        self.pending = PendingActions(reactor, prefix=f"ctilink-{name}")
        self.inbound = AmiInbound(self.normalizer, claim=self._claim)
        self.inbound.taps = self.taps
        self._resync = Resync(self.normalizer)
        self._banner_timer: IDelayedCall | None = None
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = reactor
        self._service = client_service(
            reactor,
            endpoint,
            (options.host, options.port),
            options.connect_timeout,
            lambda: AmiClientProtocol(self),
            retry_policy,
            initial_delay=0.5,
            max_delay=options.reconnect_max_delay,
        )

    # -- service ---------------------------------------------------------------------------
    def start(self) -> None:
        log.info(
            "switch %s: connecting to Asterisk at %s:%d as %s",
            self.name,
            self.options.host,
            self.options.port,
            self.options.username,
        )
        self._service.startService()

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.state == "up":
            with contextlib.suppress(ActionFailed):  # leaving anyway
                await self.send_action("Logoff", timeout=LOGOFF_WAIT)
        await self._service.stopService()

    def first_bytes(self) -> bytes:
        return self.inbound.banner_line

    # -- the connection --------------------------------------------------------------------
    def _opened(self, protocol: AmiClientProtocol) -> None:
        self.inbound.reset()
        self.state = "banner"
        self._banner_timer = self.reactor.callLater(
            self.options.connect_timeout, self._no_banner, protocol
        )

    def _no_banner(self, protocol: AmiClientProtocol) -> None:
        log.warning(
            "switch %s: no AMI banner within %g s; closing",
            self.name,
            self.options.connect_timeout,
        )
        protocol.abort()

    def _received(self, protocol: AmiClientProtocol, data: bytes) -> None:
        try:
            self.inbound.data_received(data, self.reactor.seconds())
        except RemoteProtocolError as exc:
            log.error("switch %s: broken AMI stream (%s); reconnecting", self.name, exc)
            protocol.abort()
            return
        if self.state == "banner" and self.inbound.banner is not None:
            if self._banner_timer is not None and self._banner_timer.active():
                self._banner_timer.cancel()
            self.state = "login"
            Deferred.fromCoroutine(self._login(protocol))

    def _closed(self, reason: Failure) -> str:
        if self._banner_timer is not None and self._banner_timer.active():
            self._banner_timer.cancel()
        if self._pinger.running:
            self._pinger.stop()
        self.pending.fail_all("link_down", "the AMI connection was lost before the answer")
        return reason.getErrorMessage()

    def _claim(self, message: AmiMessage) -> bool:
        if self.pending.owns(message):
            self.pending.receive(message)
            return True
        return message.kind == "response"  # an answer we no longer wait for: drop it

    # -- login, resync, heartbeat ----------------------------------------------------------
    async def _login(self, protocol: AmiClientProtocol) -> None:
        options = self.options
        fields: dict[str, str] = {"Username": options.username}
        try:
            if options.auth == "md5":
                challenge = await self._send(protocol, "Challenge", {"AuthType": "MD5"})
                key = challenge.response.get("Challenge", "") + options.secret.reveal()
                fields |= {"AuthType": "MD5", "Key": hashlib.md5(key.encode()).hexdigest()}
            else:
                fields["Secret"] = options.secret.reveal()
            fields["Events"] = ",".join(options.events) or "off"
            await self._send(protocol, "Login", fields)
        except ActionFailed as exc:
            if exc.code == "link_down":
                return
            log.log(
                self._failure_level(),
                "switch %s: AMI login as %s refused (%s); will retry",
                self.name,
                options.username,
                exc.message,
            )
            protocol.abort()
            return
        if protocol is not self._protocol:
            return
        banner = self.inbound.banner
        version = banner.version if banner is not None else "?"
        self._link_up(f"AMI {version}", (options.host, options.port))
        self._pinger.start(options.ping_interval, now=False)
        await self._resync_now(protocol)

    async def _resync_now(self, protocol: AmiClientProtocol) -> None:
        self._resync.begin()
        lists = [
            self._send(protocol, "CoreShowChannels", {}, timeout=RESYNC_TIMEOUT),
            self._send(protocol, "QueueStatus", {}, timeout=RESYNC_TIMEOUT),
        ]
        try:
            channels, queues = await gatherResults(lists, consumeErrors=True)
        except FirstError as exc:
            if protocol is self._protocol:
                log.warning(
                    "switch %s: resync failed (%s); reconnecting",
                    self.name,
                    exc.subFailure.getErrorMessage(),
                )
                protocol.abort()
            return
        if protocol is not self._protocol:
            return
        self._link_resynced(
            self._resync.finish(channels.events, queues.events, self.reactor.seconds())
        )

    def _ping(self) -> None:
        protocol = self._protocol
        if protocol is None or self.state != "up":
            return
        timeout = self.options.ping_timeout
        done = self._send(protocol, "Ping", {}, timeout=timeout)

        def unanswered(failure: Failure) -> None:
            if isinstance(failure.value, ActionFailed) and failure.value.code == "timeout":
                log.warning(
                    "switch %s: no answer to Ping within %g s; closing the link", self.name, timeout
                )
                protocol.abort()

        done.addErrback(unanswered)

    # -- actions ---------------------------------------------------------------------------
    def _send(
        self,
        protocol: AmiClientProtocol,
        action: str,
        fields: Mapping[str, str | list[str]],
        timeout: float | None = None,
    ) -> Deferred[AmiResult]:
        action_id = self.pending.new_id()
        headers: list[tuple[str, str]] = [("Action", action), ("ActionID", action_id)]
        for key, value in fields.items():
            values = value if isinstance(value, list) else [value]
            headers.extend((key, item) for item in values)
        try:
            payload = AmiMessage(headers)
            serialize(payload)  # refuses CR/LF injection before anything is registered
        except Exception as exc:
            return fail(CommandError("invalid", f"{action}: {exc}"))
        deferred = self.pending.expect(action_id, action, timeout or self.options.action_timeout)
        protocol.send(payload)
        if self.taps:
            recorded = serialize(AmiMessage([
                (key, "********" if key.lower() in _SECRET_HEADERS else value)
                for key, value in headers
            ]))  # fmt: skip
            for tap in self.taps:
                tap(self.reactor.seconds(), "tx", recorded)
        return deferred

    def send_action(
        self,
        action: str,
        fields: Mapping[str, str | list[str]] | None = None,
        timeout: float | None = None,
    ) -> Deferred[AmiResult]:
        """Send an action on the current connection; fails at once if the link is not up."""
        if self.state != "up" or self._protocol is None:
            return fail(ActionFailed("link_down", action, f"switch {self.name} is not connected"))
        return self._send(self._protocol, action, fields or {}, timeout)
