"""The configuration loader: defaults, path resolution, secrets and one-line errors.

The asterisk switch kind and [routing] are in ``test_config_asterisk.py``, passwords and
secrets in ``test_config_secrets.py``, the example file in ``test_config_example.py``.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from ctilink.config import (
    DaemonConfig,
    ReplayOptions,
    RoutingConfig,
    SwitchConfig,
    default_config,
    load_config,
    parse_config,
)
from ctilink.errors import ConfigError

from .configs import SWITCH, config_dir, error, load


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config directory (with a trace ``a.jsonl``), and the working directory."""
    return config_dir(tmp_path, monkeypatch)


# -- defaults and paths -------------------------------------------------------------------
def test_empty_file_gives_defaults(here: Path) -> None:
    config = load("")
    assert config.source == here / "ctilink.toml"
    assert config.daemon.state_dir == here / "ctilink-state"
    assert config.daemon.log_level == "info"
    assert config.daemon.log_format == "text"
    assert config.database.url == f"sqlite:///{here}/ctilink-state/ctilink.sqlite3"
    assert config.database.password is None
    assert config.database.backend == "sqlite"
    assert config.event_socket.listen == "tcp:port=8765:interface=127.0.0.1"
    assert config.switches == ()
    assert config.routing == RoutingConfig(
        default_queue=None, default_priority=0, default_agent=None, budget_ms=300
    )


def test_replay_switch_defaults_and_values(here: Path) -> None:
    config = load(
        SWITCH
        + """
        [[switch]]
        name = "pbx-2_B"
        kind = "replay"
        tenant = "acme"
        traces = ["a.jsonl", "a.jsonl"]
        loop = true
        speed = 0
        port = 15038
        """
    )
    first, second = config.switches
    assert first == SwitchConfig(
        name="pbx1",
        kind="replay",
        tenant="default",
        replay=ReplayOptions(
            traces=(here / "a.jsonl",), loop=False, speed=1.0, port=None, protocol="auto"
        ),
    )
    assert second.tenant == "acme"
    assert second.replay == ReplayOptions(
        traces=(here / "a.jsonl", here / "a.jsonl"), loop=True, speed=0.0, port=15038
    )
    third = load(SWITCH + 'protocol = "csta"\nport = 2556\n').switches[0].replay
    assert third is not None and (third.protocol, third.port) == ("csta", 2556)
    assert load(SWITCH + 'protocol = "ami"\n').switches[0].replay.protocol == "ami"  # type: ignore[union-attr]
    assert isinstance(second.replay.speed, float)


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path.resolve() / "etc"
    (etc / "traces").mkdir(parents=True)
    (etc / "traces" / "t.jsonl").write_text("{}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (etc / "ctilink.toml").write_text(
        textwrap.dedent(
            """
            [daemon]
            state_dir = "state"
            [database]
            url = "sqlite:///db/x.sqlite3?mode=rwc"
            [event_socket]
            auth = "token"
            tokens_file = "tokens.toml"
            [[switch]]
            name = "pbx1"
            kind = "replay"
            traces = ["traces/t.jsonl"]
            """
        )
    )
    (etc / "tokens.toml").write_text("")
    config = load_config("../etc/ctilink.toml")
    assert config.daemon.state_dir == etc / "state"
    assert config.event_socket.tokens_file == etc / "tokens.toml"
    assert config.database.url == f"sqlite:///{etc}/db/x.sqlite3?mode=rwc"
    assert config.switches[0].replay is not None
    assert config.switches[0].replay.traces == (etc / "traces" / "t.jsonl",)


def test_absolute_paths_are_kept(here: Path) -> None:
    config = load(
        f"""
        [daemon]
        state_dir = "{here}/var"
        [database]
        url = "sqlite:///{here}/other.sqlite3"
        """
    )
    assert config.daemon.state_dir == here / "var"
    assert config.database.url == f"sqlite:///{here}/other.sqlite3"


def test_sqlite_in_memory_is_kept(here: Path) -> None:
    config = load('[database]\nurl = "sqlite://"\n')
    assert config.database.url == "sqlite://"


