"""`ctilink demo` as a user runs it: a subprocess, a real WebSocket client, Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests._schemas import validate_wire
from tests.aio import aio_test

URL = re.compile(r"ws://[\d.]+:\d+/events")
TOKEN = re.compile(r"this run's token \(tenant default, control\): (ctl_\S+)")


class Demo:
    def __init__(self, work_dir: Path, *extra: str) -> None:
        script = Path(sys.executable).parent / "ctilink"
        self.process = subprocess.Popen(
            [str(script), "demo", "--dir", str(work_dir), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.token = ""
        self.bare_url = self._wait_for_url()
        self.url = f"{self.bare_url}?access_token={self.token}"

    def _wait_for_url(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            token = TOKEN.search(line)
            if token:
                self.token = token.group(1)
            match = URL.search(line)
            if match and self.token:
                return match.group(0)
        self.process.kill()
        raise AssertionError(f"demo did not announce its URL: {self.process.stderr.read()}")  # type: ignore[union-attr]

    def interrupt(self, timeout: float = 20) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path / "work", "--speed", "10")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.communicate()


def receive(ws: Any, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(count)]


def test_client_gets_snapshot_then_live_events(demo: Demo, tmp_path: Path) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(demo.bare_url)  # no token
    assert refused.value.response.status_code == 401
    with connect(demo.url) as ws:
        snapshot = json.loads(ws.recv(timeout=30))
        validate_wire(snapshot)
        assert snapshot["type"] == "snapshot"
        events = receive(ws, 25)
    for event in events:
        validate_wire(event)
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 26))
    assert {event["switch"] for event in events} == {"demo"}
    types = {event["type"] for event in events}
    assert {"agent_logged_on", "delivered", "queued", "established", "call_cleared"} <= types
    # The demo's database is seeded: the customer calling in inbound-answered is known.
    pops = [event for event in events if event["type"] == "screen_pop"]
    assert pops and pops[0]["customer"]["known"] is True
    assert pops[0]["customer"]["name"] == "Alice Customer"

    status, err = demo.interrupt()
    assert status == 0, err
    assert "ctilink stopped" in err
    assert "Traceback" not in err
    database = tmp_path / "work" / "ctilink.sqlite3"
    with sqlite3.connect(database) as db:
        stored = db.execute("SELECT max(seq), count(*) FROM event_log").fetchone()
    assert stored[0] >= seqs[-1] and stored[1] == stored[0]


def test_numbering_continues_after_a_restart(tmp_path: Path) -> None:
    first = Demo(tmp_path / "work", "--speed", "20")
    with connect(first.url) as ws:
        json.loads(ws.recv(timeout=30))
        last = receive(ws, 10)[-1]["seq"]
    assert first.interrupt()[0] == 0
    with sqlite3.connect(tmp_path / "work" / "ctilink.sqlite3") as db:
        (stored,) = db.execute("SELECT max(seq) FROM event_log").fetchone()
    assert stored >= last  # everything sent was stored before the first run ended
    second = Demo(tmp_path / "work", "--speed", "20")
    try:
        with connect(second.url) as ws:
            snapshot = json.loads(ws.recv(timeout=30))
            event = json.loads(ws.recv(timeout=30))
        assert snapshot["seq"] >= stored  # numbering continued after the stored events
        assert event["seq"] == snapshot["seq"] + 1
    finally:
        assert second.interrupt()[0] == 0


def test_port_in_use_is_a_clear_failure(tmp_path: Path) -> None:
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        script = Path(sys.executable).parent / "ctilink"
        done = subprocess.run(
            [str(script), "demo", "--dir", str(tmp_path / "w"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        blocker.close()
    assert done.returncode == 1
    assert "could not start" in done.stderr and str(port) in done.stderr


READY = re.compile(r"ctilink ready: event socket on ([\d.]+):(\d+)")


def test_run_with_a_config_file_until_sigterm(tmp_path: Path) -> None:
    from tests.conftest import TRACES

    config = tmp_path / "ctilink.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n'
        '[event_socket]\nlisten = "tcp:port=0:interface=127.0.0.1"\nauth = "none"\n'
        '[[switch]]\nname = "site-a"\nkind = "replay"\nspeed = 5\n'
        f'traces = ["{TRACES / "agent-login.jsonl"}", "{TRACES / "inbound-answered.jsonl"}"]\n'
    )
    script = Path(sys.executable).parent / "ctilink"
    process = subprocess.Popen(
        [str(script), "run", "-c", str(config)], stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            ready = READY.search(line)
            if ready:
                break
        else:
            raise AssertionError("the daemon never said it was ready")
        with connect(f"ws://{ready.group(1)}:{ready.group(2)}/events") as ws:
            snapshot = json.loads(ws.recv(timeout=30))
            seqs = []
            while True:
                event = json.loads(ws.recv(timeout=30))
                seqs.append(event["seq"])
                if event["type"] == "call_cleared":  # the last call of the two traces
                    break
        assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(seqs)))
        assert event["switch"] == "site-a"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        with sqlite3.connect(tmp_path / "state" / "ctilink.sqlite3") as db:
            types = [row[0] for row in db.execute("SELECT type FROM event_log ORDER BY seq")]
        assert types[:2] == ["link_up", "agent_logged_on"]
        assert types.count("call_cleared") == 1 and types[-1] == "link_down"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@aio_test
async def test_the_demo_desktop_pops_the_seeded_customer_in_a_browser(demo: Demo) -> None:
    """What a user of `make demo` does: open the desktop page, sign in as agent 6001 with the
    printed token, and see the caller of the looping trace popped with the seeded record."""
    from playwright.async_api import async_playwright, expect

    from tests.test_desktop_browser import chromium

    page_url = demo.bare_url.replace("ws://", "http://").replace("/events", "/desktop/")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium()))
        try:
            page = await browser.new_page()
            page.set_default_timeout(30_000)
            await page.goto(page_url)
            await page.get_by_label("Access token").fill(demo.token)
            await page.get_by_label("Agent id").fill("6001")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator("#connection")).to_have_text("Connected")
            # However far the loop is, it comes round to the inbound call.
            await expect(page.locator("#customer-name")).to_have_text(
                "Alice Customer", timeout=60_000
            )
            await expect(page.locator("#customer-account")).to_have_text("ACME-001")
            await expect(page.locator("#history tr")).not_to_have_count(0)  # seeded history
        finally:
            await browser.close()
    status, err = demo.interrupt()
    assert status == 0, err
