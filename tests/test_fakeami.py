"""The fake Asterisk over real TCP, seen by a plain client (asyncio streams + ctilink's codec).

Where a real Asterisk 22 capture shows the same exchange, the fake's bytes are compared with
the capture's (tests/fixtures/pbx-traces/): list responses exactly, queue member events with
the clock set to the capture's seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from ctilink.ami.codec import CLOSED, NEED_DATA, AmiBanner, AmiCodec, serialize
from ctilink.ami.message import AmiMessage
from ctilink.traces import read_trace
from tests.aio import aio_test, deferred_result, until
from tests.conftest import TRACES
from tests.fakeami import FakeAsterisk, originate_response, response, trace_events

NEWCHANNEL = AmiMessage.build(Event="Newchannel", Privilege="call,all", Channel="PJSIP/6001-1")


def capture(name: str) -> list[tuple[str, AmiMessage]]:
    """A capture's messages in order, as (direction, message); the banner is left out."""
    session = read_trace(TRACES / f"{name}.jsonl").sessions[0]
    codecs = {"rx": AmiCodec(), "tx": AmiCodec(expect_banner=False)}
    out: list[tuple[str, AmiMessage]] = []
    for record in session.records:
        codecs[record.direction].receive_data(record.data)
        items = codecs[record.direction].events()
        out += [(record.direction, m) for m in items if isinstance(m, AmiMessage)]
    return out


def answers(name: str, action_id: str) -> list[AmiMessage]:
    """What the capture's switch sent for one of the capture's actions, in order."""
    return [m for d, m in capture(name) if d == "rx" and m.get("ActionID") == action_id]


def sent(name: str, action_id: str) -> AmiMessage:
    return next(m for d, m in capture(name) if d == "tx" and m.get("ActionID") == action_id)


def answered_with_event(name: str, action_id: str) -> list[AmiMessage]:
    """The response to one of the capture's actions and the queue member event after it."""
    received = [m for d, m in capture(name) if d == "rx"]
    index = next(i for i, m in enumerate(received) if m.get("ActionID") == action_id)
    event = next(m for m in received[index:] if m.name.startswith("QueueMember"))
    return [received[index], event]


class Client:
    """A plain AMI client: asyncio streams and ctilink's sans-I/O codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.codec = AmiCodec()
        self.reads = 0

    async def next(self, timeout: float = 5.0) -> AmiBanner | AmiMessage | None:
        """The next banner or message; None when the server closed the connection."""
        while True:
            item = self.codec.next_event()
            if item is CLOSED:
                return None
            if isinstance(item, AmiBanner | AmiMessage):
                return item
            assert item is NEED_DATA
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            self.reads += bool(data)
            self.codec.receive_data(data)

    async def message(self) -> AmiMessage:
        item = await self.next()
        assert isinstance(item, AmiMessage), item
        return item

    def send(self, message: AmiMessage) -> None:
        self.writer.write(serialize(message))

    async def action(self, name: str, **fields: str) -> AmiMessage:
        self.send(AmiMessage.build(Action=name, **fields))
        return await self.message()

    async def quiet(self, seconds: float = 0.3) -> bool:
        """True if nothing at all arrives for ``seconds``."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        self.codec.receive_data(data)
        return False

    async def login(self, **fields: str) -> None:
        """Banner and Login; with the default event mask also FullyBooted and SuccessfulAuth."""
        assert await self.next() == AmiBanner("Asterisk Call Manager", "11.0.0")
        reply = await self.action("Login", Username="ctilink", Secret="s3cret", **fields)
        assert reply["Message"] == "Authentication accepted", reply
        if "Events" not in fields:
            assert [(await self.message()).name for _ in range(2)] == [
                "FullyBooted",
                "SuccessfulAuth",
            ]


@asynccontextmanager
async def connected(fake: FakeAsterisk) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1795355674.0)  # the seconds of the agent-login capture
    return clock


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeAsterisk]:
    server = FakeAsterisk(reactor, clock=clock)
    server.listen()
    yield server
    pytest_twisted.blockon(server.stop())


def names(message: AmiMessage) -> list[str]:
    return [key for key, _ in message.headers]


