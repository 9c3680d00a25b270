"""The example configuration (contrib/ctilink.example.toml) and loading without a reactor.

The example is checked twice: as shipped (a replay switch), and with its commented-out
asterisk switch and optional [routing] keys put in, the way its comments say to.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ctilink.config import (
    AsteriskOptions,
    DaemonConfig,
    EventSocketConfig,
    ReplayOptions,
    RoutingConfig,
    Secret,
    load_config,
)

from .configs import AMI_SECRET, EXAMPLE, SWITCH, config_dir
from .conftest import TRACES


def uncommented() -> str:
    """The example with its asterisk switch (the first ``#[[switch]]`` up to a lone ``#``)
    and optional [routing] keys uncommented: one "#" removed from each of their lines."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("#[[switch]]")
    end = lines.index("#", start)
    before = [line[1:] if re.match(r"#default_\w+ = ", line) else line for line in lines[:start]]
    return "\n".join(before + [line[1:] for line in lines[start:end]]) + "\n"


def tables(text: str) -> dict[str, list[str]]:
    """The lines of each table of ``text``, by name; a [[switch]] table by its kind too."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("["):
            current = []
            found.setdefault(line.strip("[]"), current)
        current.append(line)
        kind = re.fullmatch(r'kind = "(\w+)".*', line)
        if kind:
            found[kind[1]] = current
    return found


def copy_example(tmp_path: Path, text: str) -> Path:
    """The example in ``tmp_path``, its files there too (the trace, the AMI secret, an
    empty token file)."""
    (tmp_path / "traces").mkdir()
    shutil.copy(TRACES / "inbound-answered.jsonl", tmp_path / "traces")
    (tmp_path / "ami.secret").write_text(AMI_SECRET + "\n")
    (tmp_path / "tokens.toml").write_text("")
    for name in ("ami.secret", "tokens.toml"):
        text = text.replace(f"/etc/ctilink/{name}", str(tmp_path / name))
    config = tmp_path / "ctilink.toml"
    config.write_text(text)
    return config


def test_example_file_validates(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    config = load_config(copy_example(tmp_path, EXAMPLE.read_text()), environ={})
    assert config.daemon.state_dir == Path("/var/lib/ctilink")
    assert config.database.url == "sqlite:////var/lib/ctilink/ctilink.sqlite3"
    assert config.event_socket == EventSocketConfig(
        "tcp:port=8765:interface=127.0.0.1", "token", tmp_path / "tokens.toml", 10_000
    )
    (switch,) = config.switches
    assert switch.kind == "replay"
    assert switch.replay is not None
    assert switch.replay == ReplayOptions(
        (tmp_path / "traces" / "inbound-answered.jsonl",), False, 1.0, None, "auto"
    )
    assert config.routing == RoutingConfig(None, 0, None, 300)


def test_example_asterisk_switch_and_routing_validate(tmp_path: Path) -> None:
    config = load_config(copy_example(tmp_path.resolve(), uncommented()), environ={})
    (_, asterisk) = config.switches
    assert (asterisk.name, asterisk.kind, asterisk.tenant) == ("asterisk1", "asterisk", "default")
    assert asterisk.asterisk == AsteriskOptions(
        host="pbx.example.net",
        port=5038,
        username="ctilink",
        secret=Secret(AMI_SECRET),
        auth="md5",
        events=("call", "agent", "user", "system"),
        call_data_variables=("CUSTOMER_ACCOUNT",),
        ping_interval=5.0,
        ping_timeout=5.0,
        action_timeout=10.0,
        connect_timeout=10.0,
        reconnect_max_delay=30.0,
        originate_contexts=("from-internal",),
        device_channel="PJSIP/{device}",
        fastagi="tcp:port=4573:interface=127.0.0.1",
        wrapup_seconds=0.0,
    )
    assert config.routing == RoutingConfig("support", 0, "6001", 300)


def names(options: type) -> list[str]:
    return [f.name for f in dataclasses.fields(options)]


@pytest.mark.parametrize(
    ("table", "keys"),
    [
        ("daemon", names(DaemonConfig)),
        ("database", ["url", "password_file", "password_env"]),
        ("event_socket", names(EventSocketConfig)),
        ("routing", names(RoutingConfig)),
        ("switch", ["name", "kind", "tenant"]),
        ("replay", names(ReplayOptions)),
        ("asterisk", [*names(AsteriskOptions), "secret_file", "secret_env"]),
    ],
)
def test_example_file_documents_every_key(table: str, keys: list[str]) -> None:
    lines = tables(uncommented())[table]
    for key in (k for k in keys if k != "secret"):  # never a key: secret_file, secret_env
        at = [i for i, line in enumerate(lines) if line.lstrip("#").startswith(f"{key} = ")]
        assert at, f"{table}.{key} is not in the example"
        assert lines[at[0] - 1].startswith("# "), f"{table}.{key} has no comment above it"


def test_loading_does_not_import_the_reactor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = config_dir(tmp_path, monkeypatch)
    (here / "tokens.toml").write_text("")
    (here / "ctilink.toml").write_text(
        SWITCH
        + '[event_socket]\nlisten = "tcp6:port=8765:interface=\\\\:\\\\:1"\n'
        + 'tokens_file = "tokens.toml"\n'
        + '[[switch]]\nname = "ast1"\nkind = "asterisk"\nhost = "::1"\nusername = "u"\n'
        + 'secret_file = "ami.secret"\nfastagi = "tcp:port=4573"\n'
        + '[[switch]]\nname = "csta1"\nkind = "csta"\nhost = "::1"\nport = 2555\n'
        + '[routing]\ndefault_queue = "support"\n'
    )
    code = (
        "import sys; from ctilink.config import load_config; load_config('ctilink.toml');"
        " assert 'twisted.internet.reactor' not in sys.modules, 'reactor imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=here)
