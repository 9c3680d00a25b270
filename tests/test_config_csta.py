"""The csta and csta-xml switch kinds: a live CSTA link (ECMA-285 BER or ECMA-323 XML), whose
options are the link's own ``CstaSettings``."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ctilink.adapters.csta import CstaSettings
from ctilink.config import Secret, SwitchConfig, load_config

from .configs import EXAMPLE, NO_AUTH, config_dir, error, load
from .test_config_example import copy_example

PASSWORD = "Csta-S3cret!yak"

CSTA = """
[[switch]]
name = "csta1"
kind = "csta"
host = "pbx.example.net"
port = 2555
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config directory (with ``csta.password``), and the working directory."""
    here = config_dir(tmp_path, monkeypatch)
    (here / "csta.password").write_text(PASSWORD + "\n")
    return here


def csta(kind: str = "csta", **keys: str | None) -> str:
    """The CSTA switch of ``kind`` with keys set to TOML values (replaced if there; None:
    removed)."""
    lines = [line for line in CSTA.splitlines() if line.partition(" = ")[0] not in keys]
    lines = [f'kind = "{kind}"' if line.startswith("kind = ") else line for line in lines]
    lines += [f"{name} = {value}" for name, value in keys.items() if value is not None]
    return "\n".join(lines) + "\n"


def settings(text: str) -> CstaSettings:
    (switch,) = load(text).switches
    assert switch.csta is not None
    return switch.csta


# -- values -------------------------------------------------------------------------------
def test_csta_defaults(here: Path) -> None:
    (switch,) = load(CSTA).switches
    assert switch == SwitchConfig(
        name="csta1",
        kind="csta",
        tenant="default",
        csta=CstaSettings(
            host="pbx.example.net",
            port=2555,
            xml=False,
            xml_edition="ed4",
            xml_application_session=False,
            alcatel_handshake=False,
            csta_versions=("versionFive",),
            application_context="1.3.12.0.218",
            user=None,
            password=None,
            devices=(),
            acd_groups=(),
            route_points=(),
            heartbeat_interval=30.0,
            heartbeat_timeout=60.0,
            request_timeout=10.0,
            connect_timeout=10.0,
            reconnect_initial_delay=0.5,
            reconnect_max_delay=30.0,
            routing_budget=0.3,
        ),
    )
    assert switch.replay is None and switch.asterisk is None


def test_csta_ber_values(here: Path) -> None:
    got = settings(
        csta(
            host='"10.0.0.7"',
            port="65535",
            xml="false",
            alcatel_handshake="true",
            csta_versions='["versionThree", "versionFive", "versionTwentyfour"]',
            application_context='"1.3.12.0.285.200"',
            password_file='"csta.password"',
            devices='["6001", "6002", "+331"]',
            acd_groups='["support", "sales"]',
            route_points='["800"]',
            heartbeat_interval="5",
            heartbeat_timeout="5",
            request_timeout="2.5",
            connect_timeout="1",
            reconnect_initial_delay="0.05",
            reconnect_max_delay="0.05",
            routing_budget_ms="1200",
        )
        + '[routing]\ndefault_queue = "support"\n'
    )
    assert got == CstaSettings(
        host="10.0.0.7",
        port=65535,
        xml=False,
        alcatel_handshake=True,
        csta_versions=("versionThree", "versionFive", "versionTwentyfour"),
        application_context="1.3.12.0.285.200",
        password=Secret(PASSWORD),
        devices=("6001", "6002", "+331"),
        acd_groups=("support", "sales"),
        route_points=("800",),
        heartbeat_interval=5.0,
        heartbeat_timeout=5.0,
        request_timeout=2.5,
        connect_timeout=1.0,
        reconnect_initial_delay=0.05,
        reconnect_max_delay=0.05,
        routing_budget=1.2,
    )
    for seconds in (got.heartbeat_interval, got.connect_timeout, got.reconnect_max_delay):
        assert isinstance(seconds, float)
    assert PASSWORD not in repr(load(csta(password_file='"csta.password"')))


def test_csta_xml_values(here: Path) -> None:
    got = settings(
        csta(
            "csta-xml",
            xml_edition='"ed3"',
            xml_application_session="true",
            user='"cti-app@acme"',
            devices='["6001"]',
        )
    )
    assert got == CstaSettings(
        host="pbx.example.net",
        port=2555,
        xml=True,
        xml_edition="ed3",
        xml_application_session=True,
        user="cti-app@acme",
        devices=("6001",),
    )
    (switch,) = load(csta("csta-xml")).switches
    assert (switch.kind, switch.csta) == ("csta-xml", CstaSettings("pbx.example.net", 2555, True))


def test_kind_csta_with_xml_is_csta_xml(here: Path) -> None:
    keys = {"xml_edition": '"ed3"', "devices": '["6001"]'}
    with_xml = settings(csta(xml="true", **keys))
    assert with_xml == settings(csta("csta-xml", **keys))
    assert with_xml.xml and with_xml.namespace.endswith("/ed3")


def test_the_routing_budget_is_routing_budget_ms_else_the_routing_sections(here: Path) -> None:
    assert settings(CSTA + "[routing]\nbudget_ms = 1500\n").routing_budget == 1.5
    assert (
        settings(csta(routing_budget_ms="10") + "[routing]\nbudget_ms = 1500\n").routing_budget
        == 0.01
    )
    assert settings(csta(routing_budget_ms="5000")).routing_budget == 5.0


def test_password_env_reads_the_environ_mapping(here: Path) -> None:
    text = csta(password_env='"CTILINK_CSTA_PASSWORD"')
    got = settings_with_env(text, {"CTILINK_CSTA_PASSWORD": PASSWORD})
    assert got.password == Secret(PASSWORD)
    assert error(text, environ={}) == (
        "ctilink.toml: switch[0].password_env: environment variable CTILINK_CSTA_PASSWORD is"
        " not set or empty"
    )


def settings_with_env(text: str, environ: dict[str, str]) -> CstaSettings:
    (switch,) = load(text, environ).switches
    assert switch.csta is not None
    return switch.csta


@pytest.mark.parametrize(
    "keys",
    [
        {"host": '"::1"', "port": "1"},
        {"csta_versions": '["versionOne"]', "application_context": '"2.999.1"'},
        {"application_context": '"0.39"', "devices": "[]", "acd_groups": "[]"},
        {"devices": f'["{"9" * 64}", "6001#", "*8"]', "route_points": "[]"},
        {"heartbeat_interval": "1", "heartbeat_timeout": "3600"},
        {"heartbeat_interval": "3600", "heartbeat_timeout": "3600"},
        {"request_timeout": "0.001", "connect_timeout": "1e6"},
        {"reconnect_initial_delay": "30", "reconnect_max_delay": "30"},
    ],
)
def test_limits_accepted(here: Path, keys: dict[str, str]) -> None:
    settings(csta(**keys))


# -- errors -------------------------------------------------------------------------------
CSTA_KEYS = (
    "acd_groups, alcatel_handshake, application_context, connect_timeout, csta_versions,"
    " devices, heartbeat_interval, heartbeat_timeout, host, kind, name, password_env,"
    " password_file, port, reconnect_initial_delay, reconnect_max_delay, request_timeout,"
    " route_points, routing_budget_ms, tenant, user, xml, xml_application_session,"
    " xml_edition"
)
CSTA_XML_KEYS = CSTA_KEYS.replace(" xml,", "")
HOST = "expected a hostname or IP address, got"
PORT = "expected an integer from 1 to 65535, got"
BOOLEAN = "expected true or false, got"
VERSION = 'a CSTA version name ("versionOne" ... "versionTwentyfour")'
VERSIONS = f"expected a non-empty array of {VERSION}, got"
OID = 'expected a dotted object identifier (e.g. "1.3.12.0.218"), got'
DEVICE = "device numbers (1-64 printable ASCII characters, no spaces)"
HEARTBEAT = "expected a number >= 1 and <= 3600, got"
POSITIVE = "expected a number > 0, got"
BUDGET = "expected an integer from 10 to 5000, got"
BER_ONLY = 'only for a BER link (kind "csta"); leave it out'
XML_ONLY = 'only for an XML link (kind "csta-xml", or xml = true); leave it out'

# (id, key, TOML value, message after "switch[0].<key>: ")
VALUE_ERRORS = [
    ("host with a space", "host", '"pbx example"', f'{HOST} "pbx example"'),
    ("host a url", "host", '"tcp://pbx:2555"', f'{HOST} "tcp://pbx:2555"'),
    ("port zero", "port", "0", f"{PORT} 0"),
    ("port too big", "port", "65536", f"{PORT} 65536"),
    ("port string", "port", '"2555"', f'{PORT} "2555"'),
    ("xml a string", "xml", '"yes"', f'{BOOLEAN} "yes"'),
    ("alcatel an integer", "alcatel_handshake", "1", f"{BOOLEAN} 1"),
    (
        "version unknown",
        "csta_versions",
        '["versionFive", "v6"]',
        f'[1]: expected {VERSION}, got "v6"',
    ),
    (
        "version in capitals",
        "csta_versions",
        '["VersionFive"]',
        f'[0]: expected {VERSION}, got "VersionFive"',
    ),
    ("version a number", "csta_versions", "[5]", f"[0]: expected {VERSION}, got 5"),
    ("versions empty", "csta_versions", "[]", f"{VERSIONS} []"),
    ("versions a string", "csta_versions", '"versionFive"', f'{VERSIONS} "versionFive"'),
    (
        "versions duplicate",
        "csta_versions",
        '["versionFive", "versionFive"]',
        '[1]: duplicate "versionFive" (also at index 0)',
    ),
    ("oid one arc", "application_context", '"1"', f'{OID} "1"'),
    ("oid letters", "application_context", '"1.3.x"', f'{OID} "1.3.x"'),
    ("oid first arc", "application_context", '"3.1"', f'{OID} "3.1"'),
    ("oid second arc", "application_context", '"1.40"', f'{OID} "1.40"'),
    ("oid leading zero", "application_context", '"1.03"', f'{OID} "1.03"'),
    ("oid empty arc", "application_context", '"1..3"', f'{OID} "1..3"'),
    ("oid an array", "application_context", "[1, 3]", f"{OID} an array"),
    ("device empty", "devices", '["6001", ""]', f'[1]: expected {DEVICE}, got ""'),
    ("device with a space", "devices", '["60 01"]', f'[0]: expected {DEVICE}, got "60 01"'),
    (
        "device not ascii",
        "acd_groups",
        '["supp\u00f6rt"]',
        f'[0]: expected {DEVICE}, got "supp\\u00f6rt"',
    ),
    (
        "device too long",
        "route_points",
        f'["{"8" * 65}"]',
        f'[0]: expected {DEVICE}, got "{"8" * 57}..."',
    ),
    ("devices a string", "devices", '"6001"', f'expected an array of {DEVICE}, got "6001"'),
    ("devices duplicate", "devices", '["6001", "6001"]', '[1]: duplicate "6001" (also at index 0)'),
    ("heartbeat below 1", "heartbeat_interval", "0.5", f"{HEARTBEAT} 0.5"),
    ("heartbeat too long", "heartbeat_interval", "3601", f"{HEARTBEAT} 3601"),
    ("heartbeat timeout zero", "heartbeat_timeout", "0", f"{HEARTBEAT} 0"),
    ("request_timeout zero", "request_timeout", "0", f"{POSITIVE} 0"),
    ("request_timeout nan", "request_timeout", "nan", f"{POSITIVE} nan"),
    ("connect_timeout negative", "connect_timeout", "-1", f"{POSITIVE} -1"),
    ("connect_timeout boolean", "connect_timeout", "true", f"{POSITIVE} true"),
    ("initial delay zero", "reconnect_initial_delay", "0", f"{POSITIVE} 0"),
    ("max delay inf", "reconnect_max_delay", "inf", f"{POSITIVE} inf"),
    ("budget too small", "routing_budget_ms", "9", f"{BUDGET} 9"),
    ("budget too big", "routing_budget_ms", "5001", f"{BUDGET} 5001"),
    ("budget in seconds", "routing_budget_ms", "0.3", f"{BUDGET} 0.3"),
    ("password file missing", "password_file", '"nope"', "file not found: {here}/nope"),
    (
        "password env bad name",
        "password_env",
        '"1X"',
        'expected an environment variable name, got "1X"',
    ),
]


@pytest.mark.parametrize(
    ("name", "value", "expected"), [e[1:] for e in VALUE_ERRORS], ids=[e[0] for e in VALUE_ERRORS]
)
def test_csta_value_errors(here: Path, name: str, value: str, expected: str) -> None:
    separator = "" if expected.startswith("[") else ": "
    message = expected.format(here=here)
    assert error(csta(**{name: value})) == f"ctilink.toml: switch[0].{name}{separator}{message}"


# (id, file text, message after "ctilink.toml: ")
ERRORS = [
    (
        "host missing",
        csta(host=None),
        "switch[0].host: missing (expected a hostname or IP address)",
    ),
    (
        "port missing",
        csta(port=None),
        "switch[0].port: missing (expected an integer from 1 to 65535)",
    ),
    (
        "heartbeat timeout below the interval",
        csta(heartbeat_interval="20", heartbeat_timeout="10"),
        "switch[0].heartbeat_timeout: must be at least heartbeat_interval (20.0), got 10.0",
    ),
    (
        "heartbeat interval above the default timeout",
        csta(heartbeat_interval="90"),
        "switch[0].heartbeat_timeout: must be at least heartbeat_interval (90.0), got 60.0",
    ),
    (
        "reconnect max below the initial delay",
        csta(reconnect_initial_delay="5", reconnect_max_delay="1"),
        "switch[0].reconnect_max_delay: must be at least reconnect_initial_delay (5.0), got 1.0",
    ),
    (
        "xml edition",
        csta("csta-xml", xml_edition='"ed5"'),
        'switch[0].xml_edition: expected one of "ed3", "ed4", got "ed5"',
    ),
    ("edition on BER", csta(xml_edition='"ed4"'), f"switch[0].xml_edition: {XML_ONLY}"),
    (
        "session on BER",
        csta(xml_application_session="false"),
        f"switch[0].xml_application_session: {XML_ONLY}",
    ),
    ("user on BER", csta(user='"app"'), f"switch[0].user: {XML_ONLY}"),
    (
        "alcatel on XML",
        csta("csta-xml", alcatel_handshake="true"),
        f"switch[0].alcatel_handshake: {BER_ONLY}",
    ),
    (
        "versions on XML",
        csta(xml="true", csta_versions='["versionFive"]'),
        f"switch[0].csta_versions: {BER_ONLY}",
    ),
    (
        "context on XML",
        csta("csta-xml", application_context='"1.3"'),
        f"switch[0].application_context: {BER_ONLY}",
    ),
    (
        "password on XML",
        csta("csta-xml", password_file='"csta.password"'),
        f"switch[0].password_file: {BER_ONLY}",
    ),
    (
        "user without a session",
        csta("csta-xml", user='"app"'),
        "switch[0].user: is the application id of StartApplicationSession: only with"
        " xml_application_session = true",
    ),
    (
        "user with a space",
        csta("csta-xml", user='"my app"', xml_application_session="true"),
        'switch[0].user: expected 1-80 characters without whitespace, got "my app"',
    ),
    (
        "password twice",
        csta(password_file='"csta.password"', password_env='"CTILINK_CSTA_PASSWORD"'),
        "switch[0].password_env: conflicts with password_file: give the password one way",
    ),
    (
        "xml on csta-xml",
        csta("csta-xml", xml="true"),
        'switch[0].xml: kind "csta-xml" is always XML: leave xml out',
    ),
    (
        "routing_budget",
        csta(routing_budget="0.3"),
        "switch[0].routing_budget: the routing budget is routing_budget_ms (default: [routing]"
        " budget_ms)",
    ),
    (
        "unknown key",
        csta(heartbeat="5"),
        f"switch[0].heartbeat: unknown key (expected one of {CSTA_KEYS})",
    ),
    (
        "unknown key on csta-xml",
        csta("csta-xml", secret_file='"csta.password"'),
        f"switch[0].secret_file: unknown key (expected one of {CSTA_XML_KEYS})",
    ),
    (
        "route points need a default route",
        csta(route_points='["800"]'),
        "routing: switch[0] (csta1) answers CSTA route requests (route_points), so a default"
        " route is needed: set default_queue or default_agent",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_csta_errors(here: Path, text: str, expected: str) -> None:
    assert error(text, environ={"CTILINK_CSTA_PASSWORD": PASSWORD}) == f"ctilink.toml: {expected}"


@pytest.mark.parametrize("kind", ["csta", "csta-xml"])
def test_inline_password_is_refused_without_showing_it(here: Path, kind: str) -> None:
    message = error(csta(kind, password=f'"{PASSWORD}"'))
    assert message == (
        "ctilink.toml: switch[0].password: an inline password is not accepted: use"
        " password_file or password_env"
    )
    assert PASSWORD not in message


def test_empty_password_file(here: Path) -> None:
    (here / "csta.password").write_text("\n")
    assert error(csta(password_file='"csta.password"')) == (
        f"ctilink.toml: switch[0].password_file: password file is empty: {here}/csta.password"
    )


# -- the example file ---------------------------------------------------------------------
def uncommented_csta() -> str:
    """The example with its CSTA switches (from the third ``#[[switch]]`` on) and its
    default route uncommented: one "#" removed from each of their lines (not from the
    prose between them, "# ...")."""
    lines = EXAMPLE.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line == "#[[switch]]"]
    start = starts[1]
    before = [line[1:] if re.match(r"#default_queue = ", line) else line for line in lines[:start]]
    rest = [line if line.startswith("# ") else line[1:] for line in lines[start:]]
    return "\n".join(before + rest) + "\n"


def test_example_csta_switches_validate(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    text = uncommented_csta().replace("/etc/ctilink/csta.password", str(tmp_path / "pw"))
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    config = load_config(copy_example(tmp_path, text), environ={})
    (_, ber, xml) = config.switches
    assert (ber.name, ber.kind, xml.name, xml.kind) == ("csta1", "csta", "csta2", "csta-xml")
    assert ber.csta == CstaSettings(
        host="pbx2.example.net",
        port=2555,
        devices=("6001", "6002"),
        acd_groups=("support",),
        route_points=("800",),
    )
    assert xml.csta == CstaSettings(
        host="pbx3.example.net",
        port=1040,
        xml=True,
        devices=("6001", "6002"),
        acd_groups=("support",),
    )
    # Every key of CstaSettings is documented in the CSTA examples, with a comment above it
    # (the budget as routing_budget_ms, the password as password_file and password_env).
    lines = EXAMPLE.read_text().splitlines()
    lines = lines[[i for i, line in enumerate(lines) if line == "#[[switch]]"][1] :]
    keys = [f.name for f in dataclasses.fields(CstaSettings)]
    keys = [k for k in keys if k not in ("routing_budget", "password")]
    for key in [*keys, "routing_budget_ms", "password_file", "password_env"]:
        at = [i for i, line in enumerate(lines) if line.lstrip("#").startswith(f"{key} = ")]
        assert at, f"{key} is not in the example"
        assert lines[at[0] - 1].startswith("## "), f"{key} has no comment above it"


def test_only_a_csta_switch_loads_the_csta_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = config_dir(tmp_path, monkeypatch)
    code = (
        "import sys; from ctilink.config import load_config; load_config(sys.argv[1]);"
        " print('ctilink.adapters.csta' in sys.modules, 'twisted.internet.reactor' in sys.modules)"
    )
    for text, expected in ((NO_AUTH, "False False"), (CSTA + NO_AUTH, "True False")):
        (here / "ctilink.toml").write_text(text)
        done = subprocess.run(
            [sys.executable, "-c", code, "ctilink.toml"],
            check=True,
            cwd=here,
            capture_output=True,
            text=True,
        )
        assert done.stdout.split() == expected.split()
