"""Screen-pop acknowledgements (``ctilink.screenpop.acks``) over a real WebSocket: the first ack
of a pop puts pop → ack latency in the histogram; unknown, foreign, expired, duplicate and
malformed acks are answered with an ``error`` and measured nowhere.

The acks' clock is a ``task.Clock``, so the latency is exact. A good ack gets no answer: a
test sends it, then a message that is answered, and reads that answer; the client's
messages are handled in order, so the first one has been by then.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.task import Clock

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.screenpop.acks import KEEP, Acks, install_acks
from ctilink.screenpop.auth import Scope
from tests._schemas import validate_wire
from tests.aio import aio_test, deferred_result
from tests.eventsockets import Server, Tokens, call, connect, recv_json

T0 = 1_795_355_600.0
CUSTOMER = {"known": False, "number": "+15551234567", "identified_by": None, "wait_seconds": 3.0}


class Desk:
    """An event socket (tenants acme: pbx, other: pbx2) with acks measured on a fake clock."""

    def __init__(self, *, authenticated: bool = True, **acks: Any) -> None:
        self.tokens = Tokens()
        for name, tenant, limits in (
            ("acme", "acme", {}),
            ("acme-6001", "acme", {"agents": ["6001"], "devices": ["6001"]}),
            ("acme-6002", "acme", {"agents": ["6002"], "devices": ["6002"]}),
            ("other", "other", {}),
        ):
            self.tokens.issue(name, tenant, Scope.READ, **limits)
        self.server = Server(
            Hub(),
            tokens=self.tokens.store() if authenticated else None,
            tenants={"pbx": "acme", "pbx2": "other"},
        )
        self.clock = Clock()
        self.clock.advance(T0)
        self.registry = CollectorRegistry()
        if acks:  # bounds of the test's own
            self.acks = Acks(self.server.socket.audiences.tenant, self.clock, self.registry, **acks)
            self.acks.start(self.server.hub)
            self.server.socket.handlers["ack"] = self.acks.handle
        else:
            self.acks = install_acks(self.server.socket, self.server.hub, self.clock, self.registry)

    def url(self, token: str | None = "acme") -> str:
        return self.server.url(self.tokens.secrets[token] if token else None)

    def pop(self, call_id: str = "c1", agent: str = "6001", switch: str = "pbx") -> int:
        (event,) = self.server.publish(
            call(ev.ScreenPop, call_id, agent, None, switch=switch, queue="support",
                 agent=agent, customer=CUSTOMER)
        )  # fmt: skip
        return event.seq

    def latency(self, switch: str = "pbx") -> tuple[float, float]:
        """(count, sum) of the histogram for ``switch``."""
        count = self.registry.get_sample_value(
            "ctilink_screen_pop_ack_seconds_count", {"switch": switch}
        )
        total = self.registry.get_sample_value(
            "ctilink_screen_pop_ack_seconds_sum", {"switch": switch}
        )
        return count or 0.0, total or 0.0

    def refused(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "ctilink_screen_pop_acks_refused_total", {"reason": reason}
        )
        return value or 0.0


@pytest.fixture
def desk() -> Iterator[Desk]:
    made = Desk()
    yield made
    made.acks.close()
    pytest_twisted.blockon(made.server.stop())


async def send_ack(ws: Any, seq: Any, **extra: Any) -> None:
    message = {"type": "ack", "seq": seq, **extra}
    if not extra and isinstance(seq, int) and seq > 0:
        validate_wire(message)  # what schemas/client/ack.schema.json describes
    await ws.send(json.dumps(message))


async def error_for(ws: Any, seq: Any, **extra: Any) -> dict[str, Any]:
    await send_ack(ws, seq, **extra)
    return await until_type(ws, "error")


async def until_type(ws: Any, kind: str) -> dict[str, Any]:
    while (message := await recv_json(ws))["type"] != kind:
        pass
    return message


@aio_test
async def test_the_first_ack_records_pop_to_ack_latency(desk: Desk) -> None:
    async with connect(desk.url("acme-6001")) as ws:
        await until_type(ws, "snapshot")
        seq = desk.pop()
        assert (await until_type(ws, "screen_pop"))["seq"] == seq
        desk.clock.advance(0.25)
        await send_ack(ws, seq)
        assert (await error_for(ws, 999_999))["code"] == "not_found"  # the ack was handled
        desk.clock.advance(5)  # a second ack does not count again
        reply = await error_for(ws, seq)
        assert reply["code"] == "duplicate" and str(seq) in reply["message"]
    assert desk.latency() == (1.0, 0.25)
    exposition = generate_latest(desk.registry).decode()
    assert 'ctilink_screen_pop_ack_seconds_bucket{le="0.25",switch="pbx"} 1.0' in exposition
    assert 'ctilink_screen_pop_ack_seconds_bucket{le="0.1",switch="pbx"} 0.0' in exposition
    assert desk.refused("duplicate") == 1.0


@aio_test
async def test_another_client_acking_the_same_pop_is_a_duplicate(desk: Desk) -> None:
    async with connect(desk.url("acme-6001")) as agent, connect(desk.url("acme")) as crm:
        await until_type(agent, "snapshot")
        await until_type(crm, "snapshot")
        seq = desk.pop()
        desk.clock.advance(0.5)
        await send_ack(crm, seq)
        assert (await error_for(crm, 999_999))["code"] == "not_found"  # the ack was handled
        assert (await error_for(agent, seq))["code"] == "duplicate"
    assert desk.latency() == (1.0, 0.5)


@aio_test
async def test_acks_of_what_the_client_may_not_see_are_not_found(desk: Desk) -> None:
    async with connect(desk.url("acme-6002")) as bob, connect(desk.url("other")) as other:
        await until_type(bob, "snapshot")
        await until_type(other, "snapshot")
        alices = desk.pop(agent="6001")  # acme, for 6001 only
        others = desk.pop(call_id="c9", switch="pbx2")  # tenant other
        (delivered,) = desk.server.publish(call(ev.Delivered, "c1", "6001", LCS.ALERTING))
        expected = {
            (bob, alices): "not_found",  # outside its agents and devices
            (other, alices): "not_found",  # another tenant: said as if it did not exist
            (bob, others): "not_found",
            (bob, delivered.seq): "not_found",  # not a screen pop
            (bob, 123_456): "not_found",  # never published
        }
        for (ws, seq), code in expected.items():
            reply = await error_for(ws, seq)
            assert reply["code"] == code
            assert reply["message"] == f"no screen pop with seq {seq} to acknowledge"
        # The refusals did not use the pops up: their own clients may still ack them.
        await send_ack(other, others)
        assert (await error_for(other, others))["code"] == "duplicate"
    assert desk.latency() == (0.0, 0.0)
    assert desk.latency("pbx2")[0] == 1.0
    assert desk.refused("not_found") == 5.0


@pytest.mark.parametrize(
    ("seq", "extra"),
    [(None, {}), ("7", {}), (0, {}), (-1, {}), (1.5, {}), (True, {}), (1, {"at": 3})],
    ids=["missing", "string", "zero", "negative", "float", "bool", "extra-field"],
)
@aio_test
async def test_malformed_acks_are_bad_requests(desk: Desk, seq: Any, extra: Any) -> None:
    async with connect(desk.url()) as ws:
        await until_type(ws, "snapshot")
        desk.pop()
        message: dict[str, Any] = {"type": "ack", **extra}
        if seq is not None:
            message["seq"] = seq
        await ws.send(json.dumps(message))
        assert (await until_type(ws, "error"))["code"] == "bad_request"
    assert desk.latency() == (0.0, 0.0)
    assert desk.refused("bad_request") == 1.0


@aio_test
async def test_a_pop_older_than_the_keep_time_cannot_be_acknowledged(desk: Desk) -> None:
    async with connect(desk.url()) as ws:
        await until_type(ws, "snapshot")
        late = desk.pop("c1")
        desk.clock.advance(KEEP - 1)
        in_time = desk.pop("c2")
        desk.clock.advance(1)
        assert (await error_for(ws, late))["code"] == "not_found"
        await send_ack(ws, in_time)
        assert (await error_for(ws, in_time))["code"] == "duplicate"
    assert desk.latency() == (1.0, 1.0)
    assert list(desk.acks.pops) == [in_time]


@aio_test
async def test_memory_is_bounded_by_max_pops() -> None:
    desk = Desk(max_pops=3)
    try:
        async with connect(desk.url()) as ws:
            await until_type(ws, "snapshot")
            seqs = [desk.pop(f"c{i}") for i in range(5)]
            assert list(desk.acks.pops) == seqs[-3:]
            assert (await error_for(ws, seqs[0]))["code"] == "not_found"
            await send_ack(ws, seqs[-1])
            assert (await error_for(ws, seqs[-1]))["code"] == "duplicate"
    finally:
        desk.acks.close()
        await deferred_result(desk.server.stop())


@aio_test
async def test_without_authentication_any_client_may_acknowledge() -> None:
    desk = Desk(authenticated=False)
    try:
        async with connect(desk.url(None)) as ws:
            await until_type(ws, "snapshot")
            seq = desk.pop(switch="pbx2")
            desk.clock.advance(0.1)
            await send_ack(ws, seq)
            assert (await error_for(ws, seq))["code"] == "duplicate"
        assert desk.latency("pbx2")[0] == 1.0
    finally:
        desk.acks.close()
        await deferred_result(desk.server.stop())


def test_close_stops_noting_pops() -> None:
    hub = Hub()
    acks = Acks(lambda switch: "acme", Clock(), CollectorRegistry())
    acks.start(hub)
    hub.publish(call(ev.ScreenPop, "c1", "6001", None, agent="6001", customer=CUSTOMER))
    acks.close()
    hub.publish(call(ev.ScreenPop, "c2", "6001", None, agent="6001", customer=CUSTOMER))
    assert list(acks.pops) == [1]
