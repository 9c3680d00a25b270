"""The FastAGI server over real loopback TCP, driven by asyncio clients playing Asterisk.

I/O is real (the reactor's sockets); time is a ``task.Clock`` wherever a test depends on
it (session timeout, router budget), so nothing here sleeps for a timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, fail

from ctilink.agi.server import FastAgiFactory
from ctilink.hub import Hub
from ctilink.model.events import Event, RouteRequest, RouteSelected
from ctilink.model.wire import event_to_wire
from ctilink.routing import RouteDecision, RouteQuery, Router, StaticRouter
from ctilink.traces import read_trace
from tests._schemas import validate_wire
from tests.aio import aio_test, until
from tests.conftest import TRACES

TRACE = read_trace(TRACES / "fastagi-route.jsonl").sessions[0]
RX = [r.data for r in TRACE.records if r.direction == "rx"]
TX = [r.data for r in TRACE.records if r.direction == "tx"]
ENV = RX[0]
FALLBACK = RouteDecision("support", None, 0, "fallback")
OK = b"200 result=1\n"
LOGGER = "ctilink.agi.server"


class Server:
    """A FastAgiFactory listening on a free loopback port, with what it published."""

    def __init__(self, router: Router, clock: Any = reactor, **options: Any) -> None:
        self.hub = Hub()
        self.events: list[Event] = []
        self.hub.subscribe(self.events.append)
        self.resolved: list[tuple[str, str]] = []
        self.factory = FastAgiFactory(
            "pbx", router, self.hub.publish, self.resolve, clock, fallback=FALLBACK, **options
        )
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")

    def resolve(self, uniqueid: str, channel: str) -> str:
        self.resolved.append((uniqueid, channel))
        return f"call-{uniqueid}"

    @property
    def number(self) -> int:
        return int(self.port.getHost().port)  # type: ignore[attr-defined]

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        pytest_twisted.blockon(server.port.stopListening())


def serve(servers: list[Server], router: Router, clock: Any = reactor, **options: Any) -> Server:
    server = Server(router, clock, **options)
    servers.append(server)
    return server


class Client:
    """Asterisk's side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.peer = f"127.0.0.1:{writer.get_extra_info('sockname')[1]}"

    @classmethod
    async def connect(cls, server: Server) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", server.number))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def line(self, timeout: float = 5.0) -> bytes:
        """The next command line, or b"" once the server closed the connection."""
        try:
            return await asyncio.wait_for(self.reader.readline(), timeout)
        except ConnectionResetError:
            return b""

    async def silent(self, for_seconds: float = 0.1) -> bool:
        """True if the server sends nothing and keeps the connection open meanwhile."""
        try:
            await asyncio.wait_for(self.reader.readline(), for_seconds)
        except TimeoutError:
            return True
        return False

    async def session(self, env: bytes = ENV, reply: bytes = OK) -> list[bytes]:
        """Send the environment, answer every command with ``reply``; the commands."""
        self.send(env)
        commands = []
        while command := await self.line():
            commands.append(command)
            self.send(reply)
        return commands

    def close(self) -> None:
        self.writer.close()


async def run_session(server: Server, env: bytes = ENV) -> list[bytes]:
    client = await Client.connect(server)
    try:
        return await client.session(env)
    finally:
        client.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- the real exchange -----------------------------------------------------------------------
