"""Who sees what on the event socket, over real sockets: tenants, limited tokens, filters,
subscribe messages, filtered snapshots; and the call-party index against the tracker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.model.wire import event_to_wire
from ctilink.screenpop.filters import Audiences, CallParties, Selection, make_view
from ctilink.state import StateTracker
from tests.aio import aio_test, deferred_result
from tests.conftest import AMI_TRACES
from tests.eventsockets import (
    Server,
    Tokens,
    agent_event,
    call,
    connect,
    hang_up,
    inbound_call,
    marker,
    read_until,
    recv_json,
    wait_open,
)
from tests.replaying import replay_files

TENANTS = {"pbx-a": "acme", "pbx-b": "globex"}


@pytest.fixture
def tokens() -> Tokens:
    issued = Tokens()
    issued.issue("acme", "acme")
    issued.issue("globex", "globex")
    issued.issue("agent-6001", "acme", agents=["6001"])
    issued.issue("phone-6002", "acme", devices=["6002"])
    issued.issue("support", "acme", queues=["support"])
    return issued


@pytest.fixture
def server(tokens: Tokens) -> Iterator[Server]:
    srv = Server(tokens=tokens.store(), tenants=TENANTS)
    yield srv
    pytest_twisted.blockon(srv.stop())


def seen(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(type, call id or agent) of each event, markers left out."""
    return [
        (m["type"], m.get("call_id") or m.get("agent") or m["switch"])
        for m in messages
        if m["type"] != "link_resynced"
    ]


@aio_test
async def test_two_tenants_see_only_their_own_events_and_snapshot(
    server: Server, tokens: Tokens
) -> None:
    # Before anyone connects: each tenant has a live call, an agent, a queue and a link.
    server.publish(
        ev.LinkUp(switch="pbx-a", time=0.0), ev.LinkUp(switch="pbx-b", time=0.0),
        agent_event(ev.AgentLoggedOn, "6001", switch="pbx-a", queue="support"),
        agent_event(ev.AgentLoggedOn, "6001", switch="pbx-b", queue="support"),
        *inbound_call("a-1", "6001", switch="pbx-a"),
        *inbound_call("b-1", "6001", switch="pbx-b"),
    )  # fmt: skip
    async with (
        connect(server.url(tokens.secrets["acme"])) as acme,
        connect(server.url(tokens.secrets["globex"])) as globex,
    ):
        for ws, switch, call_id in ((acme, "pbx-a", "a-1"), (globex, "pbx-b", "b-1")):
            snapshot = await recv_json(ws)
            assert [c["call_id"] for c in snapshot["calls"]] == [call_id]
            assert {a["switch"] for a in snapshot["agents"]} == {switch}
            assert {q["switch"] for q in snapshot["queues"]} == {switch}
            assert [link["switch"] for link in snapshot["links"]] == [switch]
        await wait_open(server, 2)
        # The same story on both switches, interleaved; then a marker on each.
        for a, b in zip(hang_up("a-1", "6001", switch="pbx-a"),
                        hang_up("b-1", "6001", switch="pbx-b"), strict=True):  # fmt: skip
            server.publish(a, b)
        server.publish(
            agent_event(ev.AgentReady, "6001", switch="pbx-b"),
            ev.LinkDown(switch="pbx-b", time=0.0),
            marker("pbx-a", "end"), marker("pbx-b", "end"),
        )  # fmt: skip
        got_acme, got_globex = await read_until(acme, "end"), await read_until(globex, "end")
    assert {m["switch"] for m in got_acme} == {"pbx-a"}
    assert {m["switch"] for m in got_globex} == {"pbx-b"}
    assert seen(got_acme) == [
        ("connection_cleared", "a-1"), ("connection_cleared", "a-1"), ("call_cleared", "a-1"),
    ]  # fmt: skip
    assert seen(got_globex)[-2:] == [("agent_ready", "6001"), ("link_down", "pbx-b")]


@aio_test
async def test_a_switch_without_a_tenant_reaches_nobody(
    server: Server, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "ctilink.screenpop.filters")
    async with connect(server.url(tokens.secrets["acme"])) as ws:
        await recv_json(ws)
        await wait_open(server, 1)
        server.publish(*inbound_call("x-1", "6001", switch="pbx-x"), marker("pbx-a", "end"))
        assert seen(await read_until(ws, "end")) == []
    assert sum("'pbx-x' has no tenant" in r.getMessage() for r in caplog.records) == 1


