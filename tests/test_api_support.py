"""Shared harness of the command API tests (no tests here).

* ``ScopedPrincipal`` / ``Tokens``: the trivial principal and authenticator the API's
  ``Principal`` / ``Authenticator`` protocols ask for (the real ones are the token store's).
* ``ScriptedAdapter``: a switch that records every call-control call and answers as told.
* ``ApiServer``: the real web site (``make_site``) with the API mounted at ``/api/v1``, the
  statistics and callback consumers, listening on 127.0.0.1.
* ``request``: a real HTTP client (Twisted's ``Agent``) that also checks every response
  against ``schemas/openapi.yaml``: its status must be documented for the operation and its
  body must match the documented schema.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from ctilink.adapters.base import SwitchAdapter
from ctilink.errors import CommandError
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.screenpop.api import CommandApi, mount
from ctilink.screenpop.callbacks import Callbacks
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.stats import Statistics
from ctilink.screenpop.web import make_site
from tests.aio import deferred_result

OPENAPI = Path(__file__).resolve().parent.parent / "schemas" / "openapi.yaml"
T0 = 1795355600.0


# -- who is asking ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ScopedPrincipal:
    """A token's grant: tenant, read or control, optional limits (a union, as in
    ``screenpop.auth``: a limited token reaches what any of its lists names)."""

    tenant: str
    scope: str = "control"
    devices: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    queues: frozenset[str] | None = None

    def _reaches(
        self, device: str | None = None, agent: str | None = None, queue: str | None = None
    ) -> bool:
        limits = ((self.devices, device), (self.agents, agent), (self.queues, queue))
        if all(limit is None for limit, _ in limits):
            return True
        return any(limit is not None and name in limit for limit, name in limits)

    def can_read(self, switch: str, **named: str | None) -> bool:
        return self._reaches(**named)

    def can_control(self, switch: str, **named: str | None) -> bool:
        return self.scope == "control" and self._reaches(**named)


TOKENS: dict[str, ScopedPrincipal] = {
    "acme-control": ScopedPrincipal("acme"),
    "acme-read": ScopedPrincipal("acme", "read"),
    "acme-6001": ScopedPrincipal("acme", devices=frozenset({"6001"}), agents=frozenset({"6001"})),
    "acme-sales": ScopedPrincipal("acme", queues=frozenset({"sales"})),
    "other-control": ScopedPrincipal("other"),
}


class Tokens:
    def __init__(self, tokens: Mapping[str, ScopedPrincipal] = TOKENS) -> None:
        self.tokens = dict(tokens)

    def authenticate(self, token: str) -> ScopedPrincipal | None:
        return self.tokens.get(token)


# -- switches ---------------------------------------------------------------------------------
CONTROL_METHODS = (
    "make_call", "answer_call", "clear_connection", "clear_call", "hold_call", "retrieve_call",
    "deflect_call", "single_step_transfer", "consultation_call", "transfer_call",
    "conference_call", "alternate_call", "reconnect_call", "set_agent_state",
)  # fmt: skip


class ScriptedAdapter(SwitchAdapter):
    """Records each call-control call; succeeds, or fails with ``failure`` when set."""

    kind = "scripted"

    def __init__(self, name: str, tenant: str) -> None:
        super().__init__(name, tenant)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.failure: CommandError | None = None
        self.next_call = 0

    def _do(self, method: str, *args: Any) -> Deferred[Any]:
        self.calls.append((method, args))
        if self.failure is not None:
            return fail(self.failure)
        if method == "make_call":
            self.next_call += 1
            return succeed(f"{self.name}-call-{self.next_call}")
        return succeed(None)


def _recorder(name: str) -> Callable[..., Deferred[Any]]:
    def method(self: ScriptedAdapter, *args: Any) -> Deferred[Any]:
        return self._do(name, *args)

    return method


for _name in CONTROL_METHODS:
    setattr(ScriptedAdapter, _name, _recorder(_name))


def delivered(call_id: str, device: str, switch: str = "pbx", **extra: Any) -> ev.Delivered:
    return ev.Delivered(
        switch=switch,
        time=T0,
        call_id=call_id,
        device=device,
        calling_number="5551234567",
        called_number="800",
        connection_state=LCS.ALERTING,
        **extra,
    )


def queued(call_id: str, queue: str, switch: str = "pbx", at: float = T0) -> ev.Queued:
    return ev.Queued(
        switch=switch,
        time=at,
        call_id=call_id,
        device=queue,
        calling_number="5559876543",
        called_number="800",
        connection_state=LCS.QUEUED,
        queue=queue,
        position=1,
    )


def agent_ready(agent: str, queue: str | None = None, switch: str = "pbx") -> ev.AgentReady:
    return ev.AgentReady(
        switch=switch, time=T0, agent=agent, state=AgentState.READY, device=agent, queue=queue
    )


# -- the server -------------------------------------------------------------------------------
class ApiServer:
    def __init__(
        self,
        hub: Hub,
        adapters: Mapping[str, SwitchAdapter],
        *,
        clock: Any = reactor,
        **api_options: Any,
    ) -> None:
        self.hub = hub
        self.adapters = dict(adapters)
        self.statistics = Statistics(hub, clock)
        self.callbacks = Callbacks(hub, self.adapters, clock, retry_delay=1.0)
        self.api = CommandApi(
            hub,
            self.adapters,
            Tokens(),
            clock,
            statistics=self.statistics,
            callbacks=self.callbacks,
            **api_options,
        )
        self.socket = EventSocket(hub, clock)
        site = make_site(self.socket)
        mount(site.resource, self.api)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/api/v1{path}"

    async def close(self) -> None:
        self.statistics.close()
        self.callbacks.close()
        self.socket.close_all()
        await deferred_result(self.port.stopListening())

    def closed(self) -> Deferred[None]:
        """``close`` as a Deferred, for fixtures' teardown (``pytest_twisted.blockon``)."""
        return Deferred.fromFuture(asyncio.ensure_future(self.close()))


