"""The asterisk switch kind (an AMI link, optionally a FastAGI server) and [routing]."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctilink.config import AsteriskOptions, RoutingConfig, Secret, SwitchConfig, default_config
from ctilink.config.loader import _ROUTING_FIELDS

from .configs import AMI_SECRET, ASTERISK, SWITCH, config_dir, error, load


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config directory (with ``a.jsonl`` and ``ami.secret``), and the working directory."""
    return config_dir(tmp_path, monkeypatch)


def asterisk(**keys: str | None) -> str:
    """The ASTERISK switch with keys set to TOML values (replaced if there; None: removed)."""
    lines = [line for line in ASTERISK.splitlines() if line.partition(" = ")[0] not in keys]
    lines += [f"{name} = {value}" for name, value in keys.items() if value is not None]
    return "\n".join(lines) + "\n"


def options(text: str) -> AsteriskOptions:
    (switch,) = load(text).switches
    assert switch.asterisk is not None
    return switch.asterisk


# -- asterisk: defaults and values --------------------------------------------------------
def test_asterisk_defaults(here: Path) -> None:
    (switch,) = load(ASTERISK).switches
    assert switch == SwitchConfig(
        name="ast1",
        kind="asterisk",
        tenant="default",
        asterisk=AsteriskOptions(
            host="pbx.example.net",
            port=5038,
            username="ctilink",
            secret=Secret(AMI_SECRET),
            auth="md5",
            events=("call", "agent", "user", "system"),
            call_data_variables=(),
            ping_interval=5.0,
            ping_timeout=5.0,
            action_timeout=10.0,
            connect_timeout=10.0,
            reconnect_max_delay=30.0,
            originate_contexts=(),
            device_channel="PJSIP/{device}",
            fastagi=None,
            wrapup_seconds=0.0,
        ),
    )
    assert switch.replay is None


def test_asterisk_values(here: Path) -> None:
    got = options(
        asterisk(
            host='"10.0.0.5"',
            port="15038",
            username='"cti@acme"',
            auth='"plain"',
            events='["call", "agent", "dialplan", "cdr", "reporting", "security", "command"]',
            call_data_variables='["CUSTOMER_ACCOUNT", "__X", "v1"]',
            ping_interval="10",
            ping_timeout="5",
            action_timeout="2.5",
            connect_timeout="0.5",
            reconnect_max_delay="1",
            originate_contexts='["from-internal", "ctilink_dial"]',
            device_channel='"Local/{device}@agents"',
            fastagi='"tcp:port=4573:interface=127.0.0.1"',
            wrapup_seconds="3600",
        )
        + '[routing]\ndefault_queue = "support"\n'
    )
    assert got == AsteriskOptions(
        host="10.0.0.5",
        port=15038,
        username="cti@acme",
        secret=Secret(AMI_SECRET),
        auth="plain",
        events=("call", "agent", "dialplan", "cdr", "reporting", "security", "command"),
        call_data_variables=("CUSTOMER_ACCOUNT", "__X", "v1"),
        ping_interval=10.0,
        ping_timeout=5.0,
        action_timeout=2.5,
        connect_timeout=0.5,
        reconnect_max_delay=1.0,
        originate_contexts=("from-internal", "ctilink_dial"),
        device_channel="Local/{device}@agents",
        fastagi="tcp:port=4573:interface=127.0.0.1",
        wrapup_seconds=3600.0,
    )
    for seconds in (got.ping_interval, got.reconnect_max_delay, got.wrapup_seconds):
        assert isinstance(seconds, float)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "::1", "fe80::1%eth0", "localhost", "pbx-1.example.net", "pbx.example.net.", "a"],
)
def test_good_hosts(here: Path, host: str) -> None:
    assert options(asterisk(host=f'"{host}"')).host == host


