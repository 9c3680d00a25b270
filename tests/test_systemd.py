"""The systemd unit file and the sd_notify client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ctilink.systemd import Notifier

UNIT = Path(__file__).parent.parent / "contrib" / "systemd" / "ctilink.service"


def test_the_unit_file_verifies() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package systemd; .ci/run installs it)"
    done = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_file_says_what_a_careful_packager_would() -> None:
    lines = {
        line.partition("=")[0]: line.partition("=")[2]
        for line in UNIT.read_text().splitlines()
        if "=" in line and line[0] != "#"
    }
    assert lines["Type"] == "notify" and lines["Restart"] == "on-failure"
    assert lines["WatchdogSec"] and lines["User"] == "ctilink"
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert lines[hardening] == "yes"
    assert lines["ProtectSystem"] == "strict"
    assert lines["StateDirectory"] == lines["LogsDirectory"] == "ctilink"
    assert lines["LoadCredential"].startswith("ami.secret:")  # secrets as credentials ...
    assert not any(
        "SECRET" in key.upper() or "PASSWORD" in value.upper() for key, value in lines.items()
    )  # ... never in the unit file
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_notifier_sends_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
        assert notifier.watchdog_interval == 5.0
        notifier.ready("pbx up")
        notifier.watchdog()
        notifier.reloading()
        notifier.stopping()
        got = [sock.recv(1024).decode() for _ in range(4)]
        notifier.close()
    assert got[0] == "READY=1\nSTATUS=pbx up"
    assert got[1] == "WATCHDOG=1"
    assert got[2].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert got[3] == "STOPPING=1"


def test_abstract_namespace_socket() -> None:
    name = f"ctilink-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"


def test_without_systemd_nothing_happens() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready()  # no socket: a no-op, no error


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    notifier = Notifier(
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    notifier.ready()
    notifier.watchdog()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
