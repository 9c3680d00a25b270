"""`ctilink run` against a (fake) Asterisk: AMI link, FastAGI routing and the event socket
wired together in the real daemon process, as an integrator would run it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import websockets
from twisted.internet import reactor

from tests.aio import aio_test, deferred_result
from tests.conftest import TRACES
from tests.fakeami import FakeAsterisk

READY = re.compile(r"ctilink ready: event socket on ([\d.]+):(\d+)")
SECRET = "integration-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def next_of(ws: Any, kind: str, timeout: float = 20) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == kind:
                return event  # type: ignore[no-any-return]

    return await asyncio.wait_for(find(), timeout)


async def fastagi_request(port: int) -> list[str]:
    """Ask for a route exactly as Asterisk did in the capture; returns our commands."""
    environment = next(
        json.loads(line)["data"]
        for line in (TRACES / "fastagi-route.jsonl").read_text().splitlines()
        if json.loads(line)["dir"] == "rx"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(environment.encode())
    commands = []
    while line := await asyncio.wait_for(reader.readline(), 10):
        commands.append(line.decode().rstrip("\n"))
        writer.write(b"200 result=1\n")
    writer.close()
    return commands


@aio_test
async def test_run_with_an_asterisk_switch_and_fastagi(tmp_path: Path) -> None:
    fake = FakeAsterisk(reactor, secret=SECRET)
    fake.listen()
    fake.add_member("support", "Local/6001@agents/n", name="Agent Alice")
    (tmp_path / "ami.secret").write_text(SECRET + "\n")
    agi_port = free_port()
    config = tmp_path / "ctilink.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n'
        '[event_socket]\nlisten = "tcp:port=0:interface=127.0.0.1"\nauth = "none"\n'
        '[routing]\ndefault_queue = "sales"\ndefault_priority = 10\n'
        '[[switch]]\nname = "pbx1"\nkind = "asterisk"\nhost = "127.0.0.1"\n'
        f'port = {fake.port}\nusername = "ctilink"\nsecret_file = "ami.secret"\n'
        f'fastagi = "tcp:port={agi_port}:interface=127.0.0.1"\n'
    )
    script = Path(sys.executable).parent / "ctilink"
    daemon = await asyncio.create_subprocess_exec(
        str(script), "run", "-c", str(config), stderr=asyncio.subprocess.PIPE
    )
    log: list[str] = []
    try:
        assert daemon.stderr is not None
        while not (ready := READY.search(line := (await daemon.stderr.readline()).decode())):
            assert line, f"the daemon ended before it was ready: {''.join(log)}"
            log.append(line)
        url = f"ws://{ready.group(1)}:{ready.group(2)}/events"
        async with websockets.connect(url) as ws:
            snapshot = json.loads(await ws.recv())
            if not any(link["state"] == "up" for link in snapshot["links"]):
                await next_of(ws, "link_resynced")
            assert fake.logins == 1
            (login,) = [a for a in fake.actions if a.name == "Login"]
            assert login.get("AuthType") == "MD5" and "Secret" not in login

            commands = await fastagi_request(agi_port)
            assert commands == [
                'SET VARIABLE ROUTE_QUEUE "sales"',
                'SET VARIABLE ROUTE_PRIORITY "10"',
            ]
            request = await next_of(ws, "route_request")
            selected = await next_of(ws, "route_selected")
            assert (request["calling_number"], request["device"]) == ("5554446666", "803")
            assert selected["destination"] == "queue:sales" and selected["priority"] == 10
            assert selected["call_id"] == request["call_id"]

            await deferred_result(fake.play_trace(TRACES / "agent-login.jsonl"))
            logged_on = await next_of(ws, "agent_logged_on")
            assert (logged_on["switch"], logged_on["agent"]) == ("pbx1", "6004")
        daemon.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(daemon.communicate(), 20)
        assert daemon.returncode == 0, err.decode()
        assert any(a.name == "Logoff" for a in fake.actions)
        assert SECRET not in "".join(log) + err.decode()
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        await deferred_result(fake.stop())