# -- connecting and logging in -------------------------------------------------------------
@aio_test
async def test_banner_plain_login_fully_booted_and_successful_auth(fake: FakeAsterisk) -> None:
    real = {m.name: m for d, m in capture("resync") if m.kind == "event"}
    async with connected(fake) as client:
        assert await client.next() == AmiBanner("Asterisk Call Manager", "11.0.0")
        reply = await client.action("Login", ActionID="1", Username="ctilink", Secret="s3cret")
        assert reply.headers == (
            ("Response", "Success"), ("ActionID", "1"), ("Message", "Authentication accepted"),
        )  # fmt: skip
        booted, auth = await client.message(), await client.message()
        assert names(booted) == names(real["FullyBooted"])
        assert booted["Privilege"] == "system,all" and booted["Status"] == "Fully Booted"
        assert names(auth) == names(real["SuccessfulAuth"]) and auth["AccountID"] == "ctilink"
    assert fake.logins == 1


@aio_test
async def test_md5_challenge_login(fake: FakeAsterisk) -> None:
    async with connected(fake) as client:
        await client.next()
        challenge = await client.action("Challenge", ActionID="c", AuthType="MD5")
        assert names(challenge) == ["Response", "ActionID", "Challenge"]
        assert re.fullmatch(r"[0-9]{1,9}", challenge["Challenge"])
        key = hashlib.md5((challenge["Challenge"] + "s3cret").encode()).hexdigest()
        reply = await client.action("Login", AuthType="MD5", Username="ctilink", Key=key)
        assert reply["Message"] == "Authentication accepted"
    assert fake.logins == 1


@pytest.mark.parametrize(
    "fields", [{"Secret": "wrong"}, {"AuthType": "MD5", "Key": "0" * 32}, {"Secret": ""}]
)
@aio_test
async def test_bad_credentials_are_refused_and_the_connection_closed(
    fake: FakeAsterisk, fields: dict[str, str]
) -> None:
    async with connected(fake) as client:
        await client.next()
        reply = await client.action("Login", Username="ctilink", **fields)
        assert reply.headers == (("Response", "Error"), ("Message", "Authentication failed"))
        assert await client.next() is None
    assert fake.logins == 0


@aio_test
async def test_only_login_challenge_and_logoff_before_login(fake: FakeAsterisk) -> None:
    async with connected(fake) as client:
        await client.next()
        reply = await client.action("Ping", ActionID="p")
        assert reply.headers == (
            ("Response", "Error"),
            ("ActionID", "p"),
            ("Message", "Permission denied"),
        )
        reply = await client.action("Logoff", ActionID="bye")
        assert reply.headers == (
            ("Response", "Goodbye"), ("ActionID", "bye"), ("Message", "Thanks for all the fish."),
        )  # fmt: skip
        assert await client.next() is None


