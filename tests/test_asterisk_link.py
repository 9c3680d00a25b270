"""The live Asterisk link over real sockets, against the fake Asterisk (real AMI bytes).

Each of panoramisk 1.4's defects that made us write our own client has a regression test
here: split UTF-8 and non-UTF-8 bytes, an empty last value, a handler exception, a pending
Originate at a drop, actions that never resolve, a ping that never checks the reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from ctilink.adapters.asterisk import AsteriskAdapter
from ctilink.ami.codec import serialize
from ctilink.ami.message import AmiMessage
from ctilink.config import AsteriskOptions, Secret
from ctilink.errors import CommandError
from tests.aio import aio_test, deferred_result, until
from tests.conftest import TRACES
from tests.fakeami import FakeAsterisk, trace_events
from tests.replaying import Recorder, counter_ids, replay_fixture

SECRET = "s3cret-for-tests"


def options(port: int, **overrides: Any) -> AsteriskOptions:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "username": "ctilink", "secret": Secret(SECRET),
        "auth": "md5", "events": ("call", "agent", "user", "system"),
        "call_data_variables": (), "ping_interval": 1.0, "ping_timeout": 2.0,
        "action_timeout": 1.0, "connect_timeout": 2.0, "reconnect_max_delay": 1.0,
        "originate_contexts": ("from-ctilink",), "device_channel": "PJSIP/{device}",
        "fastagi": None, "wrapup_seconds": 0.0,
    }  # fmt: skip
    values.update(overrides)
    return AsteriskOptions(**values)


class Link:
    """A fake Asterisk and a live adapter connected to it, events recorded."""

    def __init__(self, **overrides: Any) -> None:
        self.fake = FakeAsterisk(reactor, secret=SECRET)
        self.fake.listen()
        self.recorder = Recorder()
        self.adapter = AsteriskAdapter(
            "pbx",
            options(self.fake.port, **overrides),
            self.recorder.hub.publish,
            reactor,
            call_id_factory=counter_ids(),
            retry_policy=lambda attempt: 0.05,
        )

    def types(self) -> list[str]:
        return [event.TYPE for event in self.recorder.events]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> None:
        await until(lambda: self.types().count(kind) >= count, timeout)

    def actions(self, name: str) -> list[AmiMessage]:
        return [a for a in self.fake.actions if a.name.lower() == name.lower()]

    async def close(self) -> None:
        await deferred_result(self.adapter.stop())
        await deferred_result(self.fake.stop())


@pytest.fixture
def link() -> Iterator[Link]:
    running = Link()
    running.adapter.start()
    yield running
    pytest_twisted.blockon(_close(running))


def _close(running: Link) -> Any:
    from twisted.internet.defer import Deferred

    return Deferred.fromFuture(asyncio.ensure_future(running.close()))


# -- link life ------------------------------------------------------------------------------
@aio_test
async def test_md5_login_then_link_up_and_resync(link: Link) -> None:
    await link.wait_for("link_resynced")
    assert link.types()[:2] == ["link_up", "link_resynced"]
    (login,) = link.actions("Login")
    assert login.get("AuthType") == "MD5" and "Secret" not in login
    assert login.get("Events") == "call,agent,user,system"  # floods filtered at the switch
    assert [a.name for a in link.fake.actions[:2]] == ["Challenge", "Login"]
    assert {a.name for a in link.fake.actions} >= {"CoreShowChannels", "QueueStatus"}


@aio_test
async def test_plain_login() -> None:
    link = Link(auth="plain")
    link.adapter.start()
    try:
        await link.wait_for("link_up")
        (login,) = link.actions("Login")
        assert login.get("Secret") == SECRET
    finally:
        await link.close()


@aio_test
async def test_refused_login_is_logged_once_and_retried(
    logged_errors: list[logging.LogRecord],
) -> None:
    link = Link(secret=Secret("wrong"))
    link.adapter.start()
    try:
        await until(lambda: len(link.actions("Login")) >= 3)
        assert "link_up" not in link.types()
        refused = [r for r in logged_errors if "login as ctilink refused" in r.getMessage()]
        assert len(refused) == 1  # later attempts log at WARNING
        assert SECRET not in " ".join(r.getMessage() for r in logged_errors)
    finally:
        await link.close()


@aio_test
async def test_heartbeat_pings_and_checks_replies(link: Link) -> None:
    await link.wait_for("link_resynced")
    await until(lambda: len(link.actions("Ping")) >= 2)
    assert link.types().count("link_down") == 0


@aio_test
async def test_silent_peer_is_found_and_the_link_comes_back() -> None:
    link = Link(ping_interval=0.3, ping_timeout=0.3)
    link.adapter.start()
    await link.wait_for("link_resynced")
    silent_at = reactor.seconds()
    link.fake.go_silent()
    await link.wait_for("link_down")
    down = next(e for e in link.recorder.events if e.TYPE == "link_down")
    # ping_interval + ping_timeout = 0.6 s here; the default config's bound is 15 s.
    assert down.time - silent_at < 0.6 + 1.0
    link.fake.silent = False
    await link.wait_for("link_resynced", 2)
    assert link.fake.logins == 2
    await link.close()


@aio_test
async def test_drop_reconnect_and_resync_clears_and_adds(link: Link) -> None:
    await link.wait_for("link_resynced")
    fake = link.fake
    fake.add_member(
        "support", "Local/6001@agents/n", name="Agent Alice", state_interface="Local/6001@agents"
    )
    await deferred_result(fake.play_trace(TRACES / "inbound-answered.jsonl", speed=0))
    # A call of our own making, alive on the switch: a trunk call waiting in support.
    old = fake.add_channel(
        "PJSIP/trunk-000000a1",
        uniqueid="1795400000.1",
        state=6,
        caller_num="5551112222",
        exten="800",
        context="from-trunk",
        application="Queue",
        application_data="support",
    )
    fake.emit([("Event", "Newchannel"), *fake.channels[old][:14]])
    fake.emit(
        [
            ("Event", "QueueCallerJoin"),
            *fake.channels[old][:14],
            ("Queue", "support"),
            ("Position", "1"),
            ("Count", "1"),
        ]
    )
    await link.wait_for("queued", 2)
    fake.drop()
    await link.wait_for("link_down")
    # While the link is down the waiting caller hangs up and another call starts.
    fake.remove_channel(old)
    new = fake.add_channel(
        "PJSIP/trunk-000000a2",
        uniqueid="1795400000.2",
        state=6,
        caller_num="5553334444",
        exten="801",
        context="from-trunk",
    )
    fake.add_entry("sales", new, wait=3)
    await link.wait_for("link_resynced", 2)
    after = link.recorder.wire[link.types().index("link_down") :]
    summary = [(e["type"], e.get("device"), e.get("cause")) for e in after]
    assert summary == [
        ("link_down", None, None),
        ("link_up", None, None),
        ("connection_cleared", "5551112222", "resync"),
        ("call_cleared", None, "resync"),
        ("delivered", "801", None),
        ("queued", "sales", None),
        ("link_resynced", None, None),
    ]
    snapshot = link.recorder.hub.tracker.snapshot(reactor.seconds())
    assert [c["calling_number"] for c in snapshot["calls"]] == ["5553334444"]
    assert [(q["queue"], q["calls_waiting"]) for q in snapshot["queues"]] == [
        ("support", 0),
        ("sales", 1),
    ]


@aio_test
async def test_resync_after_restart_reports_agents(link: Link) -> None:
    await link.wait_for("link_resynced")
    link.fake.add_member(
        "support", "PJSIP/6001", name="Agent Alice", paused=True, paused_reason="lunch"
    )
    link.fake.restart()
    await link.wait_for("link_resynced", 2)
    agents = [e for e in link.recorder.wire if "agent" in e and e["type"].startswith("agent")]
    assert [(e["type"], e["agent"], e.get("queue"), e["reason"]) for e in agents] == [
        ("agent_logged_on", "6001", "support", "lunch"),  # reason: of the state after it
        ("agent_not_ready", "6001", "support", "lunch"),
    ]


# -- panoramisk 1.4's defects -----------------------------------------------------------------
def _varset(variable: str, value: str) -> bytes:
    return serialize(AmiMessage([
        ("Event", "VarSet"), ("Privilege", "dialplan,all"),
        ("Channel", "PJSIP/trunk-000000b1"), ("Uniqueid", "1795400001.1"),
        ("Linkedid", "1795400001.1"), ("Variable", variable), ("Value", value),
    ]))  # fmt: skip


@aio_test
async def test_split_utf8_non_utf8_and_empty_last_value_survive_the_socket() -> None:
    link = Link(events=("call", "agent", "user", "system", "dialplan"))
    link.adapter.start()
    try:
        await link.wait_for("link_resynced")
        fake = link.fake
        fake.emit(
            [
                ("Event", "Newchannel"),
                ("Channel", "PJSIP/trunk-000000b1"),
                ("ChannelState", "4"),
                ("CallerIDNum", "5550009999"),
                ("Exten", "800"),
                ("Uniqueid", "1795400001.1"),
                ("Linkedid", "1795400001.1"),
            ]
        )
        stream = (
            _varset("__CUSTOMER_NAME", "Zoë Łukasz")
            + _varset("__NOTE", "")
            + _varset("__LEGACY", "Caf").replace(b"Value: Caf", b"Value: Caf\xe9")
        )
        await deferred_result(fake.emit_raw(stream, chunk=1))
        fake.emit(
            [
                ("Event", "Newstate"),
                ("Channel", "PJSIP/trunk-000000b1"),
                ("ChannelState", "6"),
                ("Uniqueid", "1795400001.1"),
                ("Linkedid", "1795400001.1"),
            ]
        )
        await link.wait_for("delivered")
        delivered = next(e for e in link.recorder.wire if e["type"] == "delivered")
        assert delivered["data"] == {
            "CUSTOMER_NAME": "Zoë Łukasz",
            "NOTE": "",
            "LEGACY": "Caf\ufffd",
        }
    finally:
        await link.close()


@aio_test
async def test_a_failing_handler_does_not_drop_the_link(
    link: Link, logged_errors: list[logging.LogRecord]
) -> None:
    await link.wait_for("link_resynced")

    def broken(message: AmiMessage) -> None:
        raise RuntimeError("handler bug")

    link.adapter.normalizer.register("UserEvent", broken)
    link.fake.emit([("Event", "UserEvent"), ("UserEvent", "Boom")])
    await deferred_result(link.fake.play_trace(TRACES / "agent-login.jsonl"))
    await link.wait_for("agent_logged_off")
    assert link.fake.logins == 1 and "link_down" not in link.types()
    assert any("could not apply AMI event UserEvent" in r.getMessage() for r in logged_errors)


@aio_test
async def test_an_originate_pending_at_a_drop_fails_and_is_never_resent(link: Link) -> None:
    await link.wait_for("link_resynced")
    link.fake.on_action("Originate", lambda conn, action: None)  # Asterisk never answers
    pending = link.adapter.make_call("6001", "5550001111")
    await until(lambda: len(link.actions("Originate")) == 1)
    link.fake.drop()
    with pytest.raises(CommandError) as failed:
        await deferred_result(pending)
    assert failed.value.code == "link_down"
    await link.wait_for("link_resynced", 2)
    await asyncio.sleep(0.3)
    assert len(link.actions("Originate")) == 1


@aio_test
async def test_every_action_resolves_or_times_out(link: Link) -> None:
    await link.wait_for("link_resynced")
    link.fake.add_queue("support")
    await deferred_result(link.adapter.set_agent_state("6007", "logged_on", "support"))
    await link.wait_for("agent_logged_on")  # QueueAdd's answer and its event
    link.fake.on_action("QueueAdd", lambda conn, action: None)
    started = reactor.seconds()
    with pytest.raises(CommandError) as failed:
        await deferred_result(link.adapter.set_agent_state("6008", "logged_on", "support"))
    assert failed.value.code == "timeout"
    assert 0.9 <= reactor.seconds() - started < 2.0  # action_timeout = 1 s
    assert len(link.adapter.pending) == 0


@aio_test
async def test_an_action_while_disconnected_fails_at_once() -> None:
    link = Link()
    await deferred_result(link.fake.stop())
    link.adapter.start()
    try:
        with pytest.raises(CommandError) as failed:
            await deferred_result(link.adapter.make_call("6001", "5550001111"))
        assert failed.value.code == "link_down"
    finally:
        await deferred_result(link.adapter.stop())


# -- call control ---------------------------------------------------------------------------
@aio_test
async def test_make_call_originates_with_a_preset_channel_id(link: Link) -> None:
    await link.wait_for("link_resynced")
    call_id = await deferred_result(
        link.adapter.make_call("6001", "5550001111", {"CUSTOMER_ACCOUNT": "ACME-001"})
    )
    (originate,) = link.actions("Originate")
    assert originate["Channel"] == "PJSIP/6001"
    assert (originate["Context"], originate["Exten"]) == ("from-ctilink", "5550001111")
    assert originate["Async"] == "true"
    assert originate.getall("Variable") == ["CUSTOMER_ACCOUNT=ACME-001"]
    uid = originate["ChannelId"]
    block = [
        ("Channel", "PJSIP/6001-000000c1"),
        ("ChannelState", "0"),
        ("CallerIDNum", "6001"),
        ("Context", "from-ctilink"),
        ("Exten", "5550001111"),
        ("Uniqueid", uid),
        ("Linkedid", uid),
    ]
    link.fake.emit([("Event", "Newchannel"), *block])
    link.fake.emit(
        [("Event", "DialBegin"), *[(f"Dest{k}", v) for k, v in block], ("DialString", "PJSIP/6001")]
    )
    await link.wait_for("service_initiated")
    event = next(e for e in link.recorder.wire if e["type"] == "service_initiated")
    assert event["call_id"] == call_id
    assert (event["device"], event["called_number"]) == ("6001", "5550001111")


@pytest.mark.parametrize(
    ("device", "number", "code"),
    [
        ("6001", "5550001111\r\nAction: Originate", "invalid"),
        ("6001", "s", "invalid"),
        ("60 01", "123", "invalid"),
        ("6001", "", "invalid"),
    ],
)
@aio_test
async def test_make_call_refuses_bad_input(link: Link, device: str, number: str, code: str) -> None:
    await link.wait_for("link_resynced")
    with pytest.raises(CommandError) as failed:
        await deferred_result(link.adapter.make_call(device, number))
    assert failed.value.code == code
    assert link.actions("Originate") == []


@aio_test
async def test_click_to_dial_disabled_without_allowed_contexts() -> None:
    link = Link(originate_contexts=())
    link.adapter.start()
    try:
        await link.wait_for("link_resynced")
        with pytest.raises(CommandError) as failed:
            await deferred_result(link.adapter.make_call("6001", "5550001111"))
        assert failed.value.code == "not_allowed"
    finally:
        await link.close()


async def _live_call(link: Link) -> str:
    """The inbound-answered call up to the talk (before anyone hangs up); its call id."""
    for _t, message in trace_events(TRACES / "inbound-answered.jsonl"):
        if message.name == "SoftHangupRequest":
            break
        link.fake.emit(message)
    await link.wait_for("established")
    return next(e.call_id for e in link.recorder.events if e.TYPE == "established")  # type: ignore[attr-defined]


@aio_test
async def test_clear_connection_and_transfer_name_the_right_channels(link: Link) -> None:
    await link.wait_for("link_resynced")
    fake = link.fake
    fake.on_action("Hangup", lambda conn, action: [_success(action, "Channel Hungup")])
    fake.on_action("BlindTransfer", lambda conn, action: [_success(action, "Transfer succeeded")])
    call_id = await _live_call(link)
    await deferred_result(link.adapter.single_step_transfer(call_id, "6001", "7000"))
    (transfer,) = link.actions("BlindTransfer")
    assert transfer["Channel"] == "Local/6001@agents-00000001;1"  # the bridged half
    assert (transfer["Context"], transfer["Exten"]) == ("from-ctilink", "7000")
    await deferred_result(link.adapter.clear_connection(call_id, "6001"))
    (hangup,) = link.actions("Hangup")
    assert hangup["Channel"] == "Local/6001@agents-00000001;1"
    with pytest.raises(CommandError) as failed:
        await deferred_result(link.adapter.clear_connection(call_id, "9999"))
    assert failed.value.code == "not_found"


@aio_test
async def test_agent_state_commands(link: Link) -> None:
    await link.wait_for("link_resynced")
    link.fake.add_member("support", "Local/6001@agents/n", name="Agent Alice")
    link.fake.restart()
    await link.wait_for("link_resynced", 2)
    await deferred_result(link.adapter.set_agent_state("6001", "not_ready", reason="lunch"))
    pause = link.actions("QueuePause")[-1]
    assert (pause["Interface"], pause["Paused"], pause["Reason"]) == (
        "Local/6001@agents/n",
        "true",
        "lunch",
    )
    await link.wait_for("agent_not_ready")
    await deferred_result(link.adapter.set_agent_state("6001", "ready", "support"))
    await link.wait_for("agent_ready")
    with pytest.raises(CommandError) as failed:
        await deferred_result(link.adapter.set_agent_state("6001", "dancing"))
    assert failed.value.code == "invalid"


@aio_test
async def test_what_ami_cannot_do_is_refused_clearly(link: Link) -> None:
    await link.wait_for("link_resynced")
    for attempt in (
        link.adapter.answer_call("c", "6001"),
        link.adapter.hold_call("c", "6001"),
        link.adapter.retrieve_call("c", "6001"),
    ):
        with pytest.raises(CommandError) as failed:
            await deferred_result(attempt)
        assert failed.value.code == "unsupported"
        assert "asterisk" in str(failed.value)


@aio_test
async def test_stop_logs_off(link: Link) -> None:
    await link.wait_for("link_resynced")
    await deferred_result(link.adapter.stop())
    assert link.actions("Logoff")
    await link.wait_for("link_down")


def _success(action: AmiMessage, message: str) -> AmiMessage:
    return AmiMessage(
        [("Response", "Success"), ("ActionID", action.get("ActionID", "")), ("Message", message)]
    )


@aio_test
async def test_a_live_link_and_a_replay_of_the_same_events_agree() -> None:
    link = Link(events=("call", "agent", "user", "system", "dialplan"))
    link.adapter.start()
    await link.wait_for("link_resynced")
    await deferred_result(link.fake.play_trace(TRACES / "inbound-answered.jsonl"))
    await link.wait_for("call_cleared")
    drop = {"seq", "time", "call_id", "switch_call_id"}

    def calls_and_agents(wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in e.items() if k not in drop}
            for e in wire
            if not e["type"].startswith("link_")
        ]

    assert calls_and_agents(link.recorder.wire) == calls_and_agents(
        replay_fixture("inbound-answered.jsonl").wire
    )
    await link.close()


@aio_test
async def test_a_tap_records_both_directions_without_the_secret() -> None:
    link = Link(auth="plain")
    recorded: list[tuple[str, bytes]] = []
    link.adapter.taps.append(lambda at, direction, data: recorded.append((direction, data)))
    link.adapter.start()
    try:
        await link.wait_for("link_resynced")
        assert recorded[0] == ("rx", b"Asterisk Call Manager/11.0.0\r\n")
        (login,) = [data for direction, data in recorded if b"Action: Login" in data]
        assert b"Secret: ********" in login and SECRET.encode() not in login
        assert any(d == "rx" and b"Event: FullyBooted" in data for d, data in recorded)
        assert all(data.endswith(b"\r\n") for _, data in recorded)  # whole messages
    finally:
        await link.close()