@pytest.mark.parametrize(
    "keys",
    [
        {"ping_interval": "10", "ping_timeout": "5"},
        {"ping_interval": "0.001", "ping_timeout": "14.999"},
        {"call_data_variables": "[]", "originate_contexts": "[]", "events": '["call"]'},
        {"device_channel": '"SIP/{device}"', "wrapup_seconds": "0.5", "auth": '"md5"'},
        {"device_channel": '"PJSIP/trunk/{device}"', "username": f'"{"u" * 80}"'},
        {"originate_contexts": f'["{"c" * 80}"]', "call_data_variables": f'["{"V" * 64}"]'},
        {"host": '"::1"', "port": "65535", "reconnect_max_delay": "1"},
    ],
)
def test_limits_accepted(here: Path, keys: dict[str, str]) -> None:
    options(asterisk(**keys))


def test_fastagi_endpoints_differ(here: Path) -> None:
    second = ASTERISK.replace("ast1", "ast2")
    config = load(
        ASTERISK
        + 'fastagi = "tcp:port=4573"\n'
        + second
        + 'fastagi = "tcp:port=4574"\n'
        + SWITCH
        + '[routing]\ndefault_agent = "6001"\n'
    )
    assert [s.asterisk.fastagi for s in config.switches if s.asterisk] == [
        "tcp:port=4573",
        "tcp:port=4574",
    ]
    assert config.switches[2].asterisk is None


# -- asterisk: errors ---------------------------------------------------------------------
ASTERISK_KEYS = (
    "action_timeout, auth, call_data_variables, connect_timeout, device_channel, events,"
    " fastagi, host, kind, name, originate_contexts, ping_interval, ping_timeout, port,"
    " reconnect_max_delay, secret_env, secret_file, tenant, username, wrapup_seconds"
)
HOST = "expected a hostname or IP address, got"
PORT = "expected an integer from 1 to 65535, got"
USERNAME = "expected 1-80 characters without whitespace, got"
AUTH = 'expected one of "md5", "plain", got'
EVENT = (
    'one of "call", "agent", "user", "system", "dialplan", "cdr", "reporting", "security",'
    ' "command"'
)
EVENTS = f"expected a non-empty array of {EVENT}, got"
VARIABLE = "channel variable names (1-64 of A-Z a-z 0-9 _)"
CONTEXT = "dialplan context names (1-80 of A-Z a-z 0-9 _ -)"
SECONDS = "expected a number > 0 and <= 60, got"
POSITIVE = "expected a number > 0, got"
ONCE = 'must contain "{device}" exactly once, got'
BRACES = 'may contain no braces but "{device}", got'
SPACE = "may contain no whitespace or control characters, got"
TECHNOLOGY = 'must start with a channel technology and "/" ("PJSIP/"), got'
WRAPUP = "expected a number >= 0 and <= 3600, got"
PING_SUM = (
    "ping_interval + ping_timeout must be at most 15 seconds (a dead link must be noticed in"
    " time), got"
)

