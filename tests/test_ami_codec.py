"""The sans-I/O AMI codec: each framing rule, fed whole, byte by byte, and with leftovers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctilink.ami.codec import (
    CLOSED,
    MAX_MESSAGE_SIZE,
    NEED_DATA,
    AmiBanner,
    AmiCodec,
    serialize,
)
from ctilink.ami.message import AmiMessage
from ctilink.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from tests.conftest import TRACES

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

# Verbatim from the Asterisk 22 capture inbound-answered.jsonl (VarSet with an empty value).
VARSET_EMPTY = (
    b"Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: Local/800@inbound-00000000;2\r\n"
    b"Uniqueid: 1795355631.1\r\nVariable: ANSWEREDTIME\r\nValue: \r\n\r\n"
)
COMMAND_OUTPUT = (
    b"Response: Success\r\nActionID: 7\r\nMessage: Command output follows\r\n"
    b"Output: Name/username             Host\r\nOutput: \r\n"
    b"Output: Uptime: 2 hours, 3 minutes\r\n\r\n"
)


def feed_whole(codec: AmiCodec, data: bytes) -> list[object]:
    codec.receive_data(data)
    return list(codec.events())


def feed_bytewise(codec: AmiCodec, data: bytes) -> list[object]:
    out: list[object] = []
    for index in range(len(data)):
        codec.receive_data(data[index : index + 1])
        out.extend(codec.events())
    return out


def feed_in_two(codec: AmiCodec, data: bytes) -> list[object]:
    middle = len(data) // 2
    return feed_whole(codec, data[:middle]) + feed_whole(codec, data[middle:])


FEEDERS: list[Callable[[AmiCodec, bytes], list[object]]] = [
    feed_whole,
    feed_bytewise,
    feed_in_two,
]


@pytest.fixture(params=FEEDERS, ids=lambda f: f.__name__)
def feed(request: pytest.FixtureRequest) -> Callable[[AmiCodec, bytes], list[object]]:
    return request.param  # type: ignore[no-any-return]


def messages(items: Iterable[object]) -> list[AmiMessage]:
    return [item for item in items if isinstance(item, AmiMessage)]


def test_banner_then_message(feed: Callable[[AmiCodec, bytes], list[object]]) -> None:
    items = feed(AmiCodec(), BANNER + b"Response: Success\r\nActionID: 1\r\n\r\n")
    assert items[0] == AmiBanner("Asterisk Call Manager", "11.0.0")
    assert items[1] == AmiMessage([("Response", "Success"), ("ActionID", "1")])
    assert len(items) == 2


def test_not_a_banner_is_a_remote_error() -> None:
    codec = AmiCodec()
    codec.receive_data(b"HTTP/1.1 400 Bad Request\r\n")
    # "HTTP/1.1 400 Bad Request" has spaces in the version part: not a banner.
    with pytest.raises(RemoteProtocolError, match="banner"):
        codec.next_event()


def test_server_side_has_no_banner(feed: Callable[[AmiCodec, bytes], list[object]]) -> None:
    items = feed(AmiCodec(expect_banner=False), b"Action: Ping\r\nActionID: 2\r\n\r\n")
    assert items == [AmiMessage([("Action", "Ping"), ("ActionID", "2")])]
    assert items[0].kind == "action"  # type: ignore[attr-defined]


def test_crlf_framing_needs_the_blank_line() -> None:
    codec = AmiCodec(expect_banner=False)
    codec.receive_data(b"Event: Ping\r\n")
    assert codec.next_event() is NEED_DATA
    codec.receive_data(b"\r\n")
    message = codec.next_event()
    assert isinstance(message, AmiMessage) and message.name == "Ping"
    assert codec.next_event() is NEED_DATA


def test_value_containing_separator(feed: Callable[[AmiCodec, bytes], list[object]]) -> None:
    data = b"Event: UserEvent\r\nAppData: key: value: more\r\nCallerIDName: A: B\r\n\r\n"
    (message,) = messages(feed(AmiCodec(expect_banner=False), data))
    assert message["AppData"] == "key: value: more"
    assert message["CallerIDName"] == "A: B"


def test_repeated_keys_kept_as_lists(feed: Callable[[AmiCodec, bytes], list[object]]) -> None:
    data = (
        b"Event: Newchannel\r\nChannel: PJSIP/6001-00000001\r\n"
        b"ChanVariable: CUSTOMER_ACCOUNT=ACME-001\r\nChanVariable: TIER=gold=1\r\n"
        b"Variable: A=1\r\nVariable: B=2\r\n\r\n"
    )
    (message,) = messages(feed(AmiCodec(expect_banner=False), data))
    assert message.getall("ChanVariable") == ["CUSTOMER_ACCOUNT=ACME-001", "TIER=gold=1"]
    assert message.variables() == {"CUSTOMER_ACCOUNT": "ACME-001", "TIER": "gold=1"}
    assert message.to_dict()["Variable"] == ["A=1", "B=2"]
    assert message.get("chanvariable") == "CUSTOMER_ACCOUNT=ACME-001"  # case-insensitive


def test_empty_last_value_kept(feed: Callable[[AmiCodec, bytes], list[object]]) -> None:
    (message,) = messages(feed(AmiCodec(expect_banner=False), VARSET_EMPTY))
    assert message.headers[-1] == ("Value", "")
    assert message["Variable"] == "ANSWEREDTIME"


def test_utf8_split_across_reads() -> None:
    data = "Event: NewCallerid\r\nCallerIDName: Zoë Łukasz 日本\r\n\r\n".encode()
    split = data.index("ë".encode()) + 1  # inside the two-byte character
    codec = AmiCodec(expect_banner=False)
    codec.receive_data(data[:split])
    assert codec.next_event() is NEED_DATA
    codec.receive_data(data[split:])
    message = codec.next_event()
    assert isinstance(message, AmiMessage)
    assert message["CallerIDName"] == "Zoë Łukasz 日本"


def test_non_utf8_byte_replaced_framing_intact(
    feed: Callable[[AmiCodec, bytes], list[object]],
) -> None:
    data = b"Event: NewCallerid\r\nCallerIDName: Caf\xe9\r\n\r\nEvent: Ping\r\n\r\n"
    first, second = messages(feed(AmiCodec(expect_banner=False), data))
    assert first["CallerIDName"] == "Caf\ufffd"
    assert second.name == "Ping"


def test_command_output_lines(feed: Callable[[AmiCodec, bytes], list[object]]) -> None:
    (message,) = messages(feed(AmiCodec(expect_banner=False), COMMAND_OUTPUT))
    assert message.getall("Output") == [
        "Name/username             Host",
        "",
        "Uptime: 2 hours, 3 minutes",
    ]


def test_legacy_follows_body_kept_as_lines() -> None:
    data = b"Response: Follows\r\nPrivilege: Command\r\nline one\r\n--END COMMAND--\r\n\r\n"
    (message,) = messages(feed_whole(AmiCodec(expect_banner=False), data))
    assert message.name == "Follows"
    assert message.lines == ("line one", "--END COMMAND--")


def test_oversized_message_is_refused_without_unbounded_buffer() -> None:
    codec = AmiCodec(expect_banner=False, max_message_size=1024)
    codec.receive_data(b"Event: Flood\r\nData: " + b"x" * 1000)
    assert codec.next_event() is NEED_DATA
    codec.receive_data(b"x" * 100)
    with pytest.raises(RemoteProtocolError, match="exceeds 1024 bytes"):
        codec.next_event()
    with pytest.raises(RemoteProtocolError):  # the codec stays failed
        codec.receive_data(b"Event: Ping\r\n\r\n")


def test_default_bound_is_one_mebibyte() -> None:
    codec = AmiCodec(expect_banner=False)
    chunk = b"x" * 65536
    codec.receive_data(b"Event: Flood\r\nData: ")
    with pytest.raises(RemoteProtocolError):
        for _ in range(MAX_MESSAGE_SIZE // len(chunk) + 2):
            codec.receive_data(chunk)
            codec.next_event()
    assert codec.pending <= MAX_MESSAGE_SIZE + 2 * len(chunk)


def test_trailing_partial_data_waits() -> None:
    codec = AmiCodec()
    items = feed_whole(codec, BANNER + b"Event: Ping\r\n\r\nEvent: Newstate\r\nChan")
    assert [type(item) for item in items] == [AmiBanner, AmiMessage]
    assert codec.pending == len(b"Event: Newstate\r\nChan")
    codec.receive_data(b"nel: X\r\n\r\n")
    (message,) = messages(codec.events())
    assert message["Channel"] == "X"


def test_eof_inside_a_message_is_an_error() -> None:
    codec = AmiCodec(expect_banner=False)
    codec.receive_data(b"Event: Ping\r\nActionID")
    codec.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed in the middle"):
        codec.next_event()


def test_clean_eof() -> None:
    codec = AmiCodec(expect_banner=False)
    codec.receive_data(b"Event: Ping\r\n\r\n")
    codec.receive_data(b"")
    assert isinstance(codec.next_event(), AmiMessage)
    assert codec.next_event() is CLOSED


@pytest.mark.parametrize(
    "name",
    [
        "inbound-answered",
        "inbound-abandoned",
        "click-to-dial",
        "agent-login",
        "resync",
        "routed-fastagi",
    ],
)
def test_real_traces_parse_identically_however_fed(name: str) -> None:
    stream = b"".join(
        json.loads(line)["data"].encode()
        for line in (TRACES / f"{name}.jsonl").read_text().splitlines()
        if json.loads(line)["dir"] == "rx"
    )
    results = []
    for feeder in (feed_whole, feed_in_two, feed_bytewise):
        codec = AmiCodec()
        results.append(feeder(codec, stream))
        assert codec.pending == 0
    assert results[0] == results[1] == results[2]
    assert isinstance(results[0][0], AmiBanner)
    count = stream.count(b"\r\n\r\n")
    assert len(results[0]) == count + 1  # every message, plus the banner


# -- joining a stream in the middle (a capture that began after the connection opened) ---
NEWCHANNEL = b"Event: Newchannel\r\nChannel: Local/6001@agents;1\r\nUniqueid: 1.5\r\n\r\n"
PING = b"Event: Ping\r\n\r\n"


def test_mid_stream_discards_the_tail_of_a_message(
    feed: Callable[[AmiCodec, bytes], list[object]],
) -> None:
    tail = NEWCHANNEL[20:]  # "annel: Local/6001...": the capture missed the message's start
    codec = AmiCodec(mid_stream=True)
    assert messages(feed(codec, tail + PING + NEWCHANNEL)) == [
        AmiMessage([("Event", "Ping")]),
        AmiMessage(
            [("Event", "Newchannel"), ("Channel", "Local/6001@agents;1"), ("Uniqueid", "1.5")]
        ),
    ]
    assert codec.bytes_skipped == len(tail) and codec.pending == 0


def test_mid_stream_keeps_a_first_message_that_starts_at_offset_0(
    feed: Callable[[AmiCodec, bytes], list[object]],
) -> None:
    codec = AmiCodec(mid_stream=True)  # no banner expected, although expect_banner is True
    items = feed(codec, NEWCHANNEL + PING)
    assert [m.name for m in messages(items)] == ["Newchannel", "Ping"] and len(items) == 2
    assert codec.bytes_skipped == 0


@pytest.mark.parametrize(
    ("head", "skipped"),
    [
        (b"Response: Success\r\nActionID: 3\r\n\r\n", 0),  # a whole message: kept
        (b"Action: Ping\r\nActionID: 3\r\n\r\n", 0),  # what the server side reads
        (b"\n" + NEWCHANNEL, 1),  # the end of a terminator before a whole message
        (b"\r\n" + NEWCHANNEL, 2),
        (b"\n\r\n" + NEWCHANNEL, 3),
        (b"\r\n\r\n" + NEWCHANNEL, 4),
        (b"vent: Hangup\r\nUniqueid: 1.2\r\n\r\n" + NEWCHANNEL, 31),  # a message's tail
        (b"Channel: X\r\n\r\n" + NEWCHANNEL, 14),  # headers, but not a first line
        (b"Event:Hangup\r\n\r\n" + NEWCHANNEL, 16),  # not as Asterisk writes a first line
        (b"Event: \r\nUniqueid: 1\r\n\r\n" + NEWCHANNEL, 24),  # no name
        (b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n\r\n" + NEWCHANNEL, 51),
    ],
)
def test_mid_stream_first_message_rule(
    feed: Callable[[AmiCodec, bytes], list[object]], head: bytes, skipped: int
) -> None:
    codec = AmiCodec(mid_stream=True)
    items = feed(codec, head + PING)
    assert codec.bytes_skipped == skipped
    kept = head[skipped:] + PING
    assert items == feed(AmiCodec(expect_banner=False), kept)


def test_mid_stream_known_limit_a_cut_header_that_looks_like_a_first_line() -> None:
    # A "UserEvent: Alarm" header whose segment boundary fell after "User": the tail is
    # taken for a message of its own (documented; one stray message, framing intact).
    tail = b"Event: Alarm\r\nLevel: 3\r\n\r\n"
    codec = AmiCodec(mid_stream=True)
    assert [m.name for m in messages(feed_whole(codec, tail + PING))] == ["Alarm", "Ping"]


def test_mid_stream_decides_only_at_the_first_terminator() -> None:
    codec = AmiCodec(mid_stream=True)
    codec.receive_data(b"Event: Ping\r\n")
    assert codec.next_event() is NEED_DATA and codec.bytes_skipped == 0
    codec.receive_data(b"\r\n")
    message = codec.next_event()
    assert isinstance(message, AmiMessage) and message.name == "Ping"


def test_mid_stream_eof_before_any_terminator() -> None:
    codec = AmiCodec(mid_stream=True)
    codec.receive_data(b"\r\n")  # only the end of a terminator was captured: nothing lost
    codec.receive_data(b"")
    assert codec.next_event() is CLOSED
    codec = AmiCodec(mid_stream=True)
    codec.receive_data(b"Uniqueid: 1.2\r\n")
    codec.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed in the middle"):
        codec.next_event()


def test_mid_stream_tail_is_bounded() -> None:
    codec = AmiCodec(mid_stream=True, max_message_size=1024)
    codec.receive_data(b"x" * 1025)
    with pytest.raises(RemoteProtocolError, match="exceeds 1024 bytes"):
        codec.next_event()


_name = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,11}", fullmatch=True)
# Keys that cannot end like a first line's key, values without ": ": a cut inside a message
# can then never look like a message's start (see the known limit above).
_inner_header = st.tuples(
    _name.filter(lambda key: not key.endswith(("Event", "Response", "Action"))),
    st.text(alphabet=st.characters(blacklist_characters="\r\n:", blacklist_categories=("Cs",))),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_name, st.lists(_inner_header, max_size=4)), min_size=1, max_size=6),
    st.data(),
)
def test_mid_stream_yields_every_message_that_starts_after_the_cut(
    batch: list[tuple[str, list[tuple[str, str]]]], data: st.DataObject
) -> None:
    wanted = [AmiMessage([("Event", name), *headers]) for name, headers in batch]
    encoded = [serialize(message) for message in wanted]
    stream = b"".join(encoded)
    cut = data.draw(st.integers(0, len(stream)), label="cut")
    step = data.draw(st.integers(1, 50), label="step")
    starts = [sum(len(e) for e in encoded[:i]) for i in range(len(encoded))]
    codec = AmiCodec(mid_stream=True)
    got: list[object] = []
    for index in range(cut, len(stream), step):
        codec.receive_data(stream[index : index + step])
        got.extend(codec.events())
    assert got == [m for m, start in zip(wanted, starts, strict=True) if start >= cut]
    codec.receive_data(b"")
    assert codec.next_event() is CLOSED  # at most part of a terminator is left over


def test_serialize_round_trip() -> None:
    message = AmiMessage(
        [("Action", "Originate"), ("Variable", "A=1"), ("Variable", "B=2"), ("Data", "")]
    )
    codec = AmiCodec(expect_banner=False)
    codec.receive_data(serialize(message))
    assert codec.next_event() == message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Exten", "6001\r\nAction: Originate"),
        ("Exten", "6001\nx"),
        ("Bad Key", "x"),
        ("Key:", "x"),
        ("", "x"),
    ],
)
def test_serialize_refuses_injection(key: str, value: str) -> None:
    with pytest.raises(LocalProtocolError):
        serialize([("Action", "Originate"), (key, value)])


# Random bytes, biased towards AMI's own pieces so that whole messages, separators,
# terminators, non-UTF-8 bytes and oversized messages all occur often.
_PIECES = st.sampled_from(
    [
        b"\r\n",
        b"\r\n\r\n",
        b": ",
        b"Event",
        b"Response: Success",
        b"ActionID: 1",
        b"Asterisk Call Manager/11.0.0\r\n",
        b"\xff",
        b"\xc3",
        b"\xa9",
        b"x" * 100,
        b":",
        b"\n",
    ]
)
_CHUNK = st.lists(st.one_of(_PIECES, st.binary(max_size=16)), max_size=12).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(_CHUNK, max_size=30), st.booleans(), st.booleans())
def test_arbitrary_bytes_give_messages_or_our_error(
    chunks: list[bytes], banner: bool, mid_stream: bool
) -> None:
    bound = 512
    codec = AmiCodec(expect_banner=banner, mid_stream=mid_stream, max_message_size=bound)
    try:
        for chunk in chunks:
            codec.receive_data(chunk)
            for item in codec.events():
                assert isinstance(item, AmiBanner | AmiMessage)
            # Never more buffered than the bound plus what one read can bring.
            assert codec.pending <= bound + len(chunk) + 4
        codec.receive_data(b"")
        codec.next_event()
    except ProtocolError:
        pass


_header = st.tuples(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True),
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
        max_size=40,
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(_header, min_size=1, max_size=8), min_size=1, max_size=5),
    st.integers(min_value=1, max_value=50),
)
def test_serialized_messages_parse_back(batch: list[list[tuple[str, str]]], step: int) -> None:
    wanted = [AmiMessage(headers) for headers in batch]
    stream = b"".join(serialize(message) for message in wanted)
    codec = AmiCodec(expect_banner=False)
    got: list[object] = []
    for index in range(0, len(stream), step):
        codec.receive_data(stream[index : index + step])
        got.extend(codec.events())
    assert got == wanted
