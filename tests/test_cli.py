"""The ``ctilink`` command: replay output, config checking, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ctilink.cli import main
from tests._schemas import validate_wire
from tests.captures import cut_capture
from tests.conftest import AMI_TRACES, TRACES
from tests.replaying import replay_files

FIXTURE_TRACES = AMI_TRACES


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).parent / "ctilink"
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"},
    )


@pytest.mark.parametrize("trace", FIXTURE_TRACES, ids=lambda p: p.name)
def test_every_fixture_replay_matches_the_schemas(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(trace)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines, "a trace with calls or agents must produce events"
    events = [json.loads(line) for line in lines]
    for event in events:
        validate_wire(event)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_replay_prints_what_the_adapter_produces(capsys: pytest.CaptureFixture[str]) -> None:
    trace = TRACES / "inbound-answered.jsonl"
    start = "2026-11-22T13:53:20Z"
    assert main(["replay", str(trace), "--switch", "pbx", "--start-time", start]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = replay_files(trace).wire
    strip = lambda e: {k: v for k, v in e.items() if k != "call_id"}  # noqa: E731
    assert [strip(e) for e in printed] == [strip(e) for e in expected]


def test_console_script_replays_a_pcap() -> None:
    done = run_cli("replay", str(TRACES / "inbound-answered.pcapng"), "--switch", "site-a")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {e["switch"] for e in events} == {"site-a"}
    assert [e["type"] for e in events if e["type"].endswith("cleared")][-1] == "call_cleared"


def test_real_time_replay_gives_the_same_events() -> None:
    trace = str(TRACES / "agent-login.jsonl")
    fast = run_cli("replay", trace, "--start-time", "2026-11-22T00:00:00Z")
    paced = run_cli("replay", trace, "--start-time", "2026-11-22T00:00:00Z", "--speed", "20")
    assert fast.returncode == paced.returncode == 0, paced.stderr
    assert fast.stdout == paced.stdout


def test_bad_trace_is_refused_before_any_event(tmp_path: Path) -> None:
    good = (TRACES / "agent-login.jsonl").read_text().splitlines()
    bad = tmp_path / "broken.jsonl"
    bad.write_text("\n".join([*good[:8], '{"t": 1.0, "dir": "rx", "data": ', *good[9:]]) + "\n")
    done = run_cli("replay", str(TRACES / "inbound-answered.jsonl"), str(bad))
    assert done.returncode == 2
    assert done.stdout == ""  # nothing half-emitted
    assert "broken.jsonl: line 9" in done.stderr


def test_trace_that_is_not_ami_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "not-ami.jsonl"
    bad.write_text(
        '{"t": 0.0, "dir": "rx", "data": "SSH-2.0-OpenSSH_9.2\\r\\n"}\n'
        '{"t": 0.1, "dir": "rx", "data": "Event: X\\r\\n\\r\\n"}\n'
    )
    done = run_cli("replay", str(bad))
    assert done.returncode == 2
    assert "not-ami.jsonl: line 1: not a valid AMI stream" in done.stderr
    assert "banner" in done.stderr


def test_trace_ending_mid_message_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cut.jsonl"
    bad.write_text(
        '{"t": 0.0, "dir": "rx", "data": "Asterisk Call Manager/11.0.0\\r\\n"}\n'
        '{"t": 0.1, "dir": "rx", "data": "Event: Newchannel\\r\\nChannel: X"}\n'
    )
    done = run_cli("replay", str(bad))
    assert done.returncode == 2
    assert "cut.jsonl: line 2" in done.stderr and "middle of a message" in done.stderr


def test_missing_trace_file(tmp_path: Path) -> None:
    done = run_cli("replay", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2
    assert "nope.jsonl" in done.stderr


def test_check_config(tmp_path: Path) -> None:
    config = tmp_path / "ctilink.toml"
    config.write_text(
        '[event_socket]\nauth = "none"\n'
        f'[[switch]]\nname = "pbx1"\nkind = "replay"\ntraces = ["{TRACES / "agent-login.jsonl"}"]\n'
    )
    done = run_cli("check-config", str(config))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout and "pbx1 (replay)" in done.stdout
    assert 'auth = "none"' in done.stderr and "sees every event" in done.stderr


def test_check_config_wants_a_token_file_by_default(tmp_path: Path) -> None:
    config = tmp_path / "ctilink.toml"
    config.write_text(
        f'[[switch]]\nname = "pbx1"\nkind = "replay"\ntraces = ["{TRACES / "agent-login.jsonl"}"]\n'
    )
    done = run_cli("check-config", str(config))
    assert done.returncode == 2
    assert 'event_socket.tokens_file: required when auth = "token"' in done.stderr


def test_check_config_bad_value_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "ctilink.toml"
    config.write_text('[[switch]]\nname = "pbx1"\nkind = "asterix"\n')
    done = run_cli("check-config", str(config))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "ctilink.toml" in line and "switch[0].kind" in line and "asterix" in line


def test_usage_error_exit_2() -> None:
    done = run_cli("replay")
    assert done.returncode == 2
    assert "TRACE" in done.stderr


# -- a capture that began after the AMI connection opened (mid-stream) ----------------------
CAPTURE = TRACES / "inbound-answered.pcapng"


def replayed(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["replay", str(path), "--switch", "pbx"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def without_links(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Call and agent events, without what differs from one replay to the next."""
    return [
        {k: v for k, v in e.items() if k not in ("seq", "call_id")}
        for e in events
        if not e["type"].startswith("link_")
    ]


