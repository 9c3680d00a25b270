"""Web callback requests: queued per queue in arrival order, dialled when an agent of the
queue is ready (agent first, then the customer, through the adapter's make_call), retried a
bounded number of times, never dialled once cancelled. Unit stories on a fake clock with a
scripted switch, then end to end: REST → real AsteriskAdapter → Originate at the fake."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ctilink.errors import CommandError
from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.model.wire import event_to_wire
from ctilink.screenpop.callbacks import CALLBACK_VARIABLE, Callbacks, CallbackStateError, Status
from tests._schemas import validate_wire
from tests.aio import aio_test, until
from tests.replaying import START, Recorder
from tests.test_api import Stack
from tests.test_api_support import ScriptedAdapter, queued, request


class World:
    """Switch pbx (tenant acme, link up) with agents 6001 and 6002 logged on to support,
    not ready; a scripted adapter; callbacks on a fake clock."""

    def __init__(self, **options: Any) -> None:
        self.recorder, self.clock = Recorder(), Clock()
        self.clock.advance(START)
        self.hub = self.recorder.hub
        self.adapter = ScriptedAdapter("pbx", "acme")
        ids = itertools.count(1)
        options = {"retry_delay": 30.0, "max_attempts": 3, "answer_timeout": 60.0, **options}
        self.callbacks = Callbacks(
            self.hub, {"pbx": self.adapter}, self.clock, new_id=lambda: f"cb-{next(ids)}", **options
        )
        self.hub.publish(ev.LinkUp(switch="pbx", time=START))
        for agent in ("6001", "6002"):
            self.agent(ev.AgentLoggedOn, agent, AgentState.NOT_READY, reason="lunch")
        self.clock.advance(0)

    def agent(self, cls: type[ev.AgentEvent], agent: str, state: AgentState, **kw: Any) -> None:
        kw.setdefault("queue", "support")
        self.hub.publish(
            cls(switch="pbx", time=self.clock.seconds(), agent=agent, state=state,
                device=agent, **kw)
        )  # fmt: skip

    def ready(self, agent: str) -> None:
        self.agent(ev.AgentReady, agent, AgentState.READY)
        self.clock.advance(0)

    def call(self, cls: type[ev.CallEvent], call_id: str, **kw: Any) -> None:
        self.hub.publish(
            cls(switch="pbx", time=self.clock.seconds(), call_id=call_id,
                device=kw.pop("device", "6001"), calling_number="6001",
                called_number="5551234567", connection_state=kw.pop("state", LCS.CONNECTED), **kw)
        )  # fmt: skip
        self.clock.advance(0)

    def request(self, number: str = "5551234567", queue: str = "support", **kw: Any) -> str:
        callback = self.callbacks.request("acme", "pbx", queue, number, **kw)
        self.clock.advance(0)
        return callback.callback_id

    def dialled(self) -> list[tuple[str, str]]:
        return [(args[0], args[1]) for name, args in self.adapter.calls if name == "make_call"]

    def status(self, callback_id: str) -> str:
        callback = self.callbacks.get(callback_id)
        assert callback is not None
        return callback.status.value

    def published(self) -> list[tuple[str, str]]:
        return [
            (e.callback_id, e.status)
            for e in self.recorder.events
            if isinstance(e, ev.CallbackChanged)
        ]


@pytest.fixture
def world() -> World:
    return World()


def test_a_ready_agent_calls_the_customer_back(world: World) -> None:
    cb = world.request(name="Alice Customer", data={"TICKET": "T-42"})
    assert world.dialled() == [] and world.status(cb) == "queued"
    world.ready("6002")
    assert world.dialled() == [("6002", "5551234567")]
    (_, (_, _, data)) = world.adapter.calls[0]
    assert data == {"TICKET": "T-42", CALLBACK_VARIABLE: cb}
    callback = world.callbacks.get(cb)
    assert callback is not None
    assert (callback.status, callback.agent, callback.call_id) == (
        Status.DIALLING,
        "6002",
        "pbx-call-1",
    )
    world.call(ev.ServiceInitiated, "pbx-call-1", device="6002", state=LCS.INITIATED)
    world.call(ev.Originated, "pbx-call-1", device="6002")
    assert world.status(cb) == "connected"
    world.call(ev.CallCleared, "pbx-call-1", cause="normal_clearing", state=None)
    assert world.status(cb) == "completed"
    assert world.published() == [
        (cb, "queued"), (cb, "dialling"), (cb, "dialling"), (cb, "connected"), (cb, "completed"),
    ]  # fmt: skip
    for event in world.recorder.events:
        if isinstance(event, ev.CallbackChanged):
            validate_wire(event_to_wire(event))


def test_requests_go_in_arrival_order_one_per_ready_agent(world: World) -> None:
    first, second, third = (
        world.request("5550000001"),
        world.request("5550000002"),
        world.request("5550000003"),
    )
    world.ready("6001")
    assert world.dialled() == [("6001", "5550000001")]
    world.ready("6001")  # still ringing for the first: not taken twice
    assert len(world.dialled()) == 1
    world.ready("6002")
    assert world.dialled()[1] == ("6002", "5550000002")
    assert [world.status(c) for c in (first, second, third)] == ["dialling", "dialling", "queued"]


def test_the_longest_ready_agent_goes_first(world: World) -> None:
    world.ready("6002")
    world.clock.advance(5)
    world.ready("6001")
    world.request()
    assert world.dialled() == [("6002", "5551234567")]


def test_only_agents_of_the_queue_call(world: World) -> None:
    world.request(queue="sales")
    world.ready("6001")
    assert world.dialled() == []


def test_not_before_is_respected(world: World) -> None:
    world.ready("6001")
    cb = world.request(not_before=START + 120)
    assert world.dialled() == []
    world.clock.advance(119)
    assert world.dialled() == []
    world.clock.advance(1)
    assert world.dialled() == [("6001", "5551234567")] and world.status(cb) == "dialling"


def test_a_cancelled_request_never_dials(world: World) -> None:
    cb = world.request()
    world.callbacks.cancel(cb)
    world.ready("6001")
    world.clock.advance(3600)
    assert world.dialled() == [] and world.status(cb) == "cancelled"
    with pytest.raises(CallbackStateError, match="only a queued callback can be cancelled"):
        world.callbacks.cancel(cb)


def test_a_dialling_request_cannot_be_cancelled(world: World) -> None:
    cb = world.request()
    world.ready("6001")
    with pytest.raises(CallbackStateError, match="is dialling"):
        world.callbacks.cancel(cb)


def test_failed_attempts_are_retried_up_to_the_bound(world: World) -> None:
    world.adapter.failure = CommandError("error", "Originate failed")
    cb = world.request()
    world.ready("6001")
    callback = world.callbacks.get(cb)
    assert callback is not None
    assert (world.status(cb), callback.attempts) == ("queued", 1)
    assert callback.error == "error: Originate failed"
    assert callback.not_before == START + 30
    world.clock.advance(29)
    assert len(world.dialled()) == 1
    world.clock.advance(1)
    assert len(world.dialled()) == 2
    world.clock.advance(30)
    assert len(world.dialled()) == 3 and world.status(cb) == "failed"
    world.clock.advance(3600)
    assert len(world.dialled()) == 3


def test_a_permanent_refusal_fails_at_once(world: World) -> None:
    world.adapter.failure = CommandError("not_allowed", "no originate_contexts")
    cb = world.request()
    world.ready("6001")
    assert world.status(cb) == "failed" and len(world.dialled()) == 1


def test_an_agent_who_does_not_answer_is_an_attempt(world: World) -> None:
    cb = world.request()
    world.ready("6001")
    world.call(ev.ServiceInitiated, "pbx-call-1", state=LCS.INITIATED)
    world.call(ev.CallCleared, "pbx-call-1", cause="no_answer", state=None)
    callback = world.callbacks.get(cb)
    assert callback is not None
    assert (callback.status, callback.error) == (
        Status.QUEUED,
        "the agent's device did not answer (no_answer)",
    )
    world.clock.advance(30)
    assert world.dialled() == [("6001", "5551234567")] * 2  # the agent is ready again


def test_a_busy_customer_is_an_attempt(world: World) -> None:
    cb = world.request()
    world.ready("6001")
    world.call(ev.Originated, "pbx-call-1")
    world.call(ev.Failed, "pbx-call-1", device="5551234567", cause="busy", state=LCS.FAIL)
    assert world.status(cb) == "queued"
    world.call(ev.CallCleared, "pbx-call-1", cause="busy", state=None)  # ignored now
    assert world.status(cb) == "queued"


def test_a_call_the_switch_never_reports_times_out(world: World) -> None:
    cb = world.request()
    world.ready("6001")
    world.clock.advance(59)
    assert world.status(cb) == "dialling"
    world.clock.advance(1)
    callback = world.callbacks.get(cb)
    assert callback is not None
    assert (callback.status, callback.error) == (
        Status.QUEUED,
        "the switch reported no call for it",
    )


def test_callers_waiting_in_the_queue_come_first(world: World) -> None:
    world.hub.publish(queued("live-1", "support", at=START))
    world.request()
    world.ready("6001")
    assert world.dialled() == []
    world.call(ev.Established, "live-1", device="6002", agent="6002", queue="support")
    assert world.dialled() == [("6001", "5551234567")]


def test_nothing_is_dialled_while_the_link_is_down(world: World) -> None:
    world.hub.publish(ev.LinkDown(switch="pbx", time=START))
    world.request()
    world.ready("6001")
    assert world.dialled() == []
    world.hub.publish(ev.LinkUp(switch="pbx", time=START))
    world.clock.advance(0)
    assert world.dialled() == [("6001", "5551234567")]


def test_pending_requests_are_bounded_and_finished_ones_expire() -> None:
    from ctilink.screenpop.callbacks import CallbackLimitError

    world = World(max_pending=2, keep_finished=60)
    first = world.request()
    world.request()
    with pytest.raises(CallbackLimitError):
        world.request()
    world.callbacks.cancel(first)
    world.request()
    world.clock.advance(61)
    assert first not in [c.callback_id for c in world.callbacks.all()]


def test_callback_events_are_never_published_inside_a_hub_call(world: World) -> None:
    world.request()
    before = len(world.recorder.events)
    world.agent(ev.AgentReady, "6001", AgentState.READY)  # dispatch waits for the clock
    assert [e.TYPE for e in world.recorder.events[before:]] == ["agent_ready"]
    world.clock.advance(0)
    seqs = [e.seq for e in world.recorder.events]
    assert seqs == list(range(1, len(seqs) + 1))


# -- end to end ---------------------------------------------------------------------------
@pytest.fixture
def stack() -> Iterator[Stack]:
    running = Stack()
    running.fake.add_member(
        "support", "PJSIP/6001", name="Agent Alice", paused=True, paused_reason="lunch"
    )
    running.adapter.start()
    yield running
    pytest_twisted.blockon(Deferred.fromFuture(asyncio.ensure_future(running.close())))


@aio_test
async def test_rest_callback_dials_agent_then_customer_through_asterisk(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    made = await stack.post(
        "/callbacks", {"queue": "support", "number": "5551234567", "name": "Alice Customer"}
    )
    assert made.status == 201 and made.body["status"] == "queued"
    cb = made.body["callback_id"]
    await asyncio.sleep(0.05)
    assert stack.actions("Originate") == []  # the only agent is at lunch

    ready = await stack.post("/agents/6001/state", {"state": "ready", "queue": "support"})
    assert ready.status == 200
    await until(lambda: bool(stack.actions("Originate")))
    (originate,) = stack.actions("Originate")
    assert originate["Channel"] == "PJSIP/6001"  # the agent's device first
    assert (originate["Context"], originate["Exten"]) == ("from-ctilink", "5551234567")
    assert originate.getall("Variable") == [f"{CALLBACK_VARIABLE}={cb}"]

    url = stack.server.url(f"/callbacks/{cb}")
    await until(lambda: stack.server.callbacks.get(cb).call_id is not None)  # type: ignore[union-attr]
    state = (await request("GET", url, token="acme-read")).body
    assert (state["status"], state["agent"], state["device"], state["attempts"]) == (
        "dialling", "6001", "6001", 1,
    )  # fmt: skip

    # The agent's phone rings and is not answered: Asterisk hangs the channel up.
    uid = originate["ChannelId"]
    block = [
        ("Channel", "PJSIP/6001-000000d1"), ("ChannelState", "0"), ("CallerIDNum", "6001"),
        ("Context", "from-ctilink"), ("Exten", "5551234567"), ("Uniqueid", uid),
        ("Linkedid", uid),
    ]  # fmt: skip
    stack.fake.emit([("Event", "Newchannel"), *block])
    stack.fake.emit(
        [("Event", "DialBegin"), *[(f"Dest{k}", v) for k, v in block], ("DialString", "PJSIP/6001")]
    )
    stack.fake.emit([("Event", "Hangup"), *block, ("Cause", "19"), ("Cause-txt", "No answer")])
    await stack.wait_for("call_cleared")
    await until(lambda: stack.server.callbacks.get(cb).status is Status.QUEUED)  # type: ignore[union-attr]
    state = (await request("GET", url)).body
    assert state["status"] == "queued" and state["error"].startswith("the agent's device did not")
    assert "not_before" in state

    listing = await request("GET", stack.server.url("/callbacks?status=queued"))
    assert [c["callback_id"] for c in listing.body["callbacks"]] == [cb]
    cancelled = await request("DELETE", url)
    assert (cancelled.status, cancelled.body["status"]) == (200, "cancelled")
    again = await request("DELETE", url)
    assert (again.status, again.error) == (409, "conflict")
    await asyncio.sleep(1.1)  # past the retry delay (1 s): a cancelled request stays quiet
    assert len(stack.actions("Originate")) == 1
    statuses = [e.status for e in stack.recorder.events if isinstance(e, ev.CallbackChanged)]
    assert statuses == ["queued", "dialling", "dialling", "queued", "cancelled"]


@aio_test
async def test_rest_callback_input(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    customer = {"queue": "support", "number": "5551234567"}
    for body, message in [
        ({"queue": "support"}, "field 'number' is required"),
        ({"queue": "support", "number": "555-1234"}, "field 'number': '555-1234' is not valid"),
        ({**customer, "not_before": "tomorrow"}, "field 'not_before'"),
        ({**customer, "not_before": "2026-11-22T14:00:00"}, "field 'not_before'"),  # no zone
        ({**customer, "tenant": "other"}, "this token is not of tenant 'other'"),
    ]:  # fmt: skip
        reply = await stack.post("/callbacks", body)
        assert reply.status in (400, 403) and reply.body["message"].startswith(message), reply.body
    later = await stack.post(
        "/callbacks",
        {"queue": "support", "number": "5551234567", "not_before": "2030-01-01T10:00:00+01:00"},
    )
    assert later.body["not_before"] == "2030-01-01T09:00:00.000Z"
    missing = await request("GET", stack.server.url("/callbacks/nope"))
    assert (missing.status, missing.error) == (404, "not_found")