@aio_test
async def test_an_agent_token_sees_the_calls_its_agent_is_on(
    server: Server, tokens: Tokens
) -> None:
    async with connect(server.url(tokens.secrets["agent-6001"])) as ws:
        assert (await recv_json(ws))["calls"] == []
        await wait_open(server, 1)
        server.publish(
            agent_event(ev.AgentLoggedOn, "6001", switch="pbx-a", queue="support"),
            agent_event(ev.AgentLoggedOn, "6002", switch="pbx-a", queue="support"),
            *inbound_call("mine", "6001", switch="pbx-a"),
            *inbound_call("theirs", "6002", switch="pbx-a"),
            # 6002 consults 6001 and transfers "theirs" to it: from then on it is 6001's.
            call(ev.ServiceInitiated, "consult", "6002", LCS.INITIATED, switch="pbx-a",
                 calling_number="6002", called_number=None),
            call(ev.Delivered, "consult", "6001", LCS.ALERTING, switch="pbx-a",
                 calling_number="6002", called_number="6001"),
            call(ev.Established, "consult", "6001", LCS.CONNECTED, switch="pbx-a",
                 calling_number="6002", called_number="6001"),
            call(ev.Transferred, "theirs", "6002", LCS.NULL, switch="pbx-a", queue="support",
                 agent="6002", transferred_to="6001", secondary_call_id="consult"),
            call(ev.ConnectionCleared, "theirs", "5551234567", LCS.NULL, switch="pbx-a"),
            call(ev.CallCleared, "theirs", None, None, switch="pbx-a"),
            *hang_up("mine", "6001", switch="pbx-a"),
            agent_event(ev.AgentReady, "6002", switch="pbx-a"),
            marker("pbx-a", "end"),
        )  # fmt: skip
        got = seen(await read_until(ws, "end"))
    assert got == [
        ("agent_logged_on", "6001"),
        ("delivered", "mine"), ("established", "mine"),  # not the route point and queue
        ("delivered", "consult"), ("established", "consult"),
        ("transferred", "theirs"),  # 6001 is on the merged call
        ("connection_cleared", "theirs"), ("call_cleared", "theirs"),
        ("connection_cleared", "mine"), ("connection_cleared", "mine"), ("call_cleared", "mine"),
    ]  # fmt: skip


@aio_test
async def test_device_and_queue_tokens(server: Server, tokens: Tokens) -> None:
    async with (
        connect(server.url(tokens.secrets["phone-6002"])) as phone,
        connect(server.url(tokens.secrets["support"])) as supervisor,
    ):
        await recv_json(phone)
        await recv_json(supervisor)
        await wait_open(server, 2)
        server.publish(
            agent_event(ev.AgentLoggedOn, "6002", switch="pbx-a", queue="support"),
            agent_event(ev.AgentLoggedOn, "7001", switch="pbx-a", queue="sales"),
            agent_event(ev.AgentBusy, "6002", switch="pbx-a"),  # no queue: by membership
            *inbound_call("s-1", "6002", switch="pbx-a"),
            *inbound_call("x-1", "7001", switch="pbx-a", queue="sales"),
            *hang_up("s-1", "6002", switch="pbx-a"),
            marker("pbx-a", "end"),
        )
        by_phone = seen(await read_until(phone, "end"))
        by_supervisor = seen(await read_until(supervisor, "end"))
    assert ("queued", "s-1") in by_supervisor and ("delivered", "s-1") in by_supervisor
    assert ("agent_busy", "6002") in by_supervisor
    assert ("queued", "s-1") not in by_phone and ("delivered", "s-1") in by_phone
    assert ("agent_busy", "6002") in by_phone  # the agent at the device
    for got in (by_phone, by_supervisor):
        assert not [item for item in got if item[1] in ("x-1", "7001")]
    # The phone sees the call until it leaves it; the queue's supervisor to its end.
    assert by_phone[-1] == ("connection_cleared", "s-1")
    assert by_supervisor[-1] == ("call_cleared", "s-1")


