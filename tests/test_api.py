"""The command API end to end: HTTP request → real AsteriskAdapter → AMI bytes at the fake
Asterisk, and Asterisk's answers (refusals, silence, a lost link) back as HTTP statuses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from ctilink.adapters.asterisk import AsteriskAdapter
from ctilink.ami.message import AmiMessage
from tests.aio import aio_test, deferred_result, until
from tests.conftest import TRACES
from tests.fakeami import FakeAsterisk, response, trace_events
from tests.replaying import Recorder, counter_ids
from tests.test_api_support import ApiServer, request
from tests.test_asterisk_link import SECRET, options


class Stack:
    """Fake Asterisk ← AsteriskAdapter (tenant acme) ← hub → API on a real socket."""

    def __init__(self, **overrides: Any) -> None:
        self.fake = FakeAsterisk(reactor, secret=SECRET)
        self.fake.listen()
        self.recorder = Recorder()
        self.adapter = AsteriskAdapter(
            "pbx",
            options(self.fake.port, **overrides),
            self.recorder.hub.publish,
            reactor,
            tenant="acme",
            call_id_factory=counter_ids(),
            retry_policy=lambda attempt: 0.05,
        )
        self.server = ApiServer(self.recorder.hub, {"pbx": self.adapter})

    def types(self) -> list[str]:
        return [event.TYPE for event in self.recorder.events]

    async def wait_for(self, kind: str, count: int = 1) -> None:
        await until(lambda: self.types().count(kind) >= count, 10.0)

    def actions(self, name: str) -> list[AmiMessage]:
        return [a for a in self.fake.actions if a.name.lower() == name.lower()]

    async def post(self, path: str, body: Any = None, token: str = "acme-control") -> Any:
        if body is None:
            return await request("POST", self.server.url(path), token=token)
        return await request("POST", self.server.url(path), body, token=token)

    async def live_call(self) -> str:
        """inbound-answered up to the talk: customer 5551234567 with agent 6001."""
        for _t, message in trace_events(TRACES / "inbound-answered.jsonl"):
            if message.name == "SoftHangupRequest":
                break
            self.fake.emit(message)
        await self.wait_for("established")
        return next(e.call_id for e in self.recorder.events if e.TYPE == "established")  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.server.close()
        await deferred_result(self.adapter.stop())
        await deferred_result(self.fake.stop())


def _run(stack: Stack) -> Iterator[Stack]:
    stack.adapter.start()
    yield stack
    pytest_twisted.blockon(Deferred.fromFuture(asyncio.ensure_future(stack.close())))


@pytest.fixture
def stack() -> Iterator[Stack]:
    yield from _run(Stack())


def _ok(action: AmiMessage, message: str = "Success") -> list[AmiMessage]:
    return [response(action, "Success", message)]


@aio_test
async def test_make_call_sends_originate_and_returns_the_events_call_id(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    reply = await stack.post(
        "/calls", {"device": "6001", "number": "5550001111", "data": {"TICKET": "T-42"}}
    )
    assert reply.status == 200, reply.body
    (originate,) = stack.actions("Originate")
    assert originate["Channel"] == "PJSIP/6001"
    assert (originate["Context"], originate["Exten"]) == ("from-ctilink", "5550001111")
    assert originate.getall("Variable") == ["TICKET=T-42"]
    uid = originate["ChannelId"]
    block = [
        ("Channel", "PJSIP/6001-000000c1"), ("ChannelState", "0"), ("CallerIDNum", "6001"),
        ("Context", "from-ctilink"), ("Exten", "5550001111"), ("Uniqueid", uid),
        ("Linkedid", uid),
    ]  # fmt: skip
    stack.fake.emit([("Event", "Newchannel"), *block])
    stack.fake.emit(
        [("Event", "DialBegin"), *[(f"Dest{k}", v) for k, v in block], ("DialString", "PJSIP/6001")]
    )
    await stack.wait_for("service_initiated")
    event = next(e for e in stack.recorder.wire if e["type"] == "service_initiated")
    assert reply.body == {"call_id": event["call_id"], "switch": "pbx"}


@aio_test
async def test_call_commands_become_the_right_ami_actions(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    for name in ("Hangup", "BlindTransfer", "Redirect", "Atxfer"):
        stack.fake.on_action(name, lambda conn, action: _ok(action))
    call = await stack.live_call()
    bridged = "Local/6001@agents-00000001;1"  # the agent's channel in the bridge

    reply = await stack.post(
        f"/calls/{call}/blind_transfer", {"device": "6001", "destination": "7000"}
    )
    assert reply.body == {"call_id": call, "switch": "pbx", "command": "blind_transfer"}
    (blind,) = stack.actions("BlindTransfer")
    assert (blind["Channel"], blind["Context"], blind["Exten"]) == (bridged, "from-ctilink", "7000")

    consult = await stack.post(
        f"/calls/{call}/consultation", {"device": "6001", "destination": "7001"}
    )
    assert consult.status == 200
    (atxfer,) = stack.actions("Atxfer")
    assert (atxfer["Channel"], atxfer["Exten"]) == (bridged, "7001")

    deflect = await stack.post(f"/calls/{call}/deflect", {"device": "6001", "destination": "7002"})
    assert deflect.status == 200
    (redirect,) = stack.actions("Redirect")
    assert "6001" not in redirect["Channel"]  # the other party goes, not the agent
    assert (redirect["Context"], redirect["Exten"]) == ("from-ctilink", "7002")

    assert (await stack.post(f"/calls/{call}/clear_connection", {"device": "6001"})).status == 200
    assert [h["Channel"] for h in stack.actions("Hangup")] == [bridged]

    join = {"device": "6001", "active_call_id": call}
    assert (await stack.post(f"/calls/{call}/transfer", join)).status == 200
    assert [h["Channel"] for h in stack.actions("Hangup")] == [bridged, bridged]

    assert (await stack.post(f"/calls/{call}/clear")).status == 200
    hung_up = {h["Channel"] for h in stack.actions("Hangup")[2:]}
    assert bridged in hung_up and len(hung_up) == 2  # every party


@pytest.mark.parametrize("command", ["answer", "hold", "retrieve"])
@aio_test
async def test_what_asterisk_cannot_do_is_501(stack: Stack, command: str) -> None:
    await stack.wait_for("link_resynced")
    call = await stack.live_call()
    reply = await stack.post(f"/calls/{call}/{command}", {"device": "6001"})
    assert (reply.status, reply.error) == (501, "unsupported")
    assert "'pbx' (asterisk) does not support" in reply.body["message"]


@pytest.mark.parametrize("command", ["conference", "alternate", "reconnect"])
@aio_test
async def test_joins_asterisk_cannot_do_are_501(stack: Stack, command: str) -> None:
    await stack.wait_for("link_resynced")
    call = await stack.live_call()
    reply = await stack.post(f"/calls/{call}/{command}", {"device": "6001", "active_call_id": call})
    assert (reply.status, reply.error) == (501, "unsupported")
    assert f"does not support {command}_call" in reply.body["message"]


@aio_test
async def test_agent_state_commands_become_queue_actions(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    stack.fake.add_queue("support")
    reply = await stack.post("/agents/6007/state", {"state": "logged_on", "queue": "support"})
    assert reply.body == {"agent": "6007", "switch": "pbx", "state": "logged_on"}
    (add,) = stack.actions("QueueAdd")
    assert (add["Queue"], add["Interface"], add["Paused"]) == ("support", "PJSIP/6007", "false")
    await stack.wait_for("agent_logged_on")

    await stack.post("/agents/6007/state", {"state": "not_ready", "reason": "lunch"})
    pause = stack.actions("QueuePause")[-1]
    assert (pause["Paused"], pause["Reason"]) == ("true", "lunch")
    await stack.wait_for("agent_not_ready")

    await stack.post("/agents/6007/state", {"state": "working_after_call", "queue": "support"})
    assert stack.actions("QueuePause")[-1]["Reason"] == "wrapup"
    await stack.post("/agents/6007/state", {"state": "ready", "queue": "support"})
    assert stack.actions("QueuePause")[-1]["Paused"] == "false"

    reply = await stack.post("/agents/6007/state", {"state": "logged_off"})
    assert reply.status == 200
    (remove,) = stack.actions("QueueRemove")
    assert (remove["Queue"], remove["Interface"]) == ("support", "PJSIP/6007")


@aio_test
async def test_asterisk_refusing_is_502_with_its_message(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    call = await stack.live_call()
    # The fake knows no channel of this call (its events were scripted): Hangup is refused.
    reply = await stack.post(f"/calls/{call}/clear_connection", {"device": "6001"})
    assert (reply.status, reply.error) == (502, "error")
    assert "No such channel" in reply.body["message"]


@aio_test
async def test_a_device_not_in_the_call_is_404(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    call = await stack.live_call()
    reply = await stack.post(f"/calls/{call}/clear_connection", {"device": "6009"})
    assert (reply.status, reply.body["message"]) == (404, f"device '6009' is not in call {call}")


@aio_test
async def test_asterisk_not_answering_is_504(stack: Stack) -> None:
    await stack.wait_for("link_resynced")
    stack.fake.on_action("Originate", lambda conn, action: None)
    reply = await stack.post("/calls", {"device": "6001", "number": "5550001111"})
    assert (reply.status, reply.error) == (504, "timeout")


@aio_test
async def test_a_lost_link_is_503() -> None:
    stack = Stack()
    await deferred_result(stack.fake.stop())
    stack.adapter.start()
    try:
        reply = await stack.post("/calls", {"device": "6001", "number": "5550001111"})
        assert (reply.status, reply.error) == (503, "link_down")
        assert stack.fake.actions == []
    finally:
        await stack.close()


@aio_test
async def test_no_allowed_destination_is_403_and_nothing_is_sent() -> None:
    stack = Stack(originate_contexts=())
    stack.adapter.start()
    try:
        await stack.wait_for("link_resynced")
        reply = await stack.post("/calls", {"device": "6001", "number": "5550001111"})
        assert (reply.status, reply.error) == (403, "not_allowed")
        assert "originate_contexts" in reply.body["message"]
        assert stack.actions("Originate") == []
    finally:
        await stack.close()
