"""Every route of the command API refused without the right token, over a real socket: no
or an unknown token (401), read-only (403 for every command), another tenant (its calls and
callbacks do not exist for it), limits to devices, agents or queues (403 outside them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted

from ctilink.hub import Hub
from ctilink.screenpop.api import ROUTES, Route
from tests.aio import aio_test
from tests.test_api_support import (
    ApiServer,
    ScriptedAdapter,
    Tokens,
    agent_ready,
    delivered,
    queued,
    request,
)

# A request each route accepts from a control token of tenant acme (paths filled in below).
DEVICE = {"device": "6001"}
DIAL = {"device": "6001", "destination": "7000"}
JOIN = {"device": "6001", "active_call_id": "c2"}
SAMPLES: dict[tuple[str, str], Any] = {
    ("POST", "/calls"): {"device": "6001", "number": "5550001111"},
    ("POST", "/calls/{call_id}/answer"): DEVICE,
    ("POST", "/calls/{call_id}/hold"): DEVICE,
    ("POST", "/calls/{call_id}/retrieve"): DEVICE,
    ("POST", "/calls/{call_id}/clear_connection"): DEVICE,
    ("POST", "/calls/{call_id}/deflect"): DIAL,
    ("POST", "/calls/{call_id}/blind_transfer"): DIAL,
    ("POST", "/calls/{call_id}/consultation"): DIAL,
    ("POST", "/calls/{call_id}/clear"): None,
    ("POST", "/calls/{call_id}/transfer"): JOIN,
    ("POST", "/calls/{call_id}/conference"): JOIN,
    ("POST", "/calls/{call_id}/alternate"): JOIN,
    ("POST", "/calls/{call_id}/reconnect"): JOIN,
    ("POST", "/agents/{agent}/state"): {"state": "not_ready", "reason": "lunch"},
    ("POST", "/callbacks"): {"queue": "support", "number": "5551234567"},
    ("GET", "/callbacks"): None,
    ("GET", "/callbacks/{callback_id}"): None,
    ("DELETE", "/callbacks/{callback_id}"): None,
    ("GET", "/stats/queues"): None,
    ("GET", "/stats/agents"): None,
}
COMMANDS = [route for route in ROUTES if route.method != "GET"]
READS = [route for route in ROUTES if route.method == "GET"]
by_route = pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
by_command = pytest.mark.parametrize("route", COMMANDS, ids=lambda r: f"{r.method} {r.path}")


class World:
    """Tenant acme on switch pbx (calls c1, c2 at 6001 and 6002; a queued callback), tenant
    other on pbx-other."""

    def __init__(self) -> None:
        self.hub = Hub()
        self.acme = ScriptedAdapter("pbx", "acme")
        self.other = ScriptedAdapter("pbx-other", "other")
        self.server = ApiServer(self.hub, {"pbx": self.acme, "pbx-other": self.other})
        self.hub.publish(delivered("c1", "6001", queue="support"))
        self.hub.publish(delivered("c2", "6001"))
        self.hub.publish(delivered("c3", "6002"))
        self.hub.publish(agent_ready("6001", "support"))
        self.hub.publish(queued("c4", "support"))
        self.callback = self.server.callbacks.request("acme", "pbx", "support", "5551234567")

    def path(self, route: Route, **override: str) -> str:
        values = {"call_id": "c1", "agent": "6001", "callback_id": self.callback.callback_id}
        values.update(override)
        return self.server.url(route.path.format(**values))

    async def send(self, route: Route, token: str | None, **override: Any) -> Any:
        body = override.pop("body", SAMPLES[(route.method, route.path)])
        if body is None:
            return await request(route.method, self.path(route, **override), token=token)
        return await request(route.method, self.path(route, **override), body, token=token)


@pytest.fixture
def world() -> Iterator[World]:
    running = World()
    yield running
    pytest_twisted.blockon(running.server.closed())


def test_every_route_has_a_sample() -> None:
    assert set(SAMPLES) == {(route.method, route.path) for route in ROUTES}


@by_route
@aio_test
async def test_the_sample_is_accepted_with_a_control_token(world: World, route: Route) -> None:
    reply = await world.send(route, "acme-control")
    assert reply.status in (200, 201), reply.body


@by_route
@pytest.mark.parametrize("token", [None, "not-a-token", ""])
@aio_test
async def test_no_valid_token_is_401(world: World, route: Route, token: str | None) -> None:
    reply = await world.send(route, token)
    assert (reply.status, reply.error) == (401, "unauthorized")
    assert reply.headers["www-authenticate"] == "Bearer"
    assert world.acme.calls == []


@aio_test
async def test_other_schemes_than_bearer_are_401(world: World) -> None:
    route = Route("GET", "/stats/queues", "queue_stats")
    reply = await request(
        "GET", world.path(route), token=None, headers={"authorization": "Basic YWNtZTp4"}
    )
    assert reply.status == 401


@by_command
@aio_test
async def test_a_read_only_token_may_not_command(world: World, route: Route) -> None:
    reply = await world.send(route, "acme-read")
    assert (reply.status, reply.error) == (403, "forbidden"), reply.body
    assert world.acme.calls == []
    assert world.server.callbacks.get(world.callback.callback_id).status.value == "queued"  # type: ignore[union-attr]


@pytest.mark.parametrize("route", READS, ids=lambda r: f"{r.method} {r.path}")
@aio_test
async def test_a_read_only_token_may_read(world: World, route: Route) -> None:
    reply = await world.send(route, "acme-read")
    assert reply.status == 200, reply.body


@by_route
@aio_test
async def test_another_tenant_never_reaches_acme(world: World, route: Route) -> None:
    reply = await world.send(route, "other-control")
    assert world.acme.calls == []
    if "{call_id}" in route.path or "{callback_id}" in route.path:
        assert (reply.status, reply.error) == (404, "not_found")  # as if it did not exist
        assert "pbx" not in reply.body["message"]
    elif route.path == "/callbacks" and route.method == "GET":
        assert reply.body == {"callbacks": []}
    elif route.path.startswith("/stats"):
        kind = route.path.rsplit("/", 1)[1]
        acme = await world.send(route, "acme-read")
        assert acme.body[kind] and reply.body[kind] == []
    else:  # device, agent and callback commands go to the tenant's own switch
        assert reply.status in (200, 201), reply.body
        assert world.other.calls or route.path == "/callbacks"
        assert reply.body["switch"] == "pbx-other"


@aio_test
async def test_naming_another_tenants_switch_is_404(world: World) -> None:
    route = Route("POST", "/calls", "make_call")
    body = {"device": "6001", "number": "5550001111", "switch": "pbx"}
    reply = await world.send(route, "other-control", body=body)
    assert (reply.status, reply.body["message"]) == (404, "no switch 'pbx'")


DEVICE_ROUTES = [
    r for r in COMMANDS if "{call_id}" in r.path and r.path != "/calls/{call_id}/clear"
]


@pytest.mark.parametrize("route", DEVICE_ROUTES, ids=lambda r: r.path)
@aio_test
async def test_a_device_limited_token_commands_only_its_device(world: World, route: Route) -> None:
    mine = await world.send(route, "acme-6001")
    assert mine.status == 200, mine.body
    body = {**SAMPLES[(route.method, route.path)], "device": "6002"}
    theirs = await world.send(route, "acme-6001", call_id="c3", body=body)
    assert (theirs.status, theirs.error) == (403, "forbidden")
    assert theirs.body["message"] == "this token may not control device '6002' on pbx"
    assert len(world.acme.calls) == 1


@aio_test
async def test_a_limited_token_clears_only_calls_it_is_in(world: World) -> None:
    clear = Route("POST", "/calls/{call_id}/clear", "clear_call")
    assert (await world.send(clear, "acme-6001", call_id="c3")).status == 403
    assert (await world.send(clear, "acme-6001", call_id="c1")).status == 200
    assert world.acme.calls == [("clear_call", ("c1",))]


@aio_test
async def test_an_agent_limited_token_sets_only_its_agent(world: World) -> None:
    route = Route("POST", "/agents/{agent}/state", "agent_state")
    assert (await world.send(route, "acme-6001")).status == 200
    assert (await world.send(route, "acme-6001", agent="6002")).status == 403
    assert (await world.send(route, "acme-sales", agent="6002")).status == 403
    body = {"state": "logged_on", "queue": "sales"}
    assert (await world.send(route, "acme-sales", agent="6002", body=body)).status == 200


@aio_test
async def test_queue_limits_apply_to_callbacks(world: World) -> None:
    post = Route("POST", "/callbacks", "request_callback")
    listing = Route("GET", "/callbacks", "list_callbacks")
    one = Route("GET", "/callbacks/{callback_id}", "get_callback")
    cancel = Route("DELETE", "/callbacks/{callback_id}", "cancel_callback")
    assert (await world.send(post, "acme-sales")).status == 403  # support
    sales = await world.send(post, "acme-sales", body={"queue": "sales", "number": "5550002222"})
    assert sales.status == 201
    seen = await world.send(listing, "acme-sales")
    assert [c["queue"] for c in seen.body["callbacks"]] == ["sales"]
    assert (await world.send(one, "acme-sales")).status == 403
    assert (await world.send(cancel, "acme-sales")).status == 403
    everything = await world.send(listing, "acme-read")
    assert [c["queue"] for c in everything.body["callbacks"]] == ["support", "sales"]


@aio_test
async def test_a_refusing_authenticator_sets_the_status_and_code(world: World) -> None:
    class Expired(Exception):
        status, code = 401, "token_expired"

    class Refusing(Tokens):
        def authenticate(self, token: str) -> Any:
            raise Expired("token expired")

    world.server.api.authenticator = Refusing()
    reply = await request("GET", world.server.url("/stats/agents"))
    assert (reply.status, reply.body) == (
        401,
        {"error": "token_expired", "message": "token expired"},
    )


@aio_test
async def test_an_awaitable_authenticator_works(world: World) -> None:
    from twisted.internet.defer import succeed

    class Later(Tokens):
        def authenticate(self, token: str) -> Any:
            return succeed(self.tokens.get(token))

    world.server.api.authenticator = Later()
    assert (await request("GET", world.server.url("/stats/agents"))).status == 200
    assert (await request("GET", world.server.url("/stats/agents"), token="x")).status == 401