@pytest.mark.parametrize(
    ("drop", "trim"),
    [
        (3, 0),  # the handshake only
        (11, 0),  # up to the Originate: banner, login and the events after it are lost
        (13, 0),  # up to the call's first Newchannel, which begins the capture
        (13, 40),  # into that Newchannel: the capture begins with the tail of a message
    ],
)
def test_a_capture_joined_before_a_call_replays_that_call_as_the_whole_capture_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], drop: int, trim: int
) -> None:
    whole = replayed(CAPTURE, capsys)
    cut = replayed(cut_capture(CAPTURE, tmp_path / "cut.pcapng", drop, trim=trim), capsys)
    assert "joined mid-session" not in whole[0]["detail"]
    assert cut[0]["type"] == "link_up" and "joined mid-session" in cut[0]["detail"]
    assert cut[-1]["type"] == "link_down"
    assert any(e["type"] == "call_cleared" for e in cut)
    assert without_links(cut) == without_links(whole)


def test_a_call_in_progress_when_the_capture_began_is_not_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Packet 95 on: agent 6001 and the caller are talking; then they hang up.
    events = replayed(cut_capture(CAPTURE, tmp_path / "cut.pcapng", 95), capsys)
    assert [e["type"] for e in events] == ["link_up", "link_down"]
    assert "joined mid-session" in events[0]["detail"]


def test_a_call_met_during_its_setup_is_not_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Packet 32 on: the call is on its way to the queue; its channels' Newchannel is lost.
    events = replayed(cut_capture(CAPTURE, tmp_path / "cut.pcapng", 31), capsys)
    assert [e for e in events if "call_id" in e] == []


CSTA_TRACE = Path(__file__).parent / "fixtures" / "csta" / "inbound-answered.jsonl"


def test_a_csta_trace_is_recognised_and_replays_one_answered_call() -> None:
    auto = run_cli("replay", str(CSTA_TRACE), "--start-time", "2026-11-22T00:00:00Z")
    forced = run_cli(
        "replay", str(CSTA_TRACE), "--protocol", "csta", "--start-time", "2026-11-22T00:00:00Z"
    )
    assert auto.returncode == forced.returncode == 0, auto.stderr
    strip = lambda e: {k: v for k, v in e.items() if k != "call_id"}  # noqa: E731
    events = [json.loads(line) for line in auto.stdout.splitlines()]
    assert [strip(e) for e in events] == [
        strip(json.loads(line)) for line in forced.stdout.splitlines()
    ]
    for event in events:
        validate_wire(event)
    calls = {e["call_id"] for e in events if "call_id" in e}
    assert len(calls) == 1
    types = [e["type"] for e in events]
    assert types.index("delivered") < types.index("established") < types.index("call_cleared")


def test_an_ami_trace_read_as_csta_is_refused_clearly() -> None:
    done = run_cli("replay", "--protocol", "csta", str(TRACES / "inbound-answered.jsonl"))
    assert done.returncode == 2
    assert "not a valid CSTA stream" in done.stderr
    assert done.stdout == ""


def test_simulate_csta_listens_and_answers_an_association() -> None:
    import socket

    from ctilink.csta import acse
    from ctilink.csta.framing import NEED_DATA, Framer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = Path(sys.executable).parent / "ctilink"
    with subprocess.Popen(
        [str(script), "simulate", "csta", "--listen", str(port), "--once"],
        stdout=subprocess.PIPE,
        text=True,
    ) as sim:
        try:
            assert sim.stdout is not None
            assert f"listening on 127.0.0.1:{port}" in sim.stdout.readline()
            framer = Framer()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as link:
                link.sendall(framer.frame(acse.encode(acse.AssociateRequest())))
                reply = Framer(role="server")
                while (pdu := reply.next_pdu()) is NEED_DATA:
                    reply.receive_data(link.recv(4096))
            assert isinstance(pdu, bytes)
            assert isinstance(acse.decode(pdu), acse.AssociateResponse)
        finally:
            sim.terminate()


def test_token_new_prints_the_secret_once_and_appends_only_its_digest(tmp_path: Path) -> None:
    from ctilink.screenpop.auth import Scope, TokenStore, hash_token

    tokens = tmp_path / "tokens.toml"
    first = run_cli("token", "new", "--id", "crm", "--tenant", "acme", "--file", str(tokens))
    assert first.returncode == 0, first.stderr
    secret = first.stdout.strip()
    assert secret.startswith("ctl_") and secret not in tokens.read_text()
    assert "added to" in first.stderr and secret not in first.stderr
    assert tokens.stat().st_mode & 0o777 == 0o600
    second = run_cli(
        "token", "new", "--id", "desk-6001", "--tenant", "acme", "--scope", "control",
        "--agents", "6001", "--expires", "2030-01-01T00:00:00Z", "--file", str(tokens),
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    store = TokenStore.load(tokens)  # what the daemon reads
    crm = store.authenticate(secret, now=0)
    desk = store.authenticate(second.stdout.strip(), now=0)
    assert (crm.id, crm.tenant, crm.scope, crm.agents) == ("crm", "acme", Scope.READ, None)
    assert (desk.scope, desk.agents, desk.expires) == (Scope.CONTROL, {"6001"}, 1893456000.0)
    assert desk.digest == hash_token(second.stdout.strip())

    again = run_cli("token", "new", "--id", "crm", "--tenant", "acme", "--file", str(tokens))
    assert again.returncode == 2 and "appears twice" in again.stderr
    assert len(TokenStore.load(tokens)) == 2  # nothing written


def test_token_new_without_a_file_prints_the_entry_on_stderr() -> None:
    done = run_cli("token", "new", "--id", "crm", "--tenant", "acme", "--queues", "support")
    assert done.returncode == 0, done.stderr
    assert 'id = "crm"' in done.stderr and 'queues = ["support"]' in done.stderr
    assert done.stdout.strip().startswith("ctl_") and done.stdout.strip() not in done.stderr