def test_parse_config_uses_base_dir_and_source_label(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    text = '[daemon]\nstate_dir = "s"\n[event_socket]\nauth = "none"\n'
    config = parse_config(text, source="<test>", base_dir=tmp_path)
    assert config.source is None
    assert config.daemon.state_dir == tmp_path / "s"
    with pytest.raises(ConfigError, match=r"^<test>: daemon\.log_level: "):
        parse_config('[daemon]\nlog_level = "loud"\n', source="<test>", base_dir=tmp_path)


def test_default_config(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    config = default_config(tmp_path / "state")
    assert config.source is None
    assert config.daemon.state_dir == tmp_path / "state"
    assert config.database.url == f"sqlite:///{tmp_path}/state/ctilink.sqlite3"
    assert config.event_socket.listen == "tcp:port=8765:interface=127.0.0.1"
    assert config.switches == ()
    assert config.daemon == DaemonConfig(tmp_path / "state", "info", "text")
    assert config.routing == RoutingConfig(None, 0, None, 300)


def test_config_is_frozen(here: Path) -> None:
    config = load("")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.daemon.log_level = "debug"  # type: ignore[misc]


# -- errors -------------------------------------------------------------------------------
ERRORS = [
    # (id, file text, exact message; {dir} is the config directory)
    (
        "unknown kind",
        SWITCH + '[[switch]]\nname = "pbx2"\nkind = "asterix"\n',
        'ctilink.toml: switch[1].kind: expected one of "asterisk", "csta", "csta-xml",'
        ' "replay", got "asterix"',
    ),
    (
        "invalid toml",
        '[daemon]\nlog_level = "info"\n\nstate_dir = \n',
        "ctilink.toml: line 4 column 13: invalid TOML: invalid value",
    ),
    (
        "invalid toml at end",
        "[daemon]\nlog_level = [1",
        "ctilink.toml: end of file: invalid TOML: unclosed array",
    ),
    (
        "invalid toml duplicate key",
        "[daemon]\nlog_level = 'info'\nlog_level = 'debug'\n",
        "ctilink.toml: line 3 column 20: invalid TOML: cannot overwrite a value",
    ),
    (
        "unknown key",
        '[daemon]\ncolour = "blue"\n',
        "ctilink.toml: daemon.colour: unknown key (expected one of log_format, log_level,"
        " state_dir)",
    ),
    (
        "unknown quoted key",
        '[daemon]\n"log level" = "info"\n',
        'ctilink.toml: daemon."log level": unknown key (expected one of log_format,'
        " log_level, state_dir)",
    ),
    (
        "unknown section",
        "[deamon]\n",
        "ctilink.toml: deamon: unknown section (expected one of daemon, database,"
        " event_socket, routing, switch)",
    ),
    (
        "unknown top-level key",
        'log_level = "info"\n',
        "ctilink.toml: log_level: unknown section (expected one of daemon, database,"
        " event_socket, routing, switch)",
    ),
    (
        "unknown switch key",
        SWITCH + "lop = true\n",
        "ctilink.toml: switch[0].lop: unknown key (expected one of kind, loop, name, port,"
        " protocol, speed, tenant, traces)",
    ),
    (
        "trace not found",
        SWITCH.replace('["a.jsonl"]', '["a.jsonl", "x.jsonl"]'),
        "ctilink.toml: switch[0].traces[1]: file not found: {dir}/x.jsonl",
    ),
    (
        "trace is a directory",
        SWITCH.replace('["a.jsonl"]', '["."]'),
        "ctilink.toml: switch[0].traces[0]: not a file: {dir}",
    ),
    (
        "trace is an empty string",
        SWITCH.replace('["a.jsonl"]', '[""]'),
        "ctilink.toml: switch[0].traces[0]: expected a path, got an empty string",
    ),
    (
        "trace not a string",
        SWITCH.replace('["a.jsonl"]', "[1]"),
        "ctilink.toml: switch[0].traces[0]: expected paths to trace files, got 1",
    ),
    (
        "empty traces",
        SWITCH.replace('["a.jsonl"]', "[]"),
        "ctilink.toml: switch[0].traces: expected a non-empty array of paths to trace files,"
        " got []",
    ),
    (
        "traces not an array",
        SWITCH.replace('["a.jsonl"]', '"a.jsonl"'),
        "ctilink.toml: switch[0].traces: expected a non-empty array of paths to trace files,"
        ' got "a.jsonl"',
    ),
    (
        "duplicate name",
        SWITCH + SWITCH.replace("pbx1", "pbx2") + SWITCH,
        'ctilink.toml: switch[2].name: duplicate name "pbx1" (also switch[0])',
    ),
    (
        "name with a space",
        SWITCH.replace('"pbx1"', '"pbx 1"'),
        'ctilink.toml: switch[0].name: expected 1-32 characters of A-Z a-z 0-9 _ -, got "pbx 1"',
    ),
    (
        "name too long",
        SWITCH.replace('"pbx1"', '"' + "p" * 33 + '"'),
        "ctilink.toml: switch[0].name: expected 1-32 characters of A-Z a-z 0-9 _ -, got "
        '"' + "p" * 33 + '"',
    ),
    (
        "empty name",
        SWITCH.replace('"pbx1"', '""'),
        'ctilink.toml: switch[0].name: expected 1-32 characters of A-Z a-z 0-9 _ -, got ""',
    ),
    (
        "tenant charset",
        SWITCH + 'tenant = "a/b"\n',
        'ctilink.toml: switch[0].tenant: expected 1-32 characters of A-Z a-z 0-9 _ -, got "a/b"',
    ),
    (
        "missing name",
        '[[switch]]\nkind = "replay"\ntraces = ["a.jsonl"]\n',
        "ctilink.toml: switch[0].name: missing (expected 1-32 characters of A-Z a-z 0-9 _ -)",
    ),
    (
        "missing kind",
        '[[switch]]\nname = "pbx1"\n',
        'ctilink.toml: switch[0].kind: missing (expected one of "asterisk", "csta", "csta-xml",'
        ' "replay")',
    ),
    (
        "missing traces",
        '[[switch]]\nname = "pbx1"\nkind = "replay"\n',
        "ctilink.toml: switch[0].traces: missing (expected a non-empty array of paths to trace"
        " files)",
    ),
    (
        "switch is a table",
        '[switch]\nname = "pbx1"\n',
        "ctilink.toml: switch: expected an array of tables ([[switch]]), got a table",
    ),
    (
        "switch item not a table",
        "switch = [1]\n",
        "ctilink.toml: switch[0]: expected a table, got 1",
    ),
    (
        "section not a table",
        "daemon = 1\n",
        "ctilink.toml: daemon: expected a table ([daemon]), got 1",
    ),
    (
        "port is a boolean",
        SWITCH + "port = true\n",
        "ctilink.toml: switch[0].port: expected an integer from 1 to 65535, got true",
    ),
    (
        "port is a string",
        SWITCH + 'port = "5038"\n',
        'ctilink.toml: switch[0].port: expected an integer from 1 to 65535, got "5038"',
    ),
    (
        "port is a float",
        SWITCH + "port = 5038.0\n",
        "ctilink.toml: switch[0].port: expected an integer from 1 to 65535, got 5038.0",
    ),
    (
        "port zero",
        SWITCH + "port = 0\n",
        "ctilink.toml: switch[0].port: expected an integer from 1 to 65535, got 0",
    ),
    (
        "port too big",
        SWITCH + "port = 65536\n",
        "ctilink.toml: switch[0].port: expected an integer from 1 to 65535, got 65536",
    ),
    (
        "negative speed",
        SWITCH + "speed = -0.5\n",
        "ctilink.toml: switch[0].speed: expected a number >= 0, got -0.5",
    ),
    (
        "infinite speed",
        SWITCH + "speed = inf\n",
        "ctilink.toml: switch[0].speed: expected a number >= 0, got inf",
    ),
    (
        "nan speed",
        SWITCH + "speed = nan\n",
        "ctilink.toml: switch[0].speed: expected a number >= 0, got nan",
    ),
    (
        "speed is a boolean",
        SWITCH + "speed = true\n",
        "ctilink.toml: switch[0].speed: expected a number >= 0, got true",
    ),
    (
        "speed is a string",
        SWITCH + 'speed = "fast"\n',
        'ctilink.toml: switch[0].speed: expected a number >= 0, got "fast"',
    ),
    (
        "loop is a string",
        SWITCH + 'loop = "yes"\n',
        'ctilink.toml: switch[0].loop: expected true or false, got "yes"',
    ),
    (
        "loop is an integer",
        SWITCH + "loop = 1\n",
        "ctilink.toml: switch[0].loop: expected true or false, got 1",
    ),
    (
        "log level is an integer",
        "[daemon]\nlog_level = 1\n",
        'ctilink.toml: daemon.log_level: expected one of "debug", "info", "warning", "error",'
        " got 1",
    ),
    (
        "log level in capitals",
        '[daemon]\nlog_level = "INFO"\n',
        'ctilink.toml: daemon.log_level: expected one of "debug", "info", "warning", "error",'
        ' got "INFO"',
    ),
    (
        "log format",
        '[daemon]\nlog_format = "xml"\n',
        'ctilink.toml: daemon.log_format: expected one of "text", "json", got "xml"',
    ),
    (
        "state dir is a date",
        "[daemon]\nstate_dir = 2024-01-01\n",
        "ctilink.toml: daemon.state_dir: expected a path to a directory, got a date/time",
    ),
    (
        "state dir is a file",
        '[daemon]\nstate_dir = "a.jsonl"\n',
        "ctilink.toml: daemon.state_dir: not a directory: {dir}/a.jsonl",
    ),
    (
        "listen is an array",
        '[event_socket]\nlisten = ["tcp:8765"]\n',
        "ctilink.toml: event_socket.listen: expected a Twisted server endpoint description,"
        " got an array",
    ),
    (
        "listen with an unknown endpoint type",
        '[event_socket]\nlisten = "nonsense:1"\n',
        'ctilink.toml: event_socket.listen: not a valid endpoint description ("nonsense:1"):'
        " Unknown endpoint type: 'nonsense'",
    ),
    (
        "database scheme",
        '[database]\nurl = "mysql://ctilink@db/ctilink"\n',
        "ctilink.toml: database.url: expected a URL with scheme one of postgresql,"
        " postgresql+psycopg, sqlite, got 'mysql'",
    ),
    (
        "database url not a url",
        '[database]\nurl = "ctilink.sqlite3"\n',
        "ctilink.toml: database.url: expected a URL sqlite:///path or"
        " postgresql+psycopg://user@host/dbname, or empty; cannot parse the value",
    ),
    (
        "password_env not a name",
        '[database]\npassword_env = "A B"\n',
        'ctilink.toml: database.password_env: expected an environment variable name, got "A B"',
    ),
    (
        "password file missing",
        '[database]\nurl = "postgresql://db/cti"\npassword_file = "pw"\n',
        "ctilink.toml: database.password_file: file not found: {dir}/pw",
    ),
    (
        "password for sqlite",
        '[database]\npassword_file = "a.jsonl"\n',
        "ctilink.toml: database.password_file: a sqlite database takes no password",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(here: Path, text: str, expected: str) -> None:
    assert error(text) == expected.format(dir=here)


def test_bad_endpoint_value(here: Path) -> None:
    message = error('[event_socket]\nlisten = "tcp:port=abc"\n')
    assert message.startswith(
        'ctilink.toml: event_socket.listen: not a valid endpoint description ("tcp:port=abc"): '
    )
    assert "abc" in message.rpartition(": ")[2]


@pytest.mark.parametrize(
    "listen", ["tcp:port=8765:bogus=1", "tcp", "", "unix:/tmp/x.sock:mode=abc"]
)
def test_more_bad_endpoints(here: Path, listen: str) -> None:
    message = error(f'[event_socket]\nlisten = "{listen}"\n')
    assert message.startswith(
        f'ctilink.toml: event_socket.listen: not a valid endpoint description ("{listen}"): '
    )
    assert not message.endswith(": ")


@pytest.mark.parametrize(
    "listen",
    [
        "tcp:8765",
        "tcp:port=0:interface=0.0.0.0",
        "unix:/run/ctilink/events.sock:mode=660",
        r"tcp6:port=8765:interface=\\:\\:1",
    ],
)
def test_good_endpoints(here: Path, listen: str) -> None:
    config = load(f'[event_socket]\nlisten = "{listen}"\nauth = "none"\n')
    assert config.event_socket.listen == listen.replace("\\\\", "\\")


def test_tls_endpoint_parses(here: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ctilink.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (here / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    config = load('[event_socket]\nlisten = "ssl:port=8443:privateKey=key.pem"\nauth = "none"\n')
    assert config.event_socket.listen == "ssl:port=8443:privateKey=key.pem"
    assert "No such file" in error('[event_socket]\nlisten = "ssl:8443:privateKey=nope.pem"\n')


def test_cannot_read_missing_file(here: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("ctilink.toml")
    assert str(info.value) == "ctilink.toml: cannot read: [Errno 2] No such file or directory"


def test_cannot_read_directory(here: Path) -> None:
    (here / "conf.d").mkdir()
    with pytest.raises(ConfigError, match=r"^conf\.d: cannot read: \[Errno 21\] Is a directory$"):
        load_config("conf.d")


def test_cannot_read_non_utf8(here: Path) -> None:
    (here / "ctilink.toml").write_bytes(b'[daemon]\nlog_level = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(Path("ctilink.toml"))
    assert str(info.value) == "ctilink.toml: cannot read: not UTF-8 (byte 0xff at offset 22)"


def test_error_names_the_file_as_given(here: Path) -> None:
    (here / "etc").mkdir()
    (here / "etc" / "c.toml").write_text("[x]\n")
    with pytest.raises(ConfigError, match=r"^etc/c\.toml: x: unknown section"):
        load_config("etc/c.toml")
    with pytest.raises(ConfigError, match=rf"^{here}/etc/c\.toml: x: unknown section"):
        load_config(here / "etc" / "c.toml")


def test_zero_switches_is_allowed(here: Path) -> None:
    assert load("switch = []\n").switches == ()