@aio_test
async def test_unknown_missing_and_malformed_actions_never_break_the_session(
    fake: FakeAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected(fake) as client:
        await client.login()
        reply = await client.action("Frobnicate", ActionID="9")
        assert reply["Message"] == (
            "Invalid/unknown command: Frobnicate."
            " Use Action: ListCommands to show available commands."
        )
        client.writer.write(b"\x00\xff not a header\r\nActionID: 5\r\n\r\n")
        reply = await client.message()
        assert reply.headers == (
            ("Response", "Error"),
            ("ActionID", "5"),
            ("Message", "Missing action in request"),
        )
        client.writer.write(b"X" * 200_000 + b"\r\n\r\n")  # past the size bound, no terminator
        client.send(AmiMessage.build(Action="Ping", ActionID="after"))
        while (reply := await client.message()).get("ActionID") != "after":
            assert reply["Message"] == "Missing action in request"
        assert reply["Ping"] == "Pong"
    assert [r.levelno for r in caplog.records if r.name == "tests.fakeami"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "tests.fakeami")


@aio_test
async def test_ping_answers_with_the_clock_time(fake: FakeAsterisk, clock: Clock) -> None:
    clock.advance(0.25)
    async with connected(fake) as client:
        await client.login()
        reply = await client.action("Ping", ActionID="p")
        assert reply.headers == (
            ("Response", "Success"), ("ActionID", "p"), ("Ping", "Pong"),
            ("Timestamp", "1795355674.250000"),
        )  # fmt: skip


# -- events --------------------------------------------------------------------------------
@aio_test
async def test_events_reach_only_sessions_whose_mask_covers_their_class(fake: FakeAsterisk) -> None:
    async with connected(fake) as agents, connected(fake) as everything:
        await agents.login(Events="agent")  # no FullyBooted: system is not in the mask
        await everything.login()
        fake.emit(NEWCHANNEL)
        fake.emit([("Event", "QueueMemberStatus"), ("Queue", "support")])  # Privilege added
        assert (await everything.message()) == NEWCHANNEL
        status = await everything.message()
        assert status.headers[:3] == (
            ("Event", "QueueMemberStatus"), ("Privilege", "agent,all"), ("Queue", "support"),
        )  # fmt: skip
        assert await agents.message() == status  # and not the Newchannel

        reply = await agents.action("Events", ActionID="e", EventMask="call")
        assert reply.headers == (("Response", "Success"), ("ActionID", "e"), ("Events", "On"))
        fake.emit(status)
        fake.emit(NEWCHANNEL)
        assert await agents.message() == NEWCHANNEL
        assert (await agents.action("Events", EventMask="off"))["Events"] == "Off"
        fake.emit(NEWCHANNEL)
        assert (await agents.action("Ping"))["Ping"] == "Pong"  # nothing came before it
        assert (await agents.action("Events", EventMask=""))["Message"] == "Invalid event mask"


@aio_test
async def test_emit_raw_in_one_byte_chunks_arrives_intact(fake: FakeAsterisk, clock: Clock) -> None:
    raw = "Event: NewCallerid\r\nPrivilege: call,all\r\nCallerIDName: Zoë Ünal €\r\n\r\n".encode()
    async with connected(fake) as client:
        await client.login()
        reads = client.reads
        reading = asyncio.ensure_future(client.message())
        done = fake.emit_raw(raw, chunk=1, delay=0.5)
        while not done.called:  # the delays run on the fake's clock
            clock.advance(0.5)
            await asyncio.sleep(0.002)
        message = await reading
        assert message["CallerIDName"] == "Zoë Ünal €"
        assert client.reads - reads > 1


@aio_test
async def test_play_trace_sends_the_switch_events_only(fake: FakeAsterisk, clock: Clock) -> None:
    path = TRACES / "agent-login.jsonl"
    expected = [m for _, m in trace_events(path)]
    assert [m.name for m in expected][:2] == ["DeviceStateChange", "QueueMemberAdded"]
    assert all("ActionID" not in m and m.name != "FullyBooted" for m in expected)
    async with connected(fake) as client:
        await client.login()
        assert fake.play_trace(path).called  # speed 0: at once
        assert [await client.message() for _ in expected] == expected
        paced = fake.play_trace(path, speed=2.0)  # twice as fast as captured: 0.75 s
        assert not paced.called
        clock.advance(0.7)
        assert not paced.called
        clock.advance(0.1)
        await deferred_result(paced)
        assert [await client.message() for _ in expected] == expected
        assert await client.quiet(0.1)


# -- faults --------------------------------------------------------------------------------
@aio_test
async def test_drop_resets_every_connection(fake: FakeAsterisk) -> None:
    async with connected(fake) as client, connected(fake) as other:
        await client.login()
        await other.next()
        fake.drop()
        for victim in (client, other):
            with pytest.raises(ConnectionResetError):
                await victim.next()
    await until(lambda: not fake.connections)


@aio_test
async def test_go_silent_keeps_the_socket_open_but_never_answers(fake: FakeAsterisk) -> None:
    async with connected(fake) as client:
        await client.login()
        fake.go_silent()
        client.send(AmiMessage.build(Action="Ping", ActionID="hello?"))
        fake.emit(NEWCHANNEL)
        assert await client.quiet()
        assert len(fake.connections) == 1
        assert "hello?" not in [a.get("ActionID") for a in fake.actions]
        async with connected(fake) as late:
            assert await late.quiet()  # not even the banner


@aio_test
async def test_restart_drops_forgets_calls_and_boots_again(
    fake: FakeAsterisk, clock: Clock
) -> None:
    uid = fake.add_channel("PJSIP/6001-00000001")
    fake.add_member("support", "PJSIP/6001")
    fake.add_entry("support", uid)
    async with connected(fake) as client:
        await client.login()
        clock.advance(60)
        fake.restart()
        with pytest.raises(ConnectionResetError):
            await client.next()
    assert fake.channels == {} and fake.bridges == {} and fake.queues["support"].entries == []
    assert len(fake.queues["support"].members) == 1
    async with connected(fake) as client:
        await client.next()
        await client.action("Login", Username="ctilink", Secret="s3cret")
        assert (await client.message())["Uptime"] == "0"
    assert fake.logins == 2


@aio_test
async def test_on_action_overrides_and_none_never_answers(fake: FakeAsterisk) -> None:
    fake.on_action("Ping", lambda conn, action: None)
    async with connected(fake) as client:
        await client.login()
        client.send(AmiMessage.build(Action="Ping", ActionID="lost"))
        assert await client.quiet()
        assert fake.actions[-1]["ActionID"] == "lost"
        fake.on_action("ping", lambda conn, action: [response(action, "Success", "custom")])
        assert (await client.action("Ping", ActionID="x"))["Message"] == "custom"
        fake.on_action("Ping", None)
        assert (await client.action("Ping"))["Ping"] == "Pong"


# -- call control --------------------------------------------------------------------------
@aio_test
async def test_originate_is_recorded_and_answered_like_asterisk(fake: FakeAsterisk) -> None:
    originate = sent("click-to-dial", "cap-2")
    async with connected(fake) as client:
        await client.login()
        client.send(originate)
        assert [await client.message()] == answers("click-to-dial", "cap-2")[:1]
        assert (await client.action("Ping"))["Ping"] == "Pong"  # nothing else was sent
        reply = await client.action("Originate", ActionID="o", Channel="Local/6002@agents",
                                    Context="caller", Exten="1", Priority="1", Async="true",
                                    ChannelId="call-1")  # fmt: skip
        assert reply["Message"] == "Originate successfully queued"
        assert (await client.action("Originate", Exten="1"))["Message"] == "Channel not specified"
        bad = await client.action("Originate", Channel="nothing", Async="yes")
        assert bad["Message"] == "Invalid channel"
    assert next(a for a in fake.actions if a.name == "Originate") == originate
    assert fake.originate_ids["call-1"]["ActionID"] == "o"
    event = originate_response(
        originate, uniqueid="1795355663.6", channel="Local/6001@agents-00000003;1"
    )
    assert [event] == [m for m in answers("click-to-dial", "cap-2") if m.kind == "event"]


@aio_test
async def test_hangup_and_transfers_need_the_channel(fake: FakeAsterisk) -> None:
    alice = fake.add_channel("PJSIP/6001-00000001")
    async with connected(fake) as client:
        await client.login()
        hangups = [("PJSIP/6001-00000001", "Channel Hungup"), (alice, "Channel Hungup")]
        hangups += [("PJSIP/9-1", "No such channel"), ("", "No channel specified")]
        for channel, text in hangups:
            assert (await client.action("Hangup", Channel=channel))["Message"] == text
        moved = {"Channel": "PJSIP/6001-00000001", "Exten": "6002", "Context": "agents"}
        assert (await client.action("BlindTransfer", **moved))["Message"] == "Transfer invalid"
        fake.add_bridge(alice, fake.add_channel("PJSIP/trunk-2"))
        assert (await client.action("BlindTransfer", **moved))["Message"] == "Transfer succeeded"
        assert (await client.action("Atxfer", **moved))["Message"] == "Atxfer successfully queued"
        reply = await client.action("Redirect", Priority="1", **moved)
        assert reply["Message"] == "Redirect successful"
        reply = await client.action(
            "Redirect", Channel="PJSIP/x", Exten="1", Context="c", Priority="1"
        )
        assert reply["Message"] == "Channel does not exist: PJSIP/x"


# -- lists, compared with a real Asterisk 22 ------------------------------------------------
@aio_test
async def test_core_show_channels_equals_the_capture(fake: FakeAsterisk) -> None:
    expected = answers("resync", "cap-3")
    uid = fake.add_channel(
        "Local/800@inbound-00000004;1", uniqueid="1795355680.8", caller_num="5551234567",
        caller_name="Alice Customer", connected_num="5551234567",
        connected_name="Alice Customer", context="caller", exten="5551234567", priority=3,
        application="Wait", application_data="10", duration="00:00:03",
    )  # fmt: skip
    assert fake.channels[uid] == list(expected[1].headers[2:])  # after Event and ActionID
    for item in expected[2:-1]:  # the others verbatim
        fake.channels[item["Uniqueid"]] = list(item.headers[2:])
    async with connected(fake) as client:
        await client.login()
        client.send(sent("resync", "cap-3"))
        assert [await client.message() for _ in expected] == expected


@aio_test
async def test_bridge_list_and_info(fake: FakeAsterisk) -> None:
    bridge_enter = next(m for _, m in capture("inbound-answered") if m.name == "BridgeEnter")
    a, b = fake.add_channel("Local/6001@agents-1;1"), fake.add_channel("PJSIP/trunk-1")
    bridge = fake.add_bridge(a, b)
    async with connected(fake) as client:
        await client.login()
        listing = [await client.action("BridgeList", ActionID="l")] + [
            await client.message() for _ in range(2)
        ]
        assert [m.get("Message") or m.name for m in listing] == [
            "Bridge listing will follow", "BridgeListItem", "BridgeListComplete",
        ]  # fmt: skip
        assert names(listing[1])[2:] == names(bridge_enter)[2:9]
        assert listing[1]["BridgeNumChannels"] == "2" and listing[2]["ListItems"] == "1"
        info = [await client.action("BridgeInfo", ActionID="i", BridgeUniqueid=bridge)]
        info += [await client.message() for _ in range(3)]
        assert [m.name for m in info[1:]] == ["BridgeInfoChannel"] * 2 + ["BridgeInfoComplete"]
        assert names(info[1])[2:] == names(bridge_enter)[9:]  # the channel block
        assert names(info[3])[4:] == names(bridge_enter)[2:9]  # the bridge block
        reply = await client.action("BridgeInfo", BridgeUniqueid="nope")
        assert reply["Message"] == "Specified BridgeUniqueid not found"


def resync_queues(fake: FakeAsterisk) -> None:
    """The queues of the resync capture, from its QueueStatus answer."""
    for item in answers("resync", "cap-4")[1:-1]:
        fields = dict(item.headers[1:-1])  # after Event, before ActionID
        queue = fields.pop("Queue")
        if item.name == "QueueParams":
            fake.add_queue(queue, **fields)
        else:
            fake.queues[queue].members.append(list(fields.items()))


@aio_test
async def test_queue_status_and_summary_equal_the_capture(fake: FakeAsterisk) -> None:
    resync_queues(fake)
    async with connected(fake) as client:
        await client.login()
        for action_id in ("cap-4", "cap-5"):
            expected = answers("resync", action_id)
            client.send(sent("resync", action_id))
            assert [await client.message() for _ in expected] == expected


@aio_test
async def test_queue_status_lists_waiting_callers(fake: FakeAsterisk) -> None:
    resync_queues(fake)
    uid = fake.add_channel("Local/800@inbound-1;2", caller_num="5551234567")
    fake.add_entry("sales", uid, wait=7)
    async with connected(fake) as client:
        await client.login()
        await client.action("QueueStatus", ActionID="q", Queue="sales")
        params, member, entry, done = [await client.message() for _ in range(4)]
        assert params["Calls"] == "1" and member["Name"] == "Agent Carol"
        assert names(entry) == [
            "Event", "Queue", "Position", "Channel", "Uniqueid", "CallerIDNum", "CallerIDName",
            "ConnectedLineNum", "ConnectedLineName", "Wait", "Priority", "ActionID",
        ]  # fmt: skip
        assert (entry["Position"], entry["CallerIDNum"], entry["CallerIDName"]) == (
            "1",
            "5551234567",
            "unknown",
        )
        assert done["ListItems"] == "3"
        await client.action("QueueSummary", Queue="sales")
        summary = await client.message()
        assert (summary["Callers"], summary["LongestHoldTime"]) == ("1", "7")


@aio_test
async def test_queue_member_actions_equal_the_capture(fake: FakeAsterisk, clock: Clock) -> None:
    resync_queues(fake)
    async with connected(fake) as client:
        await client.login()
        for action_id in ("cap-2", "cap-3", "cap-4", "cap-5"):  # add, pause, unpause, remove
            client.send(sent("agent-login", action_id))
            reply = [await client.message(), await client.message()]
            assert reply == answered_with_event("agent-login", action_id)
            clock.advance(1)
        support, nobody = {"Queue": "support"}, {"Interface": "SIP/x"}
        errors = [
            ({"Action": "QueueRemove", "Interface": "Local/6001@agents/n", **support},
             "Member not dynamic"),
            ({"Action": "QueueRemove", **support, **nobody},
             "Unable to remove interface: Not there"),
            ({"Action": "QueueAdd", "Queue": "nope", **nobody},
             "Unable to add interface to queue: No such queue"),
            ({"Action": "QueueAdd", "Queue": "sales", "Interface": "local/6003@agents/n"},
             "Unable to add interface: Already there"),
            ({"Action": "QueuePause", "Paused": "true", **nobody}, "Interface not found"),
            ({"Action": "QueuePause", **nobody}, "Need 'Interface' and 'Paused' parameters."),
        ]  # fmt: skip
        for fields, text in errors:
            client.send(AmiMessage(fields.items()))
            assert (await client.message())["Message"] == text
