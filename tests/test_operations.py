"""Operating ctilink as a service: systemd notifications, metrics, health, reload, stop.

The daemon runs as a subprocess the way systemd runs it: with a NOTIFY_SOCKET (a real
datagram socket this test owns) and a WATCHDOG_USEC, a configuration file, and signals.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ctilink.screenpop.auth import Scope, Token, new_token
from tests.conftest import TRACES

pytest_plugins = ["tests.store_fixtures"]

READY_LINE = re.compile(r"ctilink ready: event socket on ([\d.]+):(\d+)")
DB_PASSWORD = "Not-In-Any-Log-7331"
CRM = new_token("crm", "default", Scope.READ)  # (secret, token)
DESK = new_token("desk", "default", Scope.CONTROL, agents=["6001"])


class Daemon:
    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        script = Path(sys.executable).parent / "ctilink"
        self.process = subprocess.Popen(
            [str(script), "run", "-c", str(config)],
            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
        )  # fmt: skip
        self.log: list[str] = []
        self.base = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            ready = READY_LINE.search(line)
            if ready:
                return f"http://{ready.group(1)}:{ready.group(2)}"
        raise AssertionError("the daemon ended before it was ready:\n" + "".join(self.log))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def read_log_until(self, pattern: str, timeout: float = 10) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stderr:
            self.log.append(line)
            if re.search(pattern, line):
                return line
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no log line matching {pattern!r}:\n" + "".join(self.log))

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(sig)
        _, rest = self.process.communicate(timeout=20)
        self.log.append(rest)
        return self.process.returncode, time.monotonic() - started


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def notifications(sock: socket.socket, until: str, limit: int = 200) -> list[str]:
    seen: list[str] = []
    while len(seen) < limit:
        message = sock.recv(4096).decode()
        seen.append(message)
        if until in message:
            return seen
    raise AssertionError(f"no {until!r} among {seen}")


def write_tokens(path: Path, *tokens: Token) -> None:
    path.write_text("\n".join(token.to_toml() for token in tokens))


def write_config(
    path: Path, *, log_level: str = "info", queue: str = "support", database: str = ""
) -> None:
    """A replayed switch (tenant default) and the token file ``tokens.toml`` beside it."""
    tokens = path.with_name("tokens.toml")
    if not tokens.exists():
        write_tokens(tokens, CRM[1])
    path.write_text(
        f'[daemon]\nstate_dir = "state"\nlog_level = "{log_level}"\n'
        f"{database}"
        '[event_socket]\nlisten = "tcp:port=0:interface=127.0.0.1"\n'
        f'tokens_file = "{tokens}"\n'
        f'[routing]\ndefault_queue = "{queue}"\n'
        '[[switch]]\nname = "pbx"\nkind = "replay"\nspeed = 0\n'
        f'traces = ["{TRACES / "inbound-answered.jsonl"}"]\n'
    )


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_text = head.partition("{")
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric_name == name and got == wanted:
            return float(value)
    raise AssertionError(f"{name}{{{wanted}}} not in /metrics")


def test_a_service_life(tmp_path: Path, notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    config = tmp_path / "ctilink.toml"
    write_config(config)
    daemon = Daemon(config, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    clients = contextlib.ExitStack()
    try:
        seen = notifications(sock, "READY=1")
        assert any("STATUS=" in m for m in seen)
        assert len([m for m in notifications(sock, "WATCHDOG=1") if "WATCHDOG=1" in m]) >= 1
        # ... and again 0.2 s later: the watchdog ping is periodic.
        assert "WATCHDOG=1" in notifications(sock, "WATCHDOG=1")[-1]

        # The replayed trace has run: its call, its agent, its queue are counted.
        time.sleep(0.5)
        code, text = daemon.get("/metrics")
        assert code == 200
        assert metric(text, "ctilink_events_in_total", switch="pbx", type="delivered") == 2
        assert metric(text, "ctilink_events_in_total", switch="pbx", type="call_cleared") == 1
        assert metric(text, "ctilink_link_up", switch="pbx") == 0  # the trace ended
        assert metric(text, "ctilink_queue_calls_waiting", switch="pbx", queue="support") == 0
        assert metric(text, "ctilink_agents", switch="pbx", state="ready") == 1
        assert metric(text, "ctilink_calls_live", switch="pbx") == 0
        assert metric(text, "ctilink_database_up") == 1
        for component in ("event_log", "routing", "audit", "interactions"):
            assert metric(text, "ctilink_database_errors_total", component=component) == 0
        assert metric(text, "ctilink_event_log_written_total") >= 0
        assert metric(text, "ctilink_clients_connected") == 0

        assert daemon.get("/healthz")[0] == 200
        code, body = daemon.get("/")
        assert code == 200
        assert {"events": "/events", "api": "/api/v1", "desktop": "/desktop/"}.items() <= (
            json.loads(body).items()
        )
        code, body = daemon.get("/desktop/")
        assert code == 200 and "<html" in body.lower()
        code, body = daemon.get("/readyz")
        assert code == 503  # the replayed link has ended
        assert json.loads(body) == {"ready": False, "links": {"pbx": "down"}, "database": "up"}

        events = daemon.base.replace("http://", "ws://") + "/events?access_token="
        with pytest.raises(InvalidStatus) as refused:
            connect(events + DESK[0])  # not in the token file yet
        assert refused.value.response.status_code == 401
        crm = clients.enter_context(connect(events + CRM[0]))
        assert json.loads(crm.recv(timeout=5))["type"] == "snapshot"
        with connect(events + CRM[0] + "&since=3") as resumed:  # events 4... from the log
            assert json.loads(resumed.recv(timeout=5))["seq"] == 4
            deadline = time.monotonic() + 10  # counted once it has caught up and gone live
            while metric(text := daemon.get("/metrics")[1], "ctilink_clients_resumed_total") < 1:
                assert time.monotonic() < deadline, "the resumed client never went live"
                time.sleep(0.05)
        assert metric(text, "ctilink_clients_refused_total", status="401") == 1
        assert metric(text, "ctilink_clients_gaps_total") == 0

        write_tokens(config.with_name("tokens.toml"), CRM[1], DESK[1])
        write_config(config, log_level="debug", queue="sales")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.read_log_until("configuration reloaded")
        assert any("RELOADING=1" in m for m in notifications(sock, "READY=1"))
        with connect(events + DESK[0]) as desk:  # the new token works at once ...
            assert json.loads(desk.recv(timeout=5))["type"] == "snapshot"
        with pytest.raises(TimeoutError):
            crm.recv(timeout=0.2)  # ... and the client connected before is still there
        config.write_text("[daemon\nbroken = ")
        daemon.process.send_signal(signal.SIGHUP)
        refused = daemon.read_log_until("reload refused")
        assert "ctilink.toml" in refused and "invalid TOML" in refused
        assert daemon.get("/healthz")[0] == 200  # still serving

        status, took = daemon.stop()
        assert status == 0, "".join(daemon.log)
        assert took < 5
        assert any("STOPPING=1" in m for m in notifications(sock, "STOPPING=1"))
        with pytest.raises(ConnectionClosed) as told:  # clients are told why
            crm.recv(timeout=5)
        assert told.value.rcvd is not None and told.value.rcvd.reason == "ctilink is stopping"
    finally:
        clients.close()
        if daemon.process.poll() is None:
            daemon.process.kill()
    with sqlite3.connect(tmp_path / "state" / "ctilink.sqlite3") as db:
        stored, top = db.execute("SELECT count(*), max(seq) FROM event_log").fetchone()
        history = db.execute("SELECT queue, agent, outcome FROM interactions").fetchall()
    assert stored == top >= 11  # every event written before exit
    assert history == [("support", "6001", "answered")]  # the call's interaction, flushed
    everything = "".join(daemon.log)
    assert "Traceback" not in everything
    assert CRM[0] not in everything and DESK[0] not in everything  # no token is ever logged


def test_no_secret_reaches_the_log(tmp_path: Path, pg_database: str) -> None:
    config = tmp_path / "ctilink.toml"
    write_config(
        config, log_level="debug",
        database=f'[database]\nurl = "postgresql://postgres@127.0.0.1:5432/{pg_database}"\n'
                 'password_env = "CTILINK_DB_PASSWORD"\n',
    )  # fmt: skip
    daemon = Daemon(config, {"CTILINK_DB_PASSWORD": DB_PASSWORD})
    wrong = "ctl_" + "x" * 43
    try:
        assert daemon.get("/healthz")[0] == 200
        events = daemon.base.replace("http://", "ws://") + "/events?access_token="
        with connect(events + CRM[0]) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
        with pytest.raises(InvalidStatus):
            connect(events + wrong)
        request = urllib.request.Request(
            daemon.base + "/api/v1/stats/queues", headers={"Authorization": f"Bearer {DESK[0]}"}
        )
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(request, timeout=5)
        assert unknown.value.code == 401
        status, _ = daemon.stop()
        assert status == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    everything = "".join(daemon.log)
    assert "preparing the database" in everything  # the URL is logged ...
    assert DB_PASSWORD not in everything  # ... never the password
    assert "token" in everything  # tokens are talked about (by id) ...
    assert not any(secret in everything for secret in (CRM[0], DESK[0], wrong))  # never shown


def test_json_logs_one_object_per_line_with_link_changes(tmp_path: Path) -> None:
    config = tmp_path / "ctilink.toml"
    write_config(config)
    text = config.read_text().replace(
        'log_level = "info"', 'log_level = "info"\nlog_format = "json"'
    )
    config.write_text(text)
    daemon = Daemon(config)
    try:
        time.sleep(0.3)
        status, _ = daemon.stop()
        assert status == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    records = [json.loads(line) for line in "".join(daemon.log).splitlines() if line.strip()]
    assert records and all(
        {"time", "level", "logger", "message"} <= set(record) for record in records
    )
    assert any(record["message"].startswith("ctilink ready") for record in records)
    assert {record["level"] for record in records} <= {"debug", "info", "warning"}
