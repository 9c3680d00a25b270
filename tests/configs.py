"""Test helpers for the configuration tests: write a ``ctilink.toml``, load it, get its error."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from ctilink.config import Config, load_config
from ctilink.errors import ConfigError

REPO = Path(__file__).parent.parent
EXAMPLE = REPO / "contrib" / "ctilink.example.toml"
PASSWORD = "hunter2-S3cr@t:/?#"
AMI_SECRET = "Ami-S3cret!zebra"

SWITCH = """
[[switch]]
name = "pbx1"
kind = "replay"
traces = ["a.jsonl"]
"""

ASTERISK = """
[[switch]]
name = "ast1"
kind = "asterisk"
host = "pbx.example.net"
username = "ctilink"
secret_file = "ami.secret"
"""


def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` holding a trace ``a.jsonl`` and an AMI secret file ``ami.secret``, made
    the working directory."""
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "ami.secret").write_text(AMI_SECRET + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path.resolve()


# Event socket authentication off: what ``load`` adds to a text without an [event_socket]
# table, so that tests of other sections need no token file. (``error`` adds nothing: the
# event socket is checked last, after any other section's error.)
NO_AUTH = '[event_socket]\nauth = "none"\n'


def write_and_load(text: str, environ: Mapping[str, str] | None = None) -> Config:
    Path("ctilink.toml").write_text(textwrap.dedent(text))
    return load_config("ctilink.toml", environ=environ)


def load(text: str, environ: Mapping[str, str] | None = None) -> Config:
    """``text`` (with ``NO_AUTH`` if it has no [event_socket] table) written to
    ``ctilink.toml`` and loaded."""
    text = textwrap.dedent(text)
    if "[event_socket]" not in text:
        text += "\n" + NO_AUTH
    return write_and_load(text, environ)


def error(text: str, environ: Mapping[str, str] | None = None) -> str:
    """The one-line message loading ``text`` fails with."""
    with pytest.raises(ConfigError) as info:
        write_and_load(text, environ)
    message = str(info.value)
    assert "\n" not in message
    return message