# -- the client -------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes = field(repr=False, default=b"")

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


_NOTHING: Any = object()


class _Collect(Protocol):
    """A response body, whole (``readBody`` without its deprecation noise)."""

    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.parts: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(b"".join(self.parts))


async def request(
    method: str,
    url: str,
    json_body: Any = _NOTHING,
    *,
    token: str | None = "acme-control",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    chunked: bool = False,
    check: bool = True,
) -> Reply:
    """One HTTP request over TCP; the response is checked against the OpenAPI file."""
    sent = Headers({b"user-agent": [b"ctilink-tests"]})
    if token is not None:
        sent.addRawHeader(b"authorization", f"Bearer {token}".encode())
    if json_body is not _NOTHING:
        body = json.dumps(json_body).encode()
        sent.addRawHeader(b"content-type", b"application/json")
    for key, value in (headers or {}).items():
        sent.setRawHeaders(key.encode(), [value.encode()])
    producer = None
    if body is not None:
        producer = FileBodyProducer(BytesIO(body))
        if chunked:
            producer.length = UNKNOWN_LENGTH
    response = await deferred_result(
        Agent(reactor).request(method.encode(), url.encode(), sent, producer)
    )
    received: Deferred[bytes] = Deferred()
    response.deliverBody(_Collect(received))
    raw = await deferred_result(received)
    reply = Reply(
        response.code,
        {k.decode().lower(): v[-1].decode() for k, v in response.headers.getAllRawHeaders()},
        json.loads(raw) if raw else None,
        raw,
    )
    if check:
        check_against_openapi(method, url.split("/api/v1", 1)[1], reply)
    return reply


# -- the OpenAPI file -------------------------------------------------------------------------
@cache
def openapi() -> dict[str, Any]:
    with OPENAPI.open(encoding="utf-8") as f:
        document: dict[str, Any] = yaml.safe_load(f)
    return document


@cache
def _openapi_registry() -> Registry[Any]:
    resource = Resource.from_contents(openapi(), default_specification=DRAFT202012)
    return Registry().with_resource("urn:ctilink:openapi", resource)


def openapi_operations() -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation the file describes."""
    return {
        (method.upper(), path)
        for path, item in openapi()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }


def _template(path: str) -> str | None:
    path = path.split("?", 1)[0].rstrip("/") or "/"
    for template in openapi()["paths"]:
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    return None


def check_against_openapi(method: str, path: str, reply: Reply) -> None:
    """A documented operation answered with a documented status and a matching body."""
    template = _template(path)
    if template is None or method.lower() not in openapi()["paths"][template]:
        return  # unknown paths and methods: 404/405, checked by their own tests
    responses = openapi()["paths"][template][method.lower()]["responses"]
    status = str(reply.status)
    assert status in responses, f"{method} {template} answered {status}, not documented"
    pointer = f"/paths/{_escape(template)}/{method.lower()}/responses/{status}"
    answer = responses[status]
    if "$ref" in answer:
        pointer = answer["$ref"][1:]
        answer = _resolve(answer["$ref"])
    assert reply.headers.get("content-type") == "application/json"
    schema = {"$ref": f"urn:ctilink:openapi#{pointer}/content/application~1json/schema"}
    validator = Draft202012Validator(
        schema, registry=_openapi_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(reply.body)]
    assert not errors, f"{method} {path} {status}: body does not match the OpenAPI: {errors}"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _resolve(ref: str) -> Any:
    node: Any = openapi()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node