@aio_test
async def test_replays_the_real_asterisk_exchange(servers: list[Server]) -> None:
    server = serve(servers, StaticRouter(default_queue="sales", default_priority=10))
    client = await Client.connect(server)
    replies = iter(RX[1:])
    client.send(ENV)
    commands = []
    while command := await client.line():
        commands.append(command)
        client.send(next(replies))
    client.close()

    # The real service sent these two, then a VERBOSE of its own that ours need not send.
    assert commands == [
        b'SET VARIABLE ROUTE_QUEUE "sales"\n',
        b'SET VARIABLE ROUTE_PRIORITY "10"\n',
    ]
    assert commands == TX[:2] and TX[2].startswith(b"VERBOSE ")
    assert server.resolved == [("1795355841.103", "Local/803@routed-00000033;2")]

    (request,) = server.of(RouteRequest)
    (selected,) = server.of(RouteSelected)
    assert request.seq < selected.seq
    for event in (request, selected):
        assert event.call_id == "call-1795355841.103"
        assert (event.device, event.calling_number, event.called_number) == (
            "803",
            "5554446666",
            "803",
        )
        assert event.switch == "pbx" and event.connection_state is None
        validate_wire(event_to_wire(event))
    assert request.route_data == {
        "script": "route",
        "channel": "Local/803@routed-00000033;2",
        "uniqueid": "1795355841.103",
        "context": "routed",
        "extension": "803",
        "priority": "3",
        "calleridname": "Dana Vip",
        "language": "en",
        "arg_1": "support",
    }
    assert (selected.destination, selected.priority, selected.rule) == ("queue:sales", 10, "static")
    assert server.factory.answered == 1 and server.factory.fallbacks == 0
    assert len(server.factory.latencies) == 1 and server.factory.latencies[0] >= 0


@aio_test
async def test_agent_decision_sets_route_agent(servers: list[Server]) -> None:
    router = StaticRouter(default_queue="sales", default_priority=5, default_agent="6003")
    server = serve(servers, router)
    assert await run_session(server) == [
        b'SET VARIABLE ROUTE_QUEUE "sales"\n',
        b'SET VARIABLE ROUTE_PRIORITY "5"\n',
        b'SET VARIABLE ROUTE_AGENT "6003"\n',
    ]
    (selected,) = server.of(RouteSelected)
    assert selected.destination == "agent:6003"


@aio_test
async def test_dnid_is_the_called_number_when_known(servers: list[Server]) -> None:
    server = serve(servers, StaticRouter(default_queue="sales"))
    await run_session(server, ENV.replace(b"agi_dnid: unknown", b"agi_dnid: 8005551000"))
    (request,) = server.of(RouteRequest)
    assert (request.device, request.called_number) == ("803", "8005551000")
    assert request.route_data["dnid"] == "8005551000"