# (id, key, TOML value, message after "switch[0].<key>: ")
VALUE_ERRORS = [
    ("host with a space", "host", '"pbx example"', f'{HOST} "pbx example"'),
    ("host bad address", "host", '"10.0.0.256"', f'{HOST} "10.0.0.256"'),
    ("host bad label", "host", '"-pbx.example"', f'{HOST} "-pbx.example"'),
    ("host empty", "host", '""', f'{HOST} ""'),
    ("host bracketed", "host", '"[::1]"', f'{HOST} "[::1]"'),
    ("host url", "host", '"tcp://pbx:5038"', f'{HOST} "tcp://pbx:5038"'),
    ("host integer", "host", "10", f"{HOST} 10"),
    ("port zero", "port", "0", f"{PORT} 0"),
    ("port string", "port", '"5038"', f'{PORT} "5038"'),
    ("username with a space", "username", '"cti link"', f'{USERNAME} "cti link"'),
    (
        "username with a line break",
        "username",
        '"cti\\r\\nAction: Logoff"',
        f'{USERNAME} "cti\\r\\nAction: Logoff"',
    ),
    ("username empty", "username", '""', f'{USERNAME} ""'),
    ("username too long", "username", f'"{"u" * 81}"', f'{USERNAME} "{"u" * 57}..."'),
    ("auth", "auth", '"sha1"', f'{AUTH} "sha1"'),
    ("auth in capitals", "auth", '"MD5"', f'{AUTH} "MD5"'),
    ("events unknown", "events", '["call", "calls"]', f'[1]: expected {EVENT}, got "calls"'),
    ("events item", "events", "[1]", f"[0]: expected {EVENT}, got 1"),
    ("events empty", "events", "[]", f"{EVENTS} []"),
    ("events a string", "events", '"call"', f'{EVENTS} "call"'),
    (
        "events duplicate",
        "events",
        '["call", "user", "call"]',
        '[2]: duplicate "call" (also at index 0)',
    ),
    (
        "variable with a dash",
        "call_data_variables",
        '["A-B"]',
        f'[0]: expected {VARIABLE}, got "A-B"',
    ),
    ("variable empty", "call_data_variables", '["A", ""]', f'[1]: expected {VARIABLE}, got ""'),
    (
        "variable too long",
        "call_data_variables",
        f'["{"V" * 65}"]',
        f'[0]: expected {VARIABLE}, got "{"V" * 57}..."',
    ),
    (
        "variables a string",
        "call_data_variables",
        '"A"',
        f'expected an array of {VARIABLE}, got "A"',
    ),
    (
        "variables duplicate",
        "call_data_variables",
        '["A", "A"]',
        '[1]: duplicate "A" (also at index 0)',
    ),
    ("ping_interval zero", "ping_interval", "0", f"{SECONDS} 0"),
    ("ping_interval negative", "ping_interval", "-1.0", f"{SECONDS} -1.0"),
    ("ping_interval too big", "ping_interval", "61", f"{SECONDS} 61"),
    ("ping_interval string", "ping_interval", '"5"', f'{SECONDS} "5"'),
    ("ping_interval boolean", "ping_interval", "true", f"{SECONDS} true"),
    ("ping_interval nan", "ping_interval", "nan", f"{SECONDS} nan"),
    ("ping_timeout zero", "ping_timeout", "0.0", f"{SECONDS} 0.0"),
    ("ping_timeout too big", "ping_timeout", "60.5", f"{SECONDS} 60.5"),
    ("action_timeout zero", "action_timeout", "0", f"{POSITIVE} 0"),
    ("action_timeout inf", "action_timeout", "inf", f"{POSITIVE} inf"),
    ("connect_timeout negative", "connect_timeout", "-3", f"{POSITIVE} -3"),
    ("reconnect_max_delay", "reconnect_max_delay", "0.5", "expected a number >= 1, got 0.5"),
    (
        "context with a space",
        "originate_contexts",
        '["a b"]',
        f'[0]: expected {CONTEXT}, got "a b"',
    ),
    (
        "context with a dot",
        "originate_contexts",
        '["ok", "a.b"]',
        f'[1]: expected {CONTEXT}, got "a.b"',
    ),
    (
        "context too long",
        "originate_contexts",
        f'["{"c" * 81}"]',
        f'[0]: expected {CONTEXT}, got "{"c" * 57}..."',
    ),
    (
        "contexts a string",
        "originate_contexts",
        '"default"',
        f'expected an array of {CONTEXT}, got "default"',
    ),
    (
        "contexts duplicate",
        "originate_contexts",
        '["a", "b", "a"]',
        '[2]: duplicate "a" (also at index 0)',
    ),
    ("device_channel without {device}", "device_channel", '"PJSIP/6001"', f'{ONCE} "PJSIP/6001"'),
    ("device_channel misspelt", "device_channel", '"PJSIP/{dev}"', f'{ONCE} "PJSIP/{{dev}}"'),
    (
        "device_channel with two {device}",
        "device_channel",
        '"PJSIP/{device}&SIP/{device}"',
        f'{ONCE} "PJSIP/{{device}}&SIP/{{device}}"',
    ),
    (
        "device_channel other braces",
        "device_channel",
        '"PJSIP/{device}@{x}"',
        f'{BRACES} "PJSIP/{{device}}@{{x}}"',
    ),
    (
        "device_channel doubled braces",
        "device_channel",
        '"PJSIP/{{device}}"',
        f'{BRACES} "PJSIP/{{{{device}}}}"',
    ),
    (
        "device_channel with a space",
        "device_channel",
        '"PJSIP/{device} x"',
        f'{SPACE} "PJSIP/{{device}} x"',
    ),
    (
        "device_channel with a line break",
        "device_channel",
        '"PJSIP/{device}\\r\\nAction: Logoff"',
        f'{SPACE} "PJSIP/{{device}}\\r\\nAction: Logoff"',
    ),
    (
        "device_channel without technology",
        "device_channel",
        '"{device}"',
        f'{TECHNOLOGY} "{{device}}"',
    ),
    (
        "device_channel device as technology",
        "device_channel",
        '"{device}/x"',
        f'{TECHNOLOGY} "{{device}}/x"',
    ),
    (
        "device_channel not a string",
        "device_channel",
        "1",
        'expected a dial template containing "{device}", got 1',
    ),
    (
        "fastagi unknown type",
        "fastagi",
        '"nonsense:1"',
        "not a valid endpoint description (\"nonsense:1\"): Unknown endpoint type: 'nonsense'",
    ),
    (
        "fastagi a port",
        "fastagi",
        "4573",
        "expected a Twisted server endpoint description, got 4573",
    ),
    ("wrapup negative", "wrapup_seconds", "-1", f"{WRAPUP} -1"),
    ("wrapup too long", "wrapup_seconds", "3600.5", f"{WRAPUP} 3600.5"),
]


