"""[event_socket]: where clients connect, who may (a token file, or no authentication),
and how far behind a client may fall."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctilink.config import DEFAULT_LISTEN, EventSocketConfig, default_config, load_config
from ctilink.screenpop.auth import TokenStore, new_token

from .configs import config_dir, error, load

REQUIRED = (
    'ctilink.toml: event_socket.tokens_file: required when auth = "token" (create one with'
    " `ctilink token new`)"
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config directory (with a token file ``tokens.toml`` of one token, ``crm``), and
    the working directory."""
    here = config_dir(tmp_path, monkeypatch)
    _, token = new_token("crm", "default")
    (here / "tokens.toml").write_text(token.to_toml())
    return here


def section(**keys: str) -> str:
    return "[event_socket]\n" + "".join(f"{name} = {value}\n" for name, value in keys.items())


# -- values -------------------------------------------------------------------------------
def test_the_dataclass_defaults() -> None:
    assert EventSocketConfig(listen="tcp:8765") == EventSocketConfig(
        "tcp:8765", auth="token", tokens_file=None, max_backlog=10_000
    )


def test_tokens_by_default(here: Path) -> None:
    config = load(section(tokens_file='"tokens.toml"'))
    assert config.event_socket == EventSocketConfig(
        listen=DEFAULT_LISTEN, auth="token", tokens_file=here / "tokens.toml", max_backlog=10_000
    )
    assert config.event_socket.tokens_file is not None
    (token,) = TokenStore.load(config.event_socket.tokens_file)  # what the daemon reads
    assert token.id == "crm"


def test_values(here: Path) -> None:
    (here / "etc").mkdir()
    (here / "etc" / "t.toml").write_text("")  # no token yet: nobody may connect
    text = section(
        listen='"tcp:port=9000"', auth='"token"', tokens_file='"t.toml"', max_backlog="100"
    )
    (here / "etc" / "c.toml").write_text(text)
    config = load_config("etc/c.toml")  # relative to the config file, not the cwd
    assert config.event_socket == EventSocketConfig(
        "tcp:port=9000", "token", here / "etc" / "t.toml", 100
    )


def test_no_authentication(here: Path) -> None:
    assert load(section(auth='"none"')).event_socket == EventSocketConfig(
        DEFAULT_LISTEN, "none", None, 10_000
    )
    # A token file given with auth = "none" is still checked (switching back must work).
    config = load(section(auth='"none"', tokens_file='"tokens.toml"', max_backlog="1000000"))
    assert config.event_socket == EventSocketConfig(
        DEFAULT_LISTEN, "none", here / "tokens.toml", 1_000_000
    )


def test_default_config_has_no_authentication(tmp_path: Path) -> None:
    assert default_config(tmp_path / "state").event_socket == EventSocketConfig(
        DEFAULT_LISTEN, "none", None, 10_000
    )


# -- errors -------------------------------------------------------------------------------
def test_a_file_without_a_token_file_is_refused(here: Path) -> None:
    assert error("") == REQUIRED
    assert error('[daemon]\nlog_level = "debug"\n') == REQUIRED
    assert error(section(auth='"token"')) == REQUIRED
    assert error(section(listen='"tcp:port=9000"', max_backlog="500")) == REQUIRED


BACKLOG = "expected an integer from 100 to 1000000, got"

# (id, keys, message after "ctilink.toml: event_socket.")
ERRORS = [
    ("auth unknown", {"auth": '"basic"'}, 'auth: expected one of "token", "none", got "basic"'),
    ("auth in capitals", {"auth": '"NONE"'}, 'auth: expected one of "token", "none", got "NONE"'),
    ("auth a boolean", {"auth": "false"}, 'auth: expected one of "token", "none", got false'),
    (
        "tokens_file missing",
        {"tokens_file": '"nope.toml"'},
        "tokens_file: file not found: {here}/nope.toml",
    ),
    ("tokens_file a directory", {"tokens_file": '"."'}, "tokens_file: not a file: {here}"),
    (
        "tokens_file empty",
        {"tokens_file": '""'},
        "tokens_file: expected a path, got an empty string",
    ),
    (
        "tokens_file an integer",
        {"tokens_file": "1"},
        "tokens_file: expected a path to a token file, got 1",
    ),
    ("backlog too small", {"max_backlog": "99"}, f"max_backlog: {BACKLOG} 99"),
    ("backlog too big", {"max_backlog": "1000001"}, f"max_backlog: {BACKLOG} 1000001"),
    ("backlog a float", {"max_backlog": "1e4"}, f"max_backlog: {BACKLOG} 10000.0"),
    ("backlog a string", {"max_backlog": '"10000"'}, f'max_backlog: {BACKLOG} "10000"'),
    (
        "unknown key",
        {"tls_key": '"key.pem"'},
        "tls_key: unknown key (expected one of auth, listen, max_backlog, tokens_file)",
    ),
    (
        "token without auth",
        {"token": '"ctl_x"'},
        "token: unknown key (expected one of auth, listen, max_backlog, tokens_file)",
    ),
]


@pytest.mark.parametrize(("keys", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(here: Path, keys: dict[str, str], expected: str) -> None:
    message = expected.format(here=here)
    assert error(section(**keys)) == f"ctilink.toml: event_socket.{message}"


# (id, token file text, message after "<token file>: ")
TOKEN_FILE_ERRORS = [
    (
        "not toml",
        "[[token]\n",
        "not valid TOML (Expected ']]' at the end of an array declaration (at line 1, column 8))",
    ),
    ("unknown table", "[tokens]\n", "unknown key 'tokens' (expected [[token]])"),
    ("no id", '[[token]]\ntenant = "t"\n', "token 1: 'id' is required (a non-empty string)"),
    (
        "bad digest",
        '[[token]]\nid = "crm"\ntenant = "t"\nsha256 = "abc"\n',
        "token 1 (crm): 'sha256' must be 64 hex digits (the token's SHA-256)",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [e[1:] for e in TOKEN_FILE_ERRORS],
    ids=[e[0] for e in TOKEN_FILE_ERRORS],
)
def test_a_bad_token_file_is_a_config_error(here: Path, text: str, expected: str) -> None:
    (here / "bad.toml").write_text(text)
    message = error(section(tokens_file='"bad.toml"'))
    prefix = f"ctilink.toml: event_socket.tokens_file: {here}/bad.toml: "
    assert message == prefix + expected


def test_a_token_file_holding_the_same_token_twice(here: Path) -> None:
    entry = (here / "tokens.toml").read_text()
    (here / "tokens.toml").write_text(entry + entry.replace('"crm"', '"crm2"'))
    message = error(section(tokens_file='"tokens.toml"'))
    assert message == (
        f"ctilink.toml: event_socket.tokens_file: {here}/tokens.toml: tokens 'crm' and 'crm2'"
        " have the same digest"
    )