# -- hostile and broken clients --------------------------------------------------------------
@aio_test
async def test_half_sent_environment_times_out_while_others_are_answered(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    clock = task.Clock()
    server = serve(servers, StaticRouter(default_queue="sales"), clock, session_timeout=10.0)
    stuck = await Client.connect(server)
    stuck.send(ENV[:100])
    try:
        assert len(await run_session(server)) == 2  # answered while the other one hangs
        assert await stuck.silent()
        clock.advance(9.9)
        assert await stuck.silent()
        clock.advance(0.1)
        assert await stuck.line() == b""  # closed by the server
    finally:
        stuck.close()
    (warning,) = warnings(caplog)
    assert stuck.peer in warning and "no complete AGI environment within 10 s" in warning
    assert server.factory.answered == 1


@aio_test
async def test_garbage_client_is_closed_and_others_are_not_affected(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    server = serve(servers, StaticRouter(default_queue="sales"))
    garbage = await Client.connect(server)
    garbage.send(b"GET / HTTP/1.1\r\nHost: ctilink\r\n\r\n")
    try:
        assert await garbage.line() == b""
    finally:
        garbage.close()
    assert len(await run_session(server)) == 2
    (warning,) = warnings(caplog)
    assert garbage.peer in warning and "bad FastAGI input" in warning
    assert server.of(RouteRequest)[0].call_id == "call-1795355841.103"


@aio_test
async def test_environment_over_the_bound_is_refused(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    server = serve(servers, StaticRouter(default_queue="sales"))
    client = await Client.connect(server)
    client.send(ENV[:-1] + (b"agi_pad: " + b"p" * 1000 + b"\n") * 17)  # never terminated
    try:
        assert await client.line() == b""
    finally:
        client.close()
    (warning,) = warnings(caplog)
    assert "environment exceeds 16384 bytes" in warning
    assert server.events == []


@aio_test
async def test_port_probe_is_not_a_warning(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    server = serve(servers, StaticRouter(default_queue="sales"))
    probe = await Client.connect(server)
    probe.close()
    assert len(await run_session(server)) == 2
    assert warnings(caplog) == []


# -- the router: failures and the budget ---------------------------------------------------------
class FailingRouter:
    def __init__(self, error: Exception, *, raise_now: bool = False) -> None:
        self.error, self.raise_now = error, raise_now

    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        if self.raise_now:
            raise self.error
        return fail(self.error)


class OddRouter:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        d: Deferred[RouteDecision] = Deferred()
        d.callback(self.answer)
        return d


@pytest.mark.parametrize(
    ("router", "why"),
    [
        (
            FailingRouter(RuntimeError("database down")),
            "router failed: RuntimeError: database down",
        ),
        (FailingRouter(KeyError("vip"), raise_now=True), "router failed: KeyError"),
        (OddRouter("sales"), "not a RouteDecision"),
        (OddRouter(RouteDecision("sa\nles", None, 1, "bad")), "cannot be sent"),
    ],
    ids=["fails", "raises", "nonsense", "unsendable"],
)
@aio_test
async def test_router_failure_answers_the_fallback(
    servers: list[Server], caplog: pytest.LogCaptureFixture, router: Router, why: str
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    server = serve(servers, router)
    assert await run_session(server) == [
        b'SET VARIABLE ROUTE_QUEUE "support"\n',
        b'SET VARIABLE ROUTE_PRIORITY "0"\n',
    ]
    (warning,) = warnings(caplog)
    assert why in warning and "answering the fallback queue:support" in warning
    (selected,) = server.of(RouteSelected)
    assert (selected.destination, selected.rule) == ("queue:support", "fallback")
    assert server.factory.fallbacks == 1 and server.factory.answered == 1


class SlowRouter:
    """Answers only when the test says so (its Deferreds have no canceller, so a late
    answer after a cancel is silently dropped by Twisted)."""

    def __init__(self) -> None:
        self.calls: list[Deferred[RouteDecision]] = []

    def route(self, query: RouteQuery) -> Deferred[RouteDecision]:
        d: Deferred[RouteDecision] = Deferred()
        self.calls.append(d)
        return d

    @property
    def cancelled(self) -> int:
        """Calls fired by someone else than the test: only a cancel does that."""
        return sum(d.called for d in self.calls)


@aio_test
async def test_slow_router_gets_the_fallback_within_the_budget(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    clock, router = task.Clock(), SlowRouter()
    server = serve(servers, router, clock, budget=0.3)
    client = await Client.connect(server)
    try:
        client.send(ENV)
        await until(lambda: len(router.calls) == 1)
        clock.advance(0.29)
        assert await client.silent()
        clock.advance(0.01)
        assert await client.line() == b'SET VARIABLE ROUTE_QUEUE "support"\n'
        client.send(OK)
        assert await client.line() == b'SET VARIABLE ROUTE_PRIORITY "0"\n'
        client.send(OK)
        assert await client.line() == b""
    finally:
        client.close()
    assert router.cancelled == 1
    router.calls[0].callback(RouteDecision("sales", None, 10, "late"))  # ignored, no error
    (warning,) = warnings(caplog)
    assert "did not answer within the 0.3 s budget" in warning
    assert server.factory.fallbacks == 1
    assert list(server.factory.latencies) == [pytest.approx(0.3)]


@aio_test
async def test_client_gone_while_routing_cancels_the_router(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    router = SlowRouter()
    server = serve(servers, router, task.Clock())
    client = await Client.connect(server)
    client.send(ENV)
    await until(lambda: len(router.calls) == 1)
    client.close()
    await until(lambda: router.cancelled == 1)
    (warning,) = warnings(caplog)
    assert "closed the connection before the route was answered" in warning
    assert server.of(RouteSelected) == [] and server.factory.fallbacks == 0


@aio_test
async def test_unresolved_call_is_answered_with_the_fallback(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    server = serve(servers, StaticRouter(default_queue="sales"))

    def unknown(uniqueid: str, channel: str) -> str:
        raise LookupError(uniqueid)

    server.factory.resolve_call = unknown
    assert (await run_session(server))[0] == b'SET VARIABLE ROUTE_QUEUE "support"\n'
    assert server.events == []  # no call id: nothing to publish about
    (warning,) = warnings(caplog)
    assert "no call for uniqueid 1795355841.103" in warning


@aio_test
async def test_failing_publish_is_logged_and_the_call_still_routed(
    servers: list[Server], logged_errors: list[logging.LogRecord]
) -> None:
    server = serve(servers, StaticRouter(default_queue="sales"))

    def broken(event: Event) -> None:
        raise RuntimeError("tracker bug")

    server.factory.publish = broken
    assert (await run_session(server))[0] == b'SET VARIABLE ROUTE_QUEUE "sales"\n'
    messages = [r.getMessage() for r in logged_errors]
    assert len(messages) == 2
    assert "publishing route_request failed" in messages[0]
    assert "publishing route_selected failed" in messages[1]
    assert server.factory.answered == 1


def test_budget_must_fit_in_the_session_timeout() -> None:
    for budget, timeout in [(0.0, 10.0), (10.0, 10.0), (-1.0, 10.0)]:
        with pytest.raises(ValueError, match="budget"):
            FastAgiFactory(
                "pbx",
                StaticRouter(default_queue="sales"),
                print,
                lambda u, c: u,
                task.Clock(),
                fallback=FALLBACK,
                budget=budget,
                session_timeout=timeout,
            )


# -- Asterisk's own failures ---------------------------------------------------------------------
@aio_test
async def test_hangup_in_the_middle_stops_the_session(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    server = serve(servers, StaticRouter(default_queue="sales", default_priority=10))
    client = await Client.connect(server)
    try:
        client.send(ENV)
        assert await client.line() == b'SET VARIABLE ROUTE_QUEUE "sales"\n'
        client.send(b"HANGUP\n")
        assert await client.line() == b""  # no ROUTE_PRIORITY: the session stopped
    finally:
        client.close()
    (warning,) = warnings(caplog)
    assert "hung up before the reply to 'SET VARIABLE ROUTE_QUEUE \"sales\"'" in warning
    assert "(Local/803@routed-00000033;2)" in warning
    assert server.factory.answered == 0 and not server.factory.latencies
    assert len(server.of(RouteSelected)) == 1


@aio_test
async def test_non_200_reply_stops_the_session(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    server = serve(servers, StaticRouter(default_queue="sales"))
    client = await Client.connect(server)
    try:
        commands = await client.session(
            reply=b"511 Command Not Permitted on a dead channel or intercept routine\n"
        )
    finally:
        client.close()
    assert commands == [b'SET VARIABLE ROUTE_QUEUE "sales"\n']
    (warning,) = warnings(caplog)
    assert "was answered '511 Command Not Permitted" in warning
    assert server.factory.answered == 0


@aio_test
async def test_silent_asterisk_after_a_command_times_out(
    servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    clock = task.Clock()
    server = serve(servers, StaticRouter(default_queue="sales"), clock, session_timeout=10.0)
    client = await Client.connect(server)
    try:
        client.send(ENV)
        assert await client.line() == b'SET VARIABLE ROUTE_QUEUE "sales"\n'
        clock.advance(10)
        assert await client.line() == b""
    finally:
        client.close()
    (warning,) = warnings(caplog)
    assert "the session did not finish within 10 s" in warning
