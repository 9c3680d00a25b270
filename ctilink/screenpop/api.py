"""The REST command API: call control, agent state, web callbacks and statistics.

Theory of operation
-------------------
``CommandApi`` is one twisted.web leaf resource, mounted at ``/api/v1`` (``mount``). The
table ``ROUTES`` (method, path template, handler) is the whole API; ``schemas/openapi.yaml``
describes each entry and a test keeps the two equal. Every request takes the same steps:

1. **route**: method and path against ``ROUTES``: 404 unknown path, 405 (with ``Allow``);
2. **authenticate**: ``Authorization: Bearer <token>`` → ``Authenticator.authenticate`` →
   a ``Principal``, else 401 (with ``WWW-Authenticate: Bearer``);
3. **body**: a JSON object, ``Content-Type: application/json``, at most ``max_body`` bytes
   (413); malformed JSON, a wrong type or an unknown field → 400 naming the field;
4. **switch**: a call command goes to the switch holding the call (state tracker); a device,
   agent or callback command to the body's ``switch`` or the tenant's only switch. Another
   tenant's switch or call is "not found", exactly like one that does not exist;
5. **authorize**: ``principal.can_control(switch, device=/agent=/queue=)`` names what the
   command acts on; reads are filtered by ``can_read``. Refused → 403;
6. **execute**: the adapter method (the common call-control interface); its ``CommandError``
   becomes the HTTP status of ``STATUS_BY_CODE`` with ``{"error": code, "message": ...}``.

Numbers a command dials (make call, deflect, transfers, callbacks) must be dialable
(``DIALABLE``) and match ``allowed_numbers``; the adapter then dials only into the switch's
allowed destinations (Asterisk: ``originate_contexts``).

The seam to authentication: ``Principal`` and ``Authenticator`` below are all the API needs
from tokens (``ctilink.screenpop.auth``; the daemon wires a token store to them); a
switch's tenant is ``SwitchAdapter.tenant``.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ctilink.adapters.base import AGENT_STATES, SwitchAdapter
from ctilink.errors import CommandError
from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.model.wire import event_to_wire, iso_time
from ctilink.screenpop.api_input import (
    DIALABLE,
    NAME,
    TEXT,
    ApiError,
    Fields,
    Route,
    find_route,
    invalid,
    read_body,
    read_query,
    rule,
)
from ctilink.screenpop.auth import bearer_token
from ctilink.screenpop.callbacks import (
    CallbackLimitError,
    CallbackRequest,
    Callbacks,
    CallbackStateError,
    Status,
)
from ctilink.screenpop.stats import Statistics

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
STATUS_BY_CODE = {
    "unsupported": 501,
    "not_allowed": 403,
    "invalid": 400,
    "not_found": 404,
    "link_down": 503,
    "timeout": 504,
    "error": 502,
}


class Principal(Protocol):
    """An authenticated token, as the API needs it (over ``screenpop.auth.Token``).

    ``can_read``/``can_control`` answer "may this principal read / act on what is named, on
    ``switch``?". The API names what a command acts on: a device command its ``device``,
    an agent command the ``agent`` (and the ``queue`` when one is given), a callback its
    ``queue``; a switch-wide act names nothing. The API checks the tenant itself (the
    switch's ``tenant`` must be the principal's) before asking."""

    @property
    def tenant(self) -> str: ...

    def can_read(
        self,
        switch: str,
        *,
        device: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
    ) -> bool: ...

    def can_control(
        self,
        switch: str,
        *,
        device: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
    ) -> bool: ...


class Authenticator(Protocol):
    """Turns a bearer token into a principal (or an awaitable of one). A refusal is None
    (401) or an exception carrying ``status`` (401 or 403) and ``code``, whose message
    the client gets (``screenpop.auth.AuthError`` does: ``token_expired``...)."""

    def authenticate(self, token: str) -> Principal | Awaitable[Principal | None] | None: ...


Reply = tuple[int, dict[str, Any]]


# Call commands: path name → (adapter method, whether it takes a destination number).
CALL_COMMANDS: dict[str, tuple[str, bool]] = {
    "answer": ("answer_call", False),
    "hold": ("hold_call", False),
    "retrieve": ("retrieve_call", False),
    "clear_connection": ("clear_connection", False),
    "deflect": ("deflect_call", True),
    "blind_transfer": ("single_step_transfer", True),
    "consultation": ("consultation_call", True),
}
# Commands on a held and an active call at one device: path name → adapter method.
JOIN_COMMANDS: dict[str, str] = {
    "transfer": "transfer_call",
    "conference": "conference_call",
    "alternate": "alternate_call",
    "reconnect": "reconnect_call",
}
ROUTES: tuple[Route, ...] = (
    Route("POST", "/calls", "make_call"),
    *(Route("POST", f"/calls/{{call_id}}/{name}", "call_command") for name in CALL_COMMANDS),
    Route("POST", "/calls/{call_id}/clear", "clear_call"),
    *(Route("POST", f"/calls/{{call_id}}/{name}", "join_calls") for name in JOIN_COMMANDS),
    Route("POST", "/agents/{agent}/state", "agent_state"),
    Route("POST", "/callbacks", "request_callback"),
    Route("GET", "/callbacks", "list_callbacks"),
    Route("GET", "/callbacks/{callback_id}", "get_callback"),
    Route("DELETE", "/callbacks/{callback_id}", "cancel_callback"),
    Route("GET", "/stats/queues", "queue_stats"),
    Route("GET", "/stats/agents", "agent_stats"),
)


@dataclass
class Context:
    route: Route
    params: dict[str, str]
    principal: Principal
    body: Fields
    query: Fields


class CommandApi(Resource):
    """``/api/v1``: every route of ``ROUTES``."""

    isLeaf = True

    def __init__(
        self,
        hub: Hub,
        adapters: Mapping[str, SwitchAdapter],
        authenticator: Authenticator,
        clock: IReactorTime,
        *,
        statistics: Statistics | None = None,
        callbacks: Callbacks | None = None,
        allowed_numbers: re.Pattern[str] = DIALABLE,
        max_body: int = MAX_BODY,
    ) -> None:
        super().__init__()
        self.tracker = hub.tracker
        self.adapters = adapters
        self.authenticator = authenticator
        self.clock = clock
        self.statistics = statistics
        self.callbacks = callbacks
        self.allowed_numbers = allowed_numbers
        self.max_body = max_body

    # -- HTTP plumbing ---------------------------------------------------------------------
    def render(self, request: Request) -> int:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def respond(reply: tuple[int, dict[str, Any], dict[str, str]]) -> None:
            if gone:
                return
            status, body, headers = reply
            request.setResponseCode(status)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            for name, value in headers.items():
                request.setHeader(name.encode("ascii"), value.encode("ascii"))
            request.write(json.dumps(body, ensure_ascii=False).encode("utf-8"))
            request.finish()

        handled = Deferred.fromCoroutine(self._handle(request)).addCallback(respond)
        handled.addErrback(lambda failure: log.error("api: no response: %s", failure.value))
        return NOT_DONE_YET

    async def _handle(self, request: Request) -> tuple[int, dict[str, Any], dict[str, str]]:
        method = (request.method or b"").decode("ascii", "replace")
        path = request.path.decode("ascii", "replace")
        headers: dict[str, str] = {}
        try:
            route, params = find_route(ROUTES, method, request)
            principal = await self._authenticate(request)
            fields = read_body(request, self.max_body)
            ctx = Context(route, params, principal, fields, read_query(request))
            status, body = await getattr(self, "_" + route.handler)(ctx)
        except ApiError as exc:
            status, body, headers = exc.status, _error(exc.code, str(exc)), exc.headers
        except CommandError as exc:
            status, body = STATUS_BY_CODE.get(exc.code, 502), _error(exc.code, str(exc))
        except Exception:
            log.exception("api: %s %s failed", method, path)
            status, body = 500, _error("internal", "internal error")
        if method != "GET":
            log.info("api: %s %s -> %d", method, path, status)
        return status, body, headers

    async def _authenticate(self, request: Request) -> Principal:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        token = bearer_token(header)
        principal = None
        if token is not None:
            try:
                found = self.authenticator.authenticate(token)
                principal = await found if inspect.isawaitable(found) else found
            except Exception as exc:
                status, code = getattr(exc, "status", None), getattr(exc, "code", None)
                if status not in (401, 403) or not isinstance(code, str):
                    raise
                extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
                raise ApiError(status, code, str(exc), **extra) from None
        if principal is None:
            why = "a valid bearer token is required" if header else "no bearer token"
            raise ApiError(401, "unauthorized", why, **{"WWW-Authenticate": "Bearer"})
        return principal

    # -- finding the switch ----------------------------------------------------------------
    def _switch(self, ctx: Context, body: Fields) -> SwitchAdapter:
        """The body's ``switch``, or the tenant's only switch."""
        name = body.optional("switch")
        tenant = ctx.principal.tenant
        if name is not None:
            adapter = self.adapters.get(name)
            if adapter is None or adapter.tenant != tenant:
                raise CommandError("not_found", f"no switch {name!r}")
            return adapter
        mine = [a for a in self.adapters.values() if a.tenant == tenant]
        if len(mine) != 1:
            raise invalid(f"field 'switch' is required: tenant {tenant!r} has {len(mine)} switches")
        return mine[0]

    def _call_switch(self, ctx: Context, call_id: str) -> SwitchAdapter:
        call = self.tracker.calls.get(call_id)
        adapter = self.adapters.get(call.switch) if call is not None else None
        if adapter is None or adapter.tenant != ctx.principal.tenant:
            raise CommandError("not_found", f"no live call {call_id!r}")
        return adapter

    def _number(self, body: Fields, name: str) -> str:
        number = body.text(name, DIALABLE)
        if not self.allowed_numbers.match(number):
            raise CommandError("not_allowed", f"{number!r} is not an allowed destination")
        return number

    @staticmethod
    def _authorize(ctx: Context, switch: str, **named: str | None) -> None:
        if not ctx.principal.can_control(switch, **named):
            what = ", ".join(f"{k} {v!r}" for k, v in named.items() if v) or "the switch"
            raise ApiError(403, "forbidden", f"this token may not control {what} on {switch}")

    # -- calls -----------------------------------------------------------------------------
    async def _make_call(self, ctx: Context) -> Reply:
        adapter = self._switch(ctx, ctx.body)
        device = ctx.body.text("device")
        number = self._number(ctx.body, "number")
        data = ctx.body.data("data")
        ctx.body.done()
        self._authorize(ctx, adapter.name, device=device)
        call_id = await adapter.make_call(device, number, data or None)
        return 200, {"call_id": call_id, "switch": adapter.name}

    async def _call_command(self, ctx: Context) -> Reply:
        command = ctx.route.path.rsplit("/", 1)[1]
        method, dials = CALL_COMMANDS[command]
        call_id = ctx.params["call_id"]
        adapter = self._call_switch(ctx, call_id)
        device = ctx.body.text("device")
        args = [call_id, device]
        if dials:
            args.append(self._number(ctx.body, "destination"))
        ctx.body.done()
        self._authorize(ctx, adapter.name, device=device)
        await getattr(adapter, method)(*args)
        return 200, {"call_id": call_id, "switch": adapter.name, "command": command}

    async def _clear_call(self, ctx: Context) -> Reply:
        call_id = ctx.params["call_id"]
        adapter = self._call_switch(ctx, call_id)
        ctx.body.done()
        call = self.tracker.calls[call_id]
        if not any(
            ctx.principal.can_control(adapter.name, device=device) for device in call.connections
        ):
            self._authorize(ctx, adapter.name)  # none of its parties: the whole switch
        await adapter.clear_call(call_id)
        return 200, {"call_id": call_id, "switch": adapter.name, "command": "clear"}

    async def _join_calls(self, ctx: Context) -> Reply:
        command = ctx.route.path.rsplit("/", 1)[1]
        held = ctx.params["call_id"]
        adapter = self._call_switch(ctx, held)
        device = ctx.body.text("device")
        active = ctx.body.text("active_call_id")
        ctx.body.done()
        if self._call_switch(ctx, active) is not adapter:
            raise invalid("the held and the active call are on different switches")
        self._authorize(ctx, adapter.name, device=device)
        await getattr(adapter, JOIN_COMMANDS[command])(held, active, device)
        return 200, {"call_id": held, "switch": adapter.name, "command": command}

    # -- agents ----------------------------------------------------------------------------
    async def _agent_state(self, ctx: Context) -> Reply:
        agent = ctx.params["agent"]
        if not NAME.match(agent):
            raise invalid(f"agent {agent[:100]!r} is not valid ({rule(NAME)})")
        adapter = self._switch(ctx, ctx.body)
        state = ctx.body.text("state")
        queue = ctx.body.optional("queue")
        reason = ctx.body.optional("reason", TEXT)
        ctx.body.done()
        if state not in AGENT_STATES:
            raise invalid(f"field 'state': {state!r} is not one of {', '.join(AGENT_STATES)}")
        if state == "logged_on" and queue is None:
            raise invalid("field 'queue' is required to log on")
        if reason is not None and state != "not_ready":
            raise invalid("field 'reason' goes only with state 'not_ready'")
        self._authorize(ctx, adapter.name, agent=agent, queue=queue)
        await adapter.set_agent_state(agent, state, queue, reason)
        return 200, {"agent": agent, "switch": adapter.name, "state": state}

    # -- callbacks -------------------------------------------------------------------------
    def _callbacks(self) -> Callbacks:
        if self.callbacks is None:
            raise CommandError("unsupported", "web callbacks are not enabled")
        return self.callbacks

    def _own_callback(self, ctx: Context, read: bool) -> CallbackRequest:
        found = self._callbacks().get(ctx.params["callback_id"])
        check = ctx.principal.can_read if read else ctx.principal.can_control
        if found is None or found.tenant != ctx.principal.tenant:
            raise CommandError("not_found", f"no callback {ctx.params['callback_id']!r}")
        if not check(found.switch, queue=found.queue):
            raise ApiError(403, "forbidden", f"this token may not see queue {found.queue!r}")
        return found

    async def _request_callback(self, ctx: Context) -> Reply:
        callbacks = self._callbacks()
        body = ctx.body
        tenant = body.optional("tenant")
        if tenant is not None and tenant != ctx.principal.tenant:
            raise ApiError(403, "forbidden", f"this token is not of tenant {tenant!r}")
        adapter = self._switch(ctx, body)
        queue = body.text("queue")
        number = self._number(body, "number")
        name = body.optional("name", TEXT)
        data = body.data("data")
        not_before = body.time("not_before")
        body.done()
        self._authorize(ctx, adapter.name, queue=queue)
        try:
            callback = callbacks.request(
                adapter.tenant, adapter.name, queue, number,
                name=name, data=data, not_before=not_before,
            )  # fmt: skip
        except CallbackLimitError as exc:
            raise ApiError(429, "too_many", str(exc)) from None
        return 201, _callback_body(callback)

    async def _list_callbacks(self, ctx: Context) -> Reply:
        switch = ctx.query.optional("switch")
        queue = ctx.query.optional("queue")
        status = ctx.query.optional("status")
        ctx.query.done()
        if status is not None and status not in {s.value for s in Status}:
            raise invalid(f"parameter 'status': {status!r} is not a callback status")
        found = [
            _callback_body(cb)
            for cb in self._callbacks().all()
            if cb.tenant == ctx.principal.tenant
            and switch in (None, cb.switch)
            and queue in (None, cb.queue)
            and status in (None, cb.status.value)
            and ctx.principal.can_read(cb.switch, queue=cb.queue)
        ]
        return 200, {"callbacks": found}

    async def _get_callback(self, ctx: Context) -> Reply:
        return 200, _callback_body(self._own_callback(ctx, read=True))

    async def _cancel_callback(self, ctx: Context) -> Reply:
        callback = self._own_callback(ctx, read=False)
        try:
            self._callbacks().cancel(callback.callback_id)
        except CallbackStateError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return 200, _callback_body(callback)

    # -- statistics ------------------------------------------------------------------------
    def _readable(
        self, ctx: Context, items: Iterable[Event], **name: Callable[[Any], str]
    ) -> list[dict[str, Any]]:
        switch = ctx.query.optional("switch")
        queue = ctx.query.optional("queue")
        ctx.query.done()
        out = []
        for item in items:
            adapter = self.adapters.get(item.switch)
            if adapter is None or adapter.tenant != ctx.principal.tenant:
                continue
            if switch not in (None, item.switch):
                continue
            wire = _strip(event_to_wire(item))
            if (
                queue is not None
                and queue != wire.get("queue")
                and queue not in wire.get("queues", ())
            ):
                continue
            named = {key: get(item) for key, get in name.items()}
            if ctx.principal.can_read(item.switch, **named):
                out.append(wire)
        return out

    def _statistics(self) -> Statistics:
        if self.statistics is None:
            raise CommandError("unsupported", "statistics are not enabled")
        return self.statistics

    async def _queue_stats(self, ctx: Context) -> Reply:
        now = self.clock.seconds()
        items = self._statistics().all_queue_stats(now)
        queues = self._readable(ctx, items, queue=lambda s: s.queue)
        return 200, {"time": iso_time(now), "queues": queues}

    async def _agent_stats(self, ctx: Context) -> Reply:
        now = self.clock.seconds()
        items = self._statistics().all_agent_stats(now)
        agents = self._readable(ctx, items, agent=lambda s: s.agent)
        return 200, {"time": iso_time(now), "agents": agents}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}


def _strip(wire: dict[str, Any]) -> dict[str, Any]:
    """An event's wire object as a REST item: without the stream's ``seq`` and ``type``."""
    return {k: v for k, v in wire.items() if k not in ("seq", "type")}


def _callback_body(callback: CallbackRequest) -> dict[str, Any]:
    return _strip(event_to_wire(callback.to_event()))


def mount(root: Resource, api: CommandApi) -> None:
    """Put ``api`` at ``/api/v1`` under the site's root resource."""
    versions = Resource()
    versions.putChild(b"v1", api)
    root.putChild(b"api", versions)
