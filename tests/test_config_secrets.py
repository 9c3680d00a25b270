"""Secrets in the configuration: the database password and AMI secrets, read at load time
from a file or the ``environ`` mapping, never shown by a repr, a str or an error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ctilink.config import AsteriskOptions, Config, DatabaseConfig, Secret, load_config
from ctilink.errors import ConfigError

from .configs import AMI_SECRET, ASTERISK, NO_AUTH, PASSWORD, config_dir, error, load


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config directory (with ``a.jsonl`` and ``ami.secret``), and the working directory."""
    return config_dir(tmp_path, monkeypatch)


# -- database -----------------------------------------------------------------------------
def assert_hidden(config: Config) -> None:
    for text in (repr(config), str(config), repr(dataclasses.asdict(config)), str(config.database)):
        assert PASSWORD not in text
        assert "hunter2" not in text
    assert config.database.password == Secret(PASSWORD)
    assert config.database.connect_url().password == PASSWORD
    assert PASSWORD not in repr(config.database.connect_url())


def test_password_in_url_is_masked(here: Path) -> None:
    quoted = "hunter2-S3cr%40t%3A%2F%3F%23"
    config = load(f'[database]\nurl = "postgresql://ctilink:{quoted}@db.example:5432/cti"\n')
    assert config.database.url == "postgresql+psycopg://ctilink:***@db.example:5432/cti"
    assert config.database.backend == "postgresql"
    assert_hidden(config)
    rendered = config.database.connect_url().render_as_string(hide_password=False)
    assert rendered == f"postgresql+psycopg://ctilink:{quoted}@db.example:5432/cti"


def test_password_file(here: Path) -> None:
    (here / "pw").write_text(PASSWORD + "\n")
    config = load('[database]\nurl = "postgresql+psycopg://ctilink@db/cti"\npassword_file = "pw"\n')
    assert config.database.url == "postgresql+psycopg://ctilink:***@db/cti"
    assert_hidden(config)


def test_password_env(here: Path) -> None:
    config = load(
        '[database]\nurl = "postgresql://ctilink@db/cti"\npassword_env = "CTILINK_DB_PW"\n',
        environ={"CTILINK_DB_PW": PASSWORD},
    )
    assert_hidden(config)


def test_password_env_unset(here: Path) -> None:
    text = '[database]\nurl = "postgresql://db/cti"\npassword_env = "CTILINK_DB_PW"\n'
    assert error(text, environ={}) == (
        "ctilink.toml: database.password_env: environment variable CTILINK_DB_PW is not set"
        " or empty"
    )


def test_password_file_empty(here: Path) -> None:
    (here / "pw").write_text("\n")
    text = '[database]\nurl = "postgresql://db/cti"\npassword_file = "pw"\n'
    assert error(text) == f"ctilink.toml: database.password_file: password file is empty: {here}/pw"


def test_password_given_twice(here: Path) -> None:
    (here / "pw").write_text("x\n")
    both = '[database]\nurl = "postgresql://db/cti"\npassword_file = "pw"\npassword_env = "P"\n'
    assert error(both, environ={"P": "y"}) == (
        "ctilink.toml: database.password_env: conflicts with database.password_file: give the"
        " password one way"
    )
    in_url = '[database]\nurl = "postgresql://u:hunter2@db/cti"\npassword_env = "P"\n'
    message = error(in_url, environ={"P": "y"})
    assert message == (
        "ctilink.toml: database.password_env: conflicts with the password inside database.url:"
        " give it one way"
    )


def test_errors_never_show_the_url(here: Path) -> None:
    message = error('[database]\nurl = "mysql://ctilink:hunter2@db/cti"\n')
    assert "hunter2" not in message
    message = error('[database]\nurl = "postgresql://ctilink:hunter2@db:port/cti"\n')
    assert "hunter2" not in message


def test_database_config_built_in_code_masks_the_password() -> None:
    database = DatabaseConfig(f"postgresql+psycopg://u:{PASSWORD.replace('@', '%40')}@h/d")
    assert "hunter2" not in repr(database)
    assert database.url == "postgresql+psycopg://u:***@h/d"
    assert database.connect_url().password == PASSWORD


def test_secret_never_shows() -> None:
    secret = Secret(PASSWORD)
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret.reveal() == PASSWORD


# -- AMI secrets --------------------------------------------------------------------------
def ami_options(config: Config) -> AsteriskOptions:
    (switch,) = config.switches
    assert switch.asterisk is not None
    return switch.asterisk


def assert_secret_hidden(config: Config) -> None:
    (switch,) = config.switches
    options = ami_options(config)
    shown = [repr(config), str(config), repr(switch), str(switch), repr(options), str(options)]
    shown += [repr(dataclasses.asdict(config)), f"{options}", f"{options.secret}"]
    for text in shown:
        assert AMI_SECRET not in text
        assert "zebra" not in text
    assert "Secret('***')" in repr(options)
    assert options.secret == Secret(AMI_SECRET)
    assert options.secret.reveal() == AMI_SECRET