@aio_test
async def test_filters_by_type_agent_and_call(server: Server, tokens: Tokens) -> None:
    acme = tokens.secrets["acme"]
    async with (
        connect(server.url(acme, types="established,call_cleared,link_resynced")) as by_type,
        connect(server.url(acme, agents="6002")) as by_agent,
        connect(server.url(acme, calls="c-2")) as by_call,
    ):
        for ws in (by_type, by_agent, by_call):
            await recv_json(ws)
        await wait_open(server, 3)
        server.publish(
            *inbound_call("c-1", "6001", switch="pbx-a"),
            *inbound_call("c-2", "6002", switch="pbx-a"),
            *hang_up("c-1", "6001", switch="pbx-a"),
            marker("pbx-a", "end"),
        )
        got = [seen(await read_until(ws, "end")) for ws in (by_type, by_agent, by_call)]
    assert got[0] == [("established", "c-1"), ("established", "c-2"), ("call_cleared", "c-1")]
    assert got[1] == [("delivered", "c-2"), ("established", "c-2")]
    assert got[2] == [("delivered", "c-2"), ("queued", "c-2"), ("delivered", "c-2"),
                      ("established", "c-2")]  # fmt: skip


@aio_test
async def test_subscribe_replaces_the_filter_with_a_fresh_snapshot(
    server: Server, tokens: Tokens
) -> None:
    server.publish(
        *inbound_call("c-1", "6001", switch="pbx-a"), *inbound_call("c-2", "6002", switch="pbx-a")
    )
    async with connect(server.url(tokens.secrets["acme"], agents="6001")) as ws:
        assert [c["call_id"] for c in (await recv_json(ws))["calls"]] == ["c-1"]
        await ws.send(
            '{"type": "subscribe", "agents": ["6002"], "types": ["call_cleared", "link_resynced"]}'
        )
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == 8
        assert [c["call_id"] for c in snapshot["calls"]] == ["c-2"]
        server.publish(*hang_up("c-1", "6001", switch="pbx-a"))
        server.publish(*hang_up("c-2", "6002", switch="pbx-a"), marker("pbx-a", "end"))
        assert seen(await read_until(ws, "end")) == [("call_cleared", "c-2")]
        await ws.send('{"type": "subscribe"}')  # no restriction at all
        assert (await recv_json(ws))["calls"] == []


@aio_test
async def test_a_refused_subscribe_keeps_the_old_filter(server: Server, tokens: Tokens) -> None:
    async with connect(server.url(tokens.secrets["agent-6001"])) as ws:
        await recv_json(ws)
        for message, code in (
            ('{"type": "subscribe", "agents": ["6002"]}', "forbidden"),
            ('{"type": "subscribe", "types": ["ringing"]}', "bad_request"),
            ('{"type": "subscribe", "agents": "6001"}', "bad_request"),
            ('{"type": "subscribe", "agent": ["6001"]}', "bad_request"),
        ):
            await ws.send(message)
            error = await recv_json(ws)
            assert (error["type"], error["code"]) == ("error", code), message
        server.publish(*inbound_call("c-1", "6001", switch="pbx-a"), marker("pbx-a", "end"))
        assert seen(await read_until(ws, "end"))[0] == ("delivered", "c-1")


@aio_test
async def test_subscribes_are_rate_limited(server: Server, tokens: Tokens) -> None:
    async with connect(server.url(tokens.secrets["acme"])) as ws:
        await recv_json(ws)
        for _ in range(30):
            await ws.send('{"type": "subscribe"}')
            assert (await recv_json(ws))["type"] == "snapshot"
        await ws.send('{"type": "subscribe"}')
        assert (await recv_json(ws))["code"] == "rate_limited"


@aio_test
async def test_a_limited_snapshot(server: Server, tokens: Tokens) -> None:
    server.publish(
        agent_event(ev.AgentLoggedOn, "6001", switch="pbx-a", queue="support"),
        agent_event(ev.AgentLoggedOn, "7001", switch="pbx-a", queue="sales"),
        *inbound_call("c-1", "6001", switch="pbx-a"),
        *inbound_call("c-2", "7001", switch="pbx-a", queue="sales"),
        *inbound_call("c-3", "6001", switch="pbx-b"),  # another tenant
    )
    async with connect(server.url(tokens.secrets["agent-6001"])) as ws:
        snapshot = await recv_json(ws)
    assert [c["call_id"] for c in snapshot["calls"]] == ["c-1"]
    assert [a["agent"] for a in snapshot["agents"]] == ["6001"]
    assert [q["queue"] for q in snapshot["queues"]] == ["support"]  # its agent's queue


