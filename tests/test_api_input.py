"""The command API's HTTP edge over a real socket: bodies, types, sizes, methods, paths, and
each switch refusal code mapped to its HTTP status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_twisted

from ctilink.errors import CommandError
from ctilink.hub import Hub
from ctilink.screenpop.api import STATUS_BY_CODE
from tests.aio import aio_test
from tests.test_api_support import ApiServer, ScriptedAdapter, delivered, request


@pytest.fixture
def server() -> Iterator[ApiServer]:
    hub = Hub()
    running = ApiServer(hub, {"pbx": ScriptedAdapter("pbx", "acme")})
    hub.publish(delivered("c1", "6001"))
    yield running
    pytest_twisted.blockon(running.closed())


def scripted(server: ApiServer) -> ScriptedAdapter:
    adapter = server.adapters["pbx"]
    assert isinstance(adapter, ScriptedAdapter)
    return adapter


@aio_test
async def test_a_command_reaches_the_adapter_with_its_arguments(server: ApiServer) -> None:
    reply = await request("POST", server.url("/calls/c1/hold"), {"device": "6001"})
    assert (reply.status, reply.body) == (
        200,
        {"call_id": "c1", "switch": "pbx", "command": "hold"},
    )
    assert scripted(server).calls == [("hold_call", ("c1", "6001"))]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"device": "6001"', "malformed JSON: Expecting ',' delimiter at line 1 column 18"),
        (b'{"device": 6001}', "field 'device': expected string, got number"),
        (b'{"device": ["6001"]}', "field 'device': expected string, got array"),
        (b'{"device": null}', "field 'device' is required"),
        (b"{}", "field 'device' is required"),
        (b'{"device": "6001", "devise": "x"}', "unknown field(s): 'devise'"),
        (b'{"device": "60 01"}', "field 'device': '60 01' is not valid"),
        (b'["6001"]', "the body must be a JSON object, got array"),
        (b'{"device": NaN}', "malformed JSON: NaN is not a JSON number"),
        (b'{"device": "\xff"}', "the body is not UTF-8"),
    ],
)
@aio_test
async def test_bad_bodies_are_400_with_a_precise_message(
    server: ApiServer, body: bytes, message: str
) -> None:
    reply = await request(
        "POST",
        server.url("/calls/c1/hold"),
        body=body,
        headers={"content-type": "application/json"},
    )
    assert reply.status == 400 and reply.error == "invalid"
    assert reply.body["message"].startswith(message), reply.body["message"]
    assert scripted(server).calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"device": "6001", "number": "12ab"}, "field 'number': '12ab' is not valid (digits"),
        ({"device": "6001", "number": "1" * 33}, "field 'number'"),
        ({"device": "6001"}, "field 'number' is required"),
        ({"device": "6001", "number": "100", "data": {"1X": "a"}}, "field 'data': name '1X'"),
        ({"device": "6001", "number": "100", "data": {"X": 1}}, "field 'data.X': expected a"),
        ({"device": "6001", "number": "100", "data": {"X": "a\r\nAction: Hangup"}}, "field 'd"),
        ({"device": "6001", "number": "100", "switch": 7}, "field 'switch': expected string"),
    ],
)
@aio_test
async def test_make_call_input_is_checked(
    server: ApiServer, body: dict[str, object], message: str
) -> None:
    reply = await request("POST", server.url("/calls"), body)
    assert reply.status == 400, reply.body
    assert reply.body["message"].startswith(message), reply.body["message"]
    assert scripted(server).calls == []


@aio_test
async def test_allowed_numbers_narrow_what_may_be_dialled() -> None:
    import re

    hub = Hub()
    adapter = ScriptedAdapter("pbx", "acme")
    server = ApiServer(hub, {"pbx": adapter}, allowed_numbers=re.compile(r"^(6\d{3}|555\d{7})$"))
    try:
        ok = await request("POST", server.url("/calls"), {"device": "6001", "number": "5550001111"})
        assert ok.status == 200 and ok.body == {"call_id": "pbx-call-1", "switch": "pbx"}
        refused = await request(
            "POST", server.url("/calls"), {"device": "6001", "number": "900123"}
        )
        assert (refused.status, refused.error) == (403, "not_allowed")
        assert "'900123' is not an allowed destination" in refused.body["message"]
        assert [name for name, _ in adapter.calls] == ["make_call"]
    finally:
        await server.close()


@aio_test
async def test_bodies_over_the_bound_are_413_with_or_without_a_length(server: ApiServer) -> None:
    big = b'{"device": "6001", "pad": "' + b"x" * 20_000 + b'"}'
    for chunked in (False, True):
        reply = await request(
            "POST",
            server.url("/calls/c1/hold"),
            body=big,
            headers={"content-type": "application/json"},
            chunked=chunked,
        )
        assert (reply.status, reply.error) == (413, "too_large")
    assert scripted(server).calls == []


@aio_test
async def test_a_body_that_is_not_json_is_415(server: ApiServer) -> None:
    reply = await request(
        "POST",
        server.url("/calls/c1/hold"),
        body=b"device=6001",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (reply.status, reply.error) == (415, "unsupported_media_type")


@aio_test
async def test_unknown_paths_and_wrong_methods(server: ApiServer) -> None:
    missing = await request("POST", server.url("/calls/c1/dance"), {"device": "6001"})
    assert (missing.status, missing.error) == (404, "not_found")
    wrong = await request("GET", server.url("/calls/c1/hold"))
    assert (wrong.status, wrong.error) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    both = await request("PUT", server.url("/callbacks/x"))
    assert both.headers["allow"] == "GET, DELETE"


@aio_test
async def test_a_trailing_slash_and_escaped_segments_route(server: ApiServer) -> None:
    server.hub.publish(delivered("c/2", "6001"))
    reply = await request("POST", server.url("/calls/c%2F2/hold/"), {"device": "6001"})
    assert reply.status == 200 and reply.body["call_id"] == "c/2"


@aio_test
async def test_query_parameters_are_checked(server: ApiServer) -> None:
    unknown = await request("GET", server.url("/stats/queues?queues=support"))
    assert (unknown.status, unknown.body["message"]) == (
        400,
        "unknown parameter(s): 'queues'",
    )
    twice = await request("GET", server.url("/callbacks?queue=a&queue=b"))
    assert twice.status == 400 and "given 2 times" in twice.body["message"]
    status = await request("GET", server.url("/callbacks?status=lost"))
    assert status.status == 400 and "'lost' is not a callback status" in status.body["message"]


@pytest.mark.parametrize(("code", "status"), sorted(STATUS_BY_CODE.items()))
@aio_test
async def test_switch_refusals_map_to_statuses(server: ApiServer, code: str, status: int) -> None:
    scripted(server).failure = CommandError(code, f"the switch says {code}")
    reply = await request("POST", server.url("/calls/c1/hold"), {"device": "6001"})
    assert (reply.status, reply.body) == (
        status,
        {"error": code, "message": f"the switch says {code}"},
    )


@aio_test
async def test_unknown_calls_and_switches_are_404(server: ApiServer) -> None:
    gone = await request("POST", server.url("/calls/nope/hold"), {"device": "6001"})
    assert (gone.status, gone.body["message"]) == (404, "no live call 'nope'")
    switch = await request(
        "POST", server.url("/calls"), {"device": "6001", "number": "100", "switch": "pbx9"}
    )
    assert (switch.status, switch.body["message"]) == (404, "no switch 'pbx9'")


@aio_test
async def test_a_tenant_with_two_switches_must_name_one() -> None:
    hub = Hub()
    one, two = ScriptedAdapter("pbx1", "acme"), ScriptedAdapter("pbx2", "acme")
    server = ApiServer(hub, {"pbx1": one, "pbx2": two})
    try:
        body = {"device": "6001", "number": "100"}
        unnamed = await request("POST", server.url("/calls"), body)
        assert unnamed.status == 400
        assert unnamed.body["message"] == "field 'switch' is required: tenant 'acme' has 2 switches"
        named = await request("POST", server.url("/calls"), {**body, "switch": "pbx2"})
        assert named.body == {"call_id": "pbx2-call-1", "switch": "pbx2"}
        assert (one.calls, [c[0] for c in two.calls]) == ([], ["make_call"])
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"state": "dancing"}, "field 'state': 'dancing' is not one of logged_on, logged_off"),
        ({"state": "logged_on"}, "field 'queue' is required to log on"),
        ({"state": "ready", "reason": "lunch"}, "field 'reason' goes only with state 'not_ready'"),
        ({"state": "not_ready", "reason": "a\nb"}, "field 'reason': 'a\\nb' is not valid"),
    ],
)
@aio_test
async def test_agent_state_input_is_checked(
    server: ApiServer, body: dict[str, object], message: str
) -> None:
    reply = await request("POST", server.url("/agents/6001/state"), body)
    assert reply.status == 400
    assert reply.body["message"].startswith(message), reply.body["message"]


@aio_test
async def test_an_unexpected_error_is_500_and_logged(
    server: ApiServer, logged_errors: list[object]
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("adapter bug")

    scripted(server).hold_call = broken  # type: ignore[method-assign,assignment]
    reply = await request("POST", server.url("/calls/c1/hold"), {"device": "6001"})
    assert (reply.status, reply.body) == (500, {"error": "internal", "message": "internal error"})
    assert len(logged_errors) == 1
