"""The sans-I/O FastAGI codec: the real Asterisk 22 exchange, every reply form, the bounds.

Each parse is checked three ways (whole, byte by byte, in two halves) as STYLE.md asks, and
a property test feeds arbitrary bytes: events, or our RemoteProtocolError, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctilink.agi.codec import (
    CLOSED,
    MAX_COMMAND_SIZE,
    MAX_ENVIRONMENT_SIZE,
    MAX_LINE_SIZE,
    NEED_DATA,
    AgiCommand,
    AgiEnvironment,
    AgiEvent,
    AgiHangup,
    AgiReply,
    AgiServerConnection,
    AgiState,
    hangup,
    quote,
    set_variable,
    verbose,
)
from ctilink.errors import LocalProtocolError, RemoteProtocolError
from ctilink.traces import read_trace
from tests.conftest import TRACES

TRACE = read_trace(TRACES / "fastagi-route.jsonl").sessions[0]
ENV = TRACE.records[0].data  # the agi_* block exactly as Asterisk 22.10.1 sent it
assert TRACE.records[0].direction == "rx" and ENV.endswith(b"\n\n")


def feed_whole(conn: AgiServerConnection, data: bytes) -> list[AgiEvent]:
    conn.receive_data(data)
    return drain(conn)


def feed_bytewise(conn: AgiServerConnection, data: bytes) -> list[AgiEvent]:
    out: list[AgiEvent] = []
    for index in range(len(data)):
        out.extend(feed_whole(conn, data[index : index + 1]))
    return out


def feed_in_two(conn: AgiServerConnection, data: bytes) -> list[AgiEvent]:
    middle = len(data) // 2
    return feed_whole(conn, data[:middle]) + feed_whole(conn, data[middle:])


Feed = Callable[[AgiServerConnection, bytes], list[AgiEvent]]


@pytest.fixture(params=[feed_whole, feed_bytewise, feed_in_two], ids=lambda f: f.__name__)
def feed(request: pytest.FixtureRequest) -> Feed:
    return request.param  # type: ignore[no-any-return]


def drain(conn: AgiServerConnection) -> list[AgiEvent]:
    out: list[AgiEvent] = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
        if event is CLOSED:
            break
    return out


def ready(env: bytes = ENV) -> AgiServerConnection:
    """A connection past the environment."""
    conn = AgiServerConnection()
    (event,) = feed_whole(conn, env)
    assert isinstance(event, AgiEnvironment)
    return conn


# -- environment -----------------------------------------------------------------------------
def test_real_environment(feed: Feed) -> None:
    (env,) = feed(AgiServerConnection(), ENV)
    assert isinstance(env, AgiEnvironment)
    assert env.script == "route" and env.args == ("support",)
    assert list(env.variables)[:3] == ["network", "network_script", "request"]
    assert env.variables["channel"] == "Local/803@routed-00000033;2"
    assert env.variables["uniqueid"] == "1795355841.103"
    assert env.variables["callerid"] == "5554446666"
    assert env.variables["calleridname"] == "Dana Vip"
    assert env.variables["extension"] == "803"
    assert env.variables["accountcode"] == ""  # "agi_accountcode: " keeps its empty value
    assert env.variables["arg_1"] == "support"
    assert env.get("dnid") is None and env.get("accountcode") is None  # unknown / empty
    assert env.get("nope") is None


def test_trailing_partial_data_is_kept(feed: Feed) -> None:
    conn = AgiServerConnection()
    events = feed(conn, ENV + b"HANGUP\n200 res")
    assert [type(e) for e in events] == [AgiEnvironment, AgiHangup]
    conn.send(set_variable("A", "1"))
    assert feed(conn, b"ult=1\n") == [AgiReply(200, "1", None, ("200 result=1",))]


def test_script_from_request_and_numbered_args_in_order() -> None:
    env = (
        b"agi_request: agi://10.0.0.1/vip?tier=gold\n"
        + b"".join(b"agi_arg_%d: a%d\n" % (n, n) for n in (2, 10, 1))
        + b"\n"
    )
    (event,) = feed_whole(AgiServerConnection(), env)
    assert isinstance(event, AgiEnvironment)
    assert event.script == "vip"
    assert event.args == ("a1", "a2", "a10")


def test_crlf_environment_is_tolerated() -> None:
    (event,) = feed_whole(AgiServerConnection(), ENV.replace(b"\n", b"\r\n"))
    assert isinstance(event, AgiEnvironment) and event.variables["extension"] == "803"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"agi_network: yes\nnot an agi line\n\n",
        b"agi_: x\n\n",
        b"\n",  # an environment with no variables
    ],
)
def test_garbage_environment_is_a_remote_error(data: bytes) -> None:
    conn = AgiServerConnection()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        drain(conn)
    assert conn.state is AgiState.ERROR
    with pytest.raises(RemoteProtocolError):  # the error is sticky
        conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"agi_x: y\n")


def test_environment_bound_without_a_line_end() -> None:
    conn = AgiServerConnection()
    conn.receive_data(b"agi_x: " + b"y" * MAX_LINE_SIZE)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        conn.next_event()


def test_environment_bound_over_many_lines() -> None:
    line = b"agi_x: " + b"y" * 1000 + b"\n"
    conn = AgiServerConnection()
    conn.receive_data(line * (MAX_ENVIRONMENT_SIZE // len(line)))
    assert conn.next_event() is NEED_DATA  # just under the bound: fine
    conn.receive_data(line)
    with pytest.raises(RemoteProtocolError, match="environment exceeds"):
        conn.next_event()


def test_environment_at_the_bound_is_accepted() -> None:
    filler = MAX_ENVIRONMENT_SIZE - len(ENV) - len(b"agi_pad: \n")
    env = ENV[:-1] + b"agi_pad: " + b"p" * filler + b"\n\n"
    assert len(env) == MAX_ENVIRONMENT_SIZE
    long_lines = AgiServerConnection(max_line_size=MAX_ENVIRONMENT_SIZE)
    assert isinstance(feed_whole(long_lines, env)[0], AgiEnvironment)


# -- commands and replies ----------------------------------------------------------------------
def test_the_real_exchange_byte_for_byte() -> None:
    """Replay the capture: our commands are exactly the bytes the real service sent."""
    commands = iter(
        [
            set_variable("ROUTE_QUEUE", "sales"),
            set_variable("ROUTE_PRIORITY", "10"),
            verbose("routed by capture", 1),
        ]
    )
    conn = AgiServerConnection()
    events: list[AgiEvent] = []
    for record in TRACE.records:
        if record.direction == "rx":
            events.extend(feed_whole(conn, record.data))
        else:
            assert conn.send(next(commands)) == record.data
    assert [type(e) for e in events] == [AgiEnvironment, AgiReply, AgiReply, AgiReply]
    assert all(isinstance(e, AgiReply) and e.ok for e in events[1:])
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED and conn.state is AgiState.CLOSED


@pytest.mark.parametrize(
    ("line", "code", "result", "data"),
    [
        ("200 result=1", 200, "1", None),
        ("200 result=-1", 200, "-1", None),
        ("200 result=1 (dtmf) endpos=67890", 200, "1", "dtmf"),
        ("200 result=-1 endpos=11223344", 200, "-1", None),
        ("200 result=1 (x) digit=5 endpos=12", 200, "1", "x"),
        ("200 result=1 (a (b)) endpos=1", 200, "1", "a (b)"),
        ("200 result=1 ()", 200, "1", ""),
        ("200 result= (timeout)", 200, "", "timeout"),
        ("200 result=*123 (timeout)", 200, "*123", "timeout"),
        ('200 result=1 ("Alice V" <2233>)', 200, "1", '"Alice V" <2233>'),
        ("200 result=0 Gosub complete", 200, "0", "Gosub complete"),
        ("503 result=-2 Memory allocation failure", 503, "-2", "Memory allocation failure"),
        ("510 Invalid or unknown command", 510, None, "Invalid or unknown command"),
        (
            "511 Command Not Permitted on a dead channel or intercept routine",
            511,
            None,
            "Command Not Permitted on a dead channel or intercept routine",
        ),
        (
            "520 Invalid command syntax.  Proper usage not available.",
            520,
            None,
            "Invalid command syntax.  Proper usage not available.",
        ),
    ],
)
def test_reply_forms(
    feed: Feed, line: str, code: int, result: str | None, data: str | None
) -> None:
    conn = ready()
    conn.send(AgiCommand("NOOP"))
    (reply,) = feed(conn, line.encode() + b"\n")
    assert reply == AgiReply(code, result, data, (line,))
    assert reply.ok is (code == 200)
    assert conn.state is AgiState.IDLE


def test_multiline_520(feed: Feed) -> None:
    raw = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b" Usage: DATABASE GET <family> <key>\n"
        b"Example return code: 200 result=1 (testvariable)\n"
        b"520 End of proper usage.\n"
    )
    conn = ready()
    conn.send(AgiCommand("DATABASE GET"))
    (reply,) = feed(conn, raw + b"200 res")
    assert isinstance(reply, AgiReply) and reply.code == 520 and len(reply.lines) == 4
    assert reply.data is not None and "Usage: DATABASE GET" in reply.data
    assert conn.state is AgiState.IDLE


def test_multiline_reply_is_bounded() -> None:
    conn = ready()
    conn.send(AgiCommand("NOOP"))
    conn.receive_data(b"520-usage follows:\n" + (b"x" * 1000 + b"\n") * 20)
    with pytest.raises(RemoteProtocolError, match="multi-line"):
        drain(conn)


def test_provisional_reply_keeps_waiting() -> None:
    conn = ready()
    conn.send(AgiCommand('EXEC Gosub "sub,s,1"'))
    (trying,) = feed_whole(conn, b"100 result=0 Trying...\n")
    assert isinstance(trying, AgiReply) and trying.code == 100
    assert conn.state is AgiState.AWAITING_REPLY
    with pytest.raises(LocalProtocolError):
        conn.send(AgiCommand("NOOP"))
    (final,) = feed_whole(conn, b"200 result=0 Gosub complete\n")
    assert isinstance(final, AgiReply) and final.ok and conn.state is AgiState.IDLE


def test_hangup_while_idle_and_while_awaiting() -> None:
    conn = ready()
    assert feed_whole(conn, b"HANGUP\n") == [AgiHangup()]
    conn.send(set_variable("A", "1"))
    events = feed_whole(conn, b"HANGUP\n511 Command Not Permitted on a dead channel\n")
    assert events[0] == AgiHangup() and isinstance(events[1], AgiReply)
    assert events[1].code == 511


@pytest.mark.parametrize("data", [b"200 result=1\n", b"hello\n"])
def test_unsolicited_reply_is_a_remote_error(data: bytes) -> None:
    conn = ready()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_malformed_reply_is_a_remote_error() -> None:
    conn = ready()
    conn.send(AgiCommand("NOOP"))
    conn.receive_data(b"OK then\n")
    with pytest.raises(RemoteProtocolError, match="expected an AGI reply"):
        conn.next_event()


def test_reply_line_bound() -> None:
    conn = ready()
    conn.send(AgiCommand("NOOP"))
    conn.receive_data(b"200 result=1 (" + b"x" * MAX_LINE_SIZE)
    with pytest.raises(RemoteProtocolError, match="line exceeds"):
        conn.next_event()


def test_command_order_is_enforced() -> None:
    conn = AgiServerConnection()
    with pytest.raises(LocalProtocolError, match="before the environment"):
        conn.send(set_variable("A", "1"))
    feed_whole(conn, ENV)
    conn.send(set_variable("A", "1"))
    with pytest.raises(LocalProtocolError, match="reply is awaited"):
        conn.send(set_variable("B", "2"))


# -- EOF -------------------------------------------------------------------------------------
def test_eof_cases() -> None:
    silent = AgiServerConnection()  # a port probe: connected, closed, said nothing
    silent.receive_data(b"")
    assert silent.next_event() is CLOSED
    with pytest.raises(LocalProtocolError):
        silent.send(AgiCommand("NOOP"))

    half = AgiServerConnection()
    half.receive_data(ENV[:40])
    half.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of the environment"):
        drain(half)

    lines_only = AgiServerConnection()  # whole lines but no terminating empty line
    lines_only.receive_data(ENV[:-1])
    lines_only.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of the environment"):
        drain(lines_only)

    conn = ready()
    conn.send(AgiCommand("NOOP"))
    conn.receive_data(b"200 res")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a reply"):
        conn.next_event()

    after = AgiServerConnection()
    after.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="after the connection was closed"):
        after.receive_data(b"x")


# -- command builders --------------------------------------------------------------------------
def test_command_bytes() -> None:
    def wire(command: AgiCommand) -> bytes:
        return ready().send(command)

    assert wire(set_variable("ROUTE_QUEUE", "sales")) == b'SET VARIABLE ROUTE_QUEUE "sales"\n'
    assert wire(set_variable("X", 'a "b" \\c')) == b'SET VARIABLE X "a \\"b\\" \\\\c"\n'
    assert wire(set_variable("X", "")) == b'SET VARIABLE X ""\n'
    assert wire(set_variable("CDR(userfield)", "é")) == 'SET VARIABLE CDR(userfield) "é"\n'.encode()
    assert wire(verbose("routed", 3)) == b'VERBOSE "routed" 3\n'
    assert wire(hangup()) == b"HANGUP\n"
    assert wire(hangup("PJSIP/6001-00000001")) == b"HANGUP PJSIP/6001-00000001\n"


@pytest.mark.parametrize("value", ["a\nSET VARIABLE B 1", "a\rb", "a\x00b", "\n"])
def test_values_that_break_the_line_are_refused(value: str) -> None:
    with pytest.raises(LocalProtocolError):
        set_variable("X", value)
    with pytest.raises(LocalProtocolError):
        verbose(value)
    with pytest.raises(LocalProtocolError):
        quote(value)


@pytest.mark.parametrize("name", ["", "A B", 'A"', "A\\B", "A\nB", "A\x00", "A\tB"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        set_variable(name, "1")
    with pytest.raises(LocalProtocolError):
        hangup(name)


def test_send_checks_hand_built_commands() -> None:
    for line in ["", "   ", "NOOP\nHANGUP", "A\x00", "VERBOSE " + "x" * MAX_COMMAND_SIZE]:
        with pytest.raises(LocalProtocolError):
            ready().send(AgiCommand(line))
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.send(AgiCommand("NOOP\n"))
    assert conn.state is AgiState.IDLE  # a refused command leaves the state alone


@pytest.mark.parametrize("level", [0, 5, -1, True])
def test_verbose_level(level: int) -> None:
    with pytest.raises(LocalProtocolError):
        verbose("x", level)


# -- property ----------------------------------------------------------------------------------
_pieces = st.sampled_from(
    [
        b"200 result=1\n",
        b"200 result=1 (x) endpos=3\n",
        b"510 Invalid or unknown command\n",
        b"520-usage:\n",
        b"520 End of proper usage.\n",
        b"100 result=0 Trying...\n",
        b"HANGUP\n",
        b"agi_x: y\n",
        b"\n",
        b"\r\n",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.booleans(),
    st.lists(st.one_of(_pieces, st.binary(max_size=40)), max_size=30),
    st.integers(min_value=1, max_value=64),
)
def test_arbitrary_input_gives_events_or_our_error(
    valid_env: bool, pieces: list[bytes], step: int
) -> None:
    """Whatever arrives (after a real environment or not): events or RemoteProtocolError.
    We answer like the server does, sending a command whenever the session is idle."""
    conn = AgiServerConnection(max_environment_size=512, max_line_size=128)
    env = b"agi_network: yes\nagi_uniqueid: 1795355841.103\n\n"
    stream = (env if valid_env else b"") + b"".join(pieces)
    try:
        for index in range(0, len(stream), step):
            conn.receive_data(stream[index : index + step])
            for event in drain(conn):
                assert isinstance(event, AgiEnvironment | AgiReply | AgiHangup)
                if conn.state is AgiState.IDLE:
                    conn.send(set_variable("ROUTE_QUEUE", "sales"))
        conn.receive_data(b"")
        drain(conn)
    except RemoteProtocolError:
        assert conn.state is AgiState.ERROR
