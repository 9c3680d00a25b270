"""`ctilink record` against a running daemon: a tap that rotates, replays and never leaks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ctilink.record import Recording
from tests.conftest import TRACES
from tests.test_operations import Daemon

SCRIPT = Path(sys.executable).parent / "ctilink"


def ctilink(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def looping_config(tmp_path: Path) -> Path:
    config = tmp_path / "ctilink.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n'
        '[event_socket]\nlisten = "tcp:port=0:interface=127.0.0.1"\nauth = "none"\n'
        '[[switch]]\nname = "pbx"\nkind = "replay"\nspeed = 10\nloop = true\n'
        f'traces = ["{TRACES / "agent-login.jsonl"}", "{TRACES / "inbound-answered.jsonl"}"]\n'
    )
    return config


def test_record_rotates_and_every_file_replays(tmp_path: Path) -> None:
    config = looping_config(tmp_path)
    daemon = Daemon(config)
    out = tmp_path / "rec.jsonl"
    try:
        done = ctilink(
            "record",
            "--switch",
            "pbx",
            "--out",
            str(out),
            "-c",
            str(config),
            "--max-bytes",
            "30000",
            "--keep",
            "2",
            "--duration",
            "5",
        )
        assert done.returncode == 0, done.stderr
        assert "records" in done.stderr and "rotations" in done.stderr
        assert daemon.get("/healthz")[0] == 200  # the daemon did not notice
    finally:
        status, _ = daemon.stop()
    assert status == 0
    files = [out, out.with_name("rec.jsonl.1"), out.with_name("rec.jsonl.2")]
    assert all(path.exists() for path in files)
    assert not out.with_name("rec.jsonl.3").exists()  # --keep 2
    types: set[str] = set()
    for path in files:
        first = json.loads(path.read_text().splitlines()[0])
        assert first["data"].startswith("Asterisk Call Manager/")  # replays on its own
        replayed = ctilink("replay", str(path))
        assert replayed.returncode == 0, replayed.stderr
        types |= {json.loads(line)["type"] for line in replayed.stdout.splitlines()}
    assert {"link_up", "agent_logged_on"} <= types


def test_record_refuses_an_unknown_switch_and_a_stopped_daemon(tmp_path: Path) -> None:
    config = looping_config(tmp_path)
    nothing = ctilink(
        "record",
        "--switch",
        "pbx",
        "--out",
        str(tmp_path / "x.jsonl"),
        "-c",
        str(config),
        "--duration",
        "1",
    )
    assert nothing.returncode == 1
    assert "cannot reach the daemon" in nothing.stderr
    daemon = Daemon(config)
    try:
        wrong = ctilink(
            "record",
            "--switch",
            "nope",
            "--out",
            str(tmp_path / "y.jsonl"),
            "-c",
            str(config),
            "--duration",
            "1",
        )
        assert wrong.returncode == 1
        assert "no switch named 'nope'" in wrong.stderr
    finally:
        daemon.stop()


def test_a_recording_never_ends_or_rotates_inside_a_message(tmp_path: Path) -> None:
    def rx(data: str) -> bytes:
        return json.dumps({"t": 0.0, "dir": "rx", "data": data}).encode() + b"\n"

    banner = rx("Asterisk Call Manager/11.0.0\r\n")
    whole = rx("Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n")
    half, rest = rx("Event: Hangup\r\nChan"), rx("nel: PJSIP/201-1\r\n\r\n")
    recording = Recording(tmp_path / "r.jsonl", max_bytes=len(banner) + len(whole) + 1, keep=2)
    for line in (banner, whole, half, rest, whole, half):
        recording.write(line)
    recording.close()
    # Every file holds whole messages after the banner: the message split over two reads
    # went into one file, and the unfinished one at the end was left out and counted.
    assert (tmp_path / "r.jsonl.2").read_bytes() == banner + whole
    assert (tmp_path / "r.jsonl.1").read_bytes() == banner + half + rest
    assert (tmp_path / "r.jsonl").read_bytes() == banner + whole
    assert (recording.records, recording.rotations, recording.cut) == (5, 2, 1)
    for path in (tmp_path / "r.jsonl", tmp_path / "r.jsonl.1", tmp_path / "r.jsonl.2"):
        assert ctilink("replay", str(path)).returncode == 0