def test_secret_file(here: Path) -> None:
    assert_secret_hidden(load(ASTERISK))


def test_secret_file_relative_to_the_config_file(here: Path) -> None:
    (here / "etc").mkdir()
    (here / "etc" / "ami.secret").write_text("other\r\n")
    (here / "etc" / "c.toml").write_text(ASTERISK + NO_AUTH)
    assert ami_options(load_config("etc/c.toml")).secret == Secret("other")


def test_secret_env_reads_the_environ_mapping(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTILINK_AMI_SECRET", "from-os-environ")
    text = ASTERISK.replace('secret_file = "ami.secret"', 'secret_env = "CTILINK_AMI_SECRET"')
    config = load(text, environ={"CTILINK_AMI_SECRET": AMI_SECRET})
    assert_secret_hidden(config)
    assert error(text, environ={}) == (
        "ctilink.toml: switch[0].secret_env: environment variable CTILINK_AMI_SECRET is not"
        " set or empty"
    )
    assert ami_options(load(text)).secret == Secret("from-os-environ")  # default: os.environ


def test_inline_secret_is_refused_without_showing_it(here: Path) -> None:
    for text in (
        ASTERISK + f'secret = "{AMI_SECRET}"\n',
        ASTERISK.replace('secret_file = "ami.secret"', f'secret = "{AMI_SECRET}"'),
    ):
        assert error(text) == (
            "ctilink.toml: switch[0].secret: an inline secret is not accepted: use secret_file"
            " or secret_env"
        )


SECRET_ERRORS = [
    (
        "no secret",
        ASTERISK.replace('secret_file = "ami.secret"\n', ""),
        {},
        "ctilink.toml: switch[0]: missing secret_file or secret_env (where the AMI secret is"
        " read from)",
    ),
    (
        "both",
        ASTERISK + 'secret_env = "AMI"\n',
        {"AMI": "x"},
        "ctilink.toml: switch[0].secret_env: conflicts with secret_file: give the secret one way",
    ),
    (
        "file not found",
        ASTERISK.replace("ami.secret", "nope.secret"),
        {},
        "ctilink.toml: switch[0].secret_file: file not found: {dir}/nope.secret",
    ),
    (
        "file is a directory",
        ASTERISK.replace("ami.secret", "."),
        {},
        "ctilink.toml: switch[0].secret_file: not a file: {dir}",
    ),
    (
        "file not a string",
        ASTERISK.replace('"ami.secret"', "1"),
        {},
        "ctilink.toml: switch[0].secret_file: expected a path to a file, got 1",
    ),
    (
        "empty env",
        ASTERISK.replace('secret_file = "ami.secret"', 'secret_env = "AMI"'),
        {"AMI": ""},
        "ctilink.toml: switch[0].secret_env: environment variable AMI is not set or empty",
    ),
    (
        "env not a name",
        ASTERISK.replace('secret_file = "ami.secret"', 'secret_env = "1AMI"'),
        {},
        'ctilink.toml: switch[0].secret_env: expected an environment variable name, got "1AMI"',
    ),
    (
        "env with a line break",
        ASTERISK.replace('secret_file = "ami.secret"', 'secret_env = "AMI"'),
        {"AMI": "abc\r\nAction: Logoff"},
        "ctilink.toml: switch[0].secret_env: environment variable AMI: the secret has a line break",
    ),
]


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [e[1:] for e in SECRET_ERRORS],
    ids=[e[0] for e in SECRET_ERRORS],
)
def test_secret_errors(here: Path, text: str, environ: dict[str, str], expected: str) -> None:
    assert error(text, environ) == expected.format(dir=here)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n", "secret file is empty"),
        ("", "secret file is empty"),
        ("abc\nAction: Logoff\n", "secret file has more than one line"),
        ("abc\rdef", "secret file has more than one line"),
    ],
)
def test_bad_secret_file(here: Path, content: str, message: str) -> None:
    (here / "ami.secret").write_bytes(content.encode())
    assert error(ASTERISK) == f"ctilink.toml: switch[0].secret_file: {message}: {here}/ami.secret"


def test_unreadable_secret_file(here: Path) -> None:
    (here / "ami.secret").write_bytes(b"\xffabc\n")
    assert error(ASTERISK) == (
        f"ctilink.toml: switch[0].secret_file: cannot read {here}/ami.secret: not UTF-8 (byte"
        " 0xff at offset 0)"
    )


def test_errors_after_the_secret_never_show_it(here: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(ASTERISK + "port = 0\n")
    assert AMI_SECRET not in str(info.value)
    assert AMI_SECRET not in repr(info.value)