# -- the call-party index mirrors the state tracker ------------------------------------
@pytest.mark.parametrize("trace", AMI_TRACES, ids=lambda p: p.name)
def test_call_parties_follow_the_tracker_on_real_traces(trace: Any) -> None:
    recorder = replay_files(trace)
    tracker, parties = StateTracker(), CallParties()
    for event in recorder.events:
        tracker.apply(event)
        parties.apply(event_to_wire(event), 0.0)
        for call_id, record in tracker.calls.items():
            live = parties.calls[call_id]
            assert set(live.open) == set(record.connections), (event.seq, event.TYPE)
            assert set(live.devices_at(event.seq)) >= set(record.connections)


def test_call_parties_remember_who_was_on_a_call_at_each_seq() -> None:
    parties = CallParties(history=60.0)
    story = [*inbound_call("c-1", "6001"), *hang_up("c-1", "6001")]
    wires = [event_to_wire(replace(event, seq=n)) for n, event in enumerate(story, start=1)]
    for wire in wires:
        parties.apply(wire, 100.0)
    call_record = parties.calls["c-1"]
    at = {seq: set(call_record.devices_at(seq)) for seq in range(1, 9)}
    assert at[1] == {"5551234567", "800"}  # the caller of an arriving call, the route point
    assert at[2] == {"5551234567", "800", "support"}  # the route point leaves at 2
    assert at[3] == at[4] == {"5551234567", "support", "6001"}  # answered: the queue leaves
    assert at[5] == {"5551234567", "6001"}  # the caller leaves
    assert at[6] == {"6001"}
    assert at[7] == at[8] == set()
    parties.prune(159.0)
    assert "c-1" in parties.calls
    parties.prune(161.0)
    assert "c-1" not in parties.calls


def test_ctilink_own_figures_reach_a_queue_and_its_members() -> None:
    """Statistics and callbacks (ctilink's own events): a queue's figures go to the queue's
    supervisors and its members; an agent's figures to the agent and its queues."""
    tokens = Tokens()
    tokens.issue("member", "acme", agents=["6001"])
    tokens.issue("outsider", "acme", agents=["7001"])
    tokens.issue("supervisor", "acme", queues=["support"])
    views = {name: make_view(token, Selection()) for name, token in tokens.tokens.items()}
    audiences = Audiences({"pbx": "acme"})
    logged_on = replace(agent_event(ev.AgentLoggedOn, "6001", queue="support"), seq=1)
    audiences.observe(event_to_wire(logged_on), 0.0)
    head = {"switch": "pbx", "time": "2026-11-22T13:53:20.000Z"}
    queue_figures = {"seq": 2, "type": "queue_stats", **head, "queue": "support"}
    agent_figures = {"seq": 3, "type": "agent_stats", **head, "agent": "6002",
                     "queues": ["support"]}  # fmt: skip
    seen_by = {
        name: (view.sees(audiences.observe(queue_figures, 0.0)),
               view.sees(audiences.observe(agent_figures, 0.0)))
        for name, view in views.items()
    }  # fmt: skip
    assert seen_by == {
        "member": (True, False),
        "outsider": (False, False),
        "supervisor": (True, True),
    }


@aio_test
async def test_a_subscribe_during_a_resume_ends_it_with_a_snapshot(tokens: Tokens) -> None:
    class SlowLog:
        """A log that answers after a while, so the subscribe comes in mid-replay."""

        def oldest_seq(self) -> Any:
            return deferLater(reactor, 0.05, lambda: 1)

        def events_since(self, seq: int, limit: int = 1000) -> Any:
            wires = [event_to_wire(e) for e in published if e.seq > seq][:limit]
            return deferLater(reactor, 0.05, lambda: wires)

    server = Server(tokens=tokens.store(), tenants=TENANTS, event_log=SlowLog(), resume_page=2)
    try:
        published = server.publish(*inbound_call("c-1", "6001", switch="pbx-a"))
        published += server.publish(*hang_up("c-1", "6001", switch="pbx-a"))
        async with connect(server.url(tokens.secrets["acme"], since=0)) as ws:
            await ws.send('{"type": "subscribe"}')
            received = [await recv_json(ws)]
            while received[-1]["type"] != "snapshot":
                received.append(await recv_json(ws))
            snapshot_seq = received[-1]["seq"]
            await asyncio.sleep(0.3)  # the replay would have gone on by now
            later = server.publish(marker("pbx-a", "end"))
            after = await read_until(ws, "end")
        assert [m["seq"] for m in after] == [later[0].seq] and snapshot_seq == 7
        assert [m["seq"] for m in received[:-1]] == list(range(1, len(received)))
    finally:
        await deferred_result(server.stop())