@pytest.mark.parametrize(
    ("name", "value", "expected"), [e[1:] for e in VALUE_ERRORS], ids=[e[0] for e in VALUE_ERRORS]
)
def test_asterisk_value_errors(here: Path, name: str, value: str, expected: str) -> None:
    separator = "" if expected.startswith("[") else ": "
    assert (
        error(asterisk(**{name: value})) == f"ctilink.toml: switch[0].{name}{separator}{expected}"
    )


# (id, file text, message after "ctilink.toml: ")
ERRORS = [
    (
        "host missing",
        asterisk(host=None),
        "switch[0].host: missing (expected a hostname or IP address)",
    ),
    (
        "username missing",
        asterisk(username=None),
        "switch[0].username: missing (expected 1-80 characters without whitespace)",
    ),
    (
        "ping sum",
        asterisk(ping_interval="10", ping_timeout="5.5"),
        f"switch[0]: {PING_SUM} 10.0 + 5.5",
    ),
    ("ping sum with a default", asterisk(ping_interval="60"), f"switch[0]: {PING_SUM} 60.0 + 5.0"),
    (
        "unknown key",
        asterisk(pingtimeout="5"),
        f"switch[0].pingtimeout: unknown key (expected one of {ASTERISK_KEYS})",
    ),
    (
        "replay key",
        asterisk(traces='["a.jsonl"]'),
        f"switch[0].traces: unknown key (expected one of {ASTERISK_KEYS})",
    ),
    (
        "asterisk key on a replay switch",
        SWITCH + 'host = "pbx"\n',
        "switch[0].host: unknown key (expected one of kind, loop, name, port, protocol, speed,"
        " tenant, traces)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_asterisk_errors(here: Path, text: str, expected: str) -> None:
    assert error(text) == f"ctilink.toml: {expected}"


def test_duplicate_fastagi_endpoints(here: Path) -> None:
    agi = 'fastagi = "tcp:port=4573:interface=127.0.0.1"\n'
    text = ASTERISK + agi + SWITCH + ASTERISK.replace("ast1", "ast2") + agi
    assert error(text) == (
        'ctilink.toml: switch[2].fastagi: duplicate endpoint "tcp:port=4573:interface=127.0.0.1"'
        " (also switch[0].fastagi)"
    )


# -- routing ------------------------------------------------------------------------------
def test_routing_defaults(here: Path, tmp_path: Path) -> None:
    defaults = RoutingConfig(
        default_queue=None, default_priority=0, default_agent=None, budget_ms=300
    )
    assert load("").routing == defaults
    assert load("[routing]\n").routing == defaults
    assert default_config(tmp_path / "state").routing == defaults


def test_routing_values(here: Path) -> None:
    config = load(
        """
        [routing]
        default_queue = "support-1_B"
        default_priority = 100
        default_agent = "agent.6001-a_1"
        budget_ms = 5000
        """
    )
    assert config.routing == RoutingConfig("support-1_B", 100, "agent.6001-a_1", 5000)
    assert load("[routing]\nbudget_ms = 10\n").routing.budget_ms == 10


QUEUE = "expected a queue name (1-80 of A-Z a-z 0-9 _ -), got"
AGENT = "expected a device or agent id (1-80 of A-Z a-z 0-9 _ . -), got"
PRIORITY = "expected an integer from 0 to 100, got"
BUDGET = "expected an integer from 10 to 5000, got"

ROUTING_ERRORS = [
    ("queue with a space", 'default_queue = "sup port"', f'default_queue: {QUEUE} "sup port"'),
    ("queue empty", 'default_queue = ""', f'default_queue: {QUEUE} ""'),
    ("queue with a dot", 'default_queue = "a.b"', f'default_queue: {QUEUE} "a.b"'),
    ("queue too long", f'default_queue = "{"q" * 81}"', f'default_queue: {QUEUE} "{"q" * 57}..."'),
    ("queue integer", "default_queue = 1", f"default_queue: {QUEUE} 1"),
    ("priority negative", "default_priority = -1", f"default_priority: {PRIORITY} -1"),
    ("priority too big", "default_priority = 101", f"default_priority: {PRIORITY} 101"),
    ("priority float", "default_priority = 1.5", f"default_priority: {PRIORITY} 1.5"),
    ("priority boolean", "default_priority = true", f"default_priority: {PRIORITY} true"),
    ("agent with a slash", 'default_agent = "PJSIP/6001"', f'default_agent: {AGENT} "PJSIP/6001"'),
    ("agent too long", f'default_agent = "{"a" * 81}"', f'default_agent: {AGENT} "{"a" * 57}..."'),
    ("budget too small", "budget_ms = 9", f"budget_ms: {BUDGET} 9"),
    ("budget too big", "budget_ms = 5001", f"budget_ms: {BUDGET} 5001"),
    ("budget float", "budget_ms = 300.0", f"budget_ms: {BUDGET} 300.0"),
    (
        "unknown key",
        "default_route = 1",
        f"default_route: unknown key (expected one of {', '.join(sorted(_ROUTING_FIELDS))})",
    ),
]


@pytest.mark.parametrize(
    ("line", "expected"), [e[1:] for e in ROUTING_ERRORS], ids=[e[0] for e in ROUTING_ERRORS]
)
def test_routing_errors(here: Path, line: str, expected: str) -> None:
    assert error(f"[routing]\n{line}\n") == f"ctilink.toml: routing.{expected}"


def test_routing_not_a_table(here: Path) -> None:
    assert error('routing = "support"\n') == (
        'ctilink.toml: routing: expected a table ([routing]), got "support"'
    )


def test_fastagi_needs_a_default_route(here: Path) -> None:
    assert error(ASTERISK + 'fastagi = "tcp:port=4573"\n') == (
        "ctilink.toml: routing: switch[0] (ast1) answers FastAGI route requests, so a default"
        " route is needed: set default_queue or default_agent"
    )
