"""Helpers for the event socket tests (``tests/test_eventsocket*.py``, ``test_auth*.py``,
``test_resume*.py``): a listening ``EventSocket``, real ``websockets`` clients, events.

A test that must show a client did *not* receive something publishes it, then a marker
the client does see, and reads up to the marker (``read_until``): whatever was not sent
cannot arrive after the marker, because a client's messages keep the hub's order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import websockets
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.screenpop.auth import Scope, Token, TokenStore, new_token
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.resume import EventSource
from ctilink.screenpop.web import make_site
from tests._schemas import validate_wire

T0 = 1795355600.0


class Server:
    """An ``EventSocket`` on 127.0.0.1 (a random port) in front of ``hub``."""

    def __init__(
        self,
        hub: Hub | None = None,
        *,
        tokens: TokenStore | None = None,
        tenants: Mapping[str, str] | None = None,
        event_log: EventSource | None = None,
        **options: Any,
    ) -> None:
        self.hub = hub if hub is not None else Hub()
        self.socket = EventSocket(
            self.hub, reactor, tokens=tokens, tenants=tenants, event_log=event_log, **options
        )
        self.port: Any = reactor.listenTCP(0, make_site(self.socket), interface="127.0.0.1")

    def url(self, token: str | None = None, **query: str | int) -> str:
        params: dict[str, str | int] = dict(query)
        if token is not None:
            params["access_token"] = token
        tail = f"?{urlencode(params)}" if params else ""
        return f"ws://127.0.0.1:{self.port.getHost().port}/events{tail}"

    def publish(self, *events: ev.Event) -> list[ev.Event]:
        return [self.hub.publish(event) for event in events]

    def stop(self) -> Deferred[None]:
        """Close the clients and the port (``await deferred_result(server.stop())``)."""
        self.socket.close_all()
        return maybeDeferred(self.port.stopListening)


class Tokens:
    """Issue tokens as an operator would and keep the secrets for the test's clients."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.tokens: dict[str, Token] = {}

    def issue(self, id: str, tenant: str, scope: Scope = Scope.READ, **limits: Any) -> str:
        secret, token = new_token(id, tenant, scope, **limits)
        self.secrets[id], self.tokens[id] = secret, token
        return secret

    def store(self, *ids: str) -> TokenStore:
        return TokenStore(self.tokens[i] for i in (ids or self.tokens))


async def recv_json(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
    validate_wire(message)
    return message  # type: ignore[no-any-return]


async def read_until(ws: Any, marker: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Messages up to and including the ``link_resynced`` whose detail is ``marker``."""
    received = []
    while True:
        message = await recv_json(ws, timeout)
        received.append(message)
        if message["type"] == "link_resynced" and message.get("detail") == marker:
            return received


def marker(switch: str, name: str) -> ev.LinkResynced:
    return ev.LinkResynced(switch=switch, time=T0, detail=name)


async def wait_open(server: Server, count: int) -> None:
    from tests.aio import until

    await until(lambda: len(server.socket.clients) == count)


def connect(url: str, **kwargs: Any) -> Any:
    return websockets.connect(url, open_timeout=5, **kwargs)


# -- events ----------------------------------------------------------------------------
def call(
    cls: type[ev.CallEvent],
    call_id: str,
    device: str | None,
    state: LCS | None,
    *,
    switch: str = "pbx",
    **fields: Any,
) -> ev.CallEvent:
    fields.setdefault("calling_number", "5551234567")
    fields.setdefault("called_number", "800")
    return cls(
        switch=switch,
        time=fields.pop("time", T0),
        call_id=call_id,
        device=device,
        connection_state=state,
        **fields,
    )


def inbound_call(
    call_id: str, agent: str, *, switch: str = "pbx", queue: str = "support"
) -> list[ev.Event]:
    """A call queued at ``queue``, offered to and answered by ``agent`` (its device too)."""
    return [
        call(ev.Delivered, call_id, "800", LCS.ALERTING, switch=switch),
        call(
            ev.Queued, call_id, queue, LCS.QUEUED, switch=switch, queue=queue, position=1,
            last_redirection_device="800",
        ),
        call(
            ev.Delivered, call_id, agent, LCS.ALERTING, switch=switch, queue=queue, agent=agent,
            last_redirection_device=queue,
        ),
        call(ev.Established, call_id, agent, LCS.CONNECTED, switch=switch, queue=queue,
             agent=agent),
    ]  # fmt: skip


def hang_up(call_id: str, agent: str, *, switch: str = "pbx") -> list[ev.Event]:
    """The caller hangs up, then the agent's leg, then the call ends."""
    common = {"switch": switch, "queue": "support", "agent": agent}
    return [
        call(ev.ConnectionCleared, call_id, "5551234567", LCS.NULL, **common),
        call(ev.ConnectionCleared, call_id, agent, LCS.NULL, **common),
        call(ev.CallCleared, call_id, None, None, **common),
    ]


def agent_event(
    cls: type[ev.AgentEvent], agent: str, *, switch: str = "pbx", **fields: Any
) -> ev.AgentEvent:
    states = {
        ev.AgentLoggedOn: AgentState.READY,
        ev.AgentReady: AgentState.READY,
        ev.AgentBusy: AgentState.BUSY,
        ev.AgentNotReady: AgentState.NOT_READY,
        ev.AgentLoggedOff: AgentState.LOGGED_OFF,
    }
    fields.setdefault("device", agent)
    return cls(switch=switch, time=T0, agent=agent, state=states[cls], **fields)


# -- TLS -------------------------------------------------------------------------------
def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signs for localhost and 127.0.0.1:
    (CA certificate, server key, server certificate), as PEM files in ``directory``."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("ctilink test CA"))
        .issuer_name(name("ctilink test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.key", directory / "server.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths
