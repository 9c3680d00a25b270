"""Resuming the event stream (``?since=SEQ``) over real sockets, from a real event log on
SQLite and PostgreSQL: exactly the missed events, no gap or duplicate at the seam, across a
daemon restart, and ``gap`` + snapshot when the log cannot say what was missed."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_twisted
import websockets
from psycopg import sql
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import LoopingCall

from ctilink import db
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.store import EventLog, event_log
from tests.aio import aio_test, deferred_result, until
from tests.eventsockets import (
    Server,
    Tokens,
    agent_event,
    connect,
    hang_up,
    inbound_call,
    marker,
    read_until,
    recv_json,
    wait_open,
)
from tests.stores import PG_MAINTENANCE, pg_url

TENANTS = {"pbx-a": "acme", "pbx-b": "globex"}


@dataclass
class Daemon:
    """One run of the daemon's event path: hub, event log, event socket."""

    hub: Hub
    log: EventLog
    server: Server

    async def stop(self) -> None:
        await deferred_result(self.server.stop())
        await deferred_result(self.log.close())


@pytest.fixture
def tokens() -> Tokens:
    issued = Tokens()
    issued.issue("acme", "acme")
    issued.issue("agent-6001", "acme", agents=["6001"])
    issued.issue("phone-6001", "acme", devices=["6001"])
    return issued


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own for each test: SQLite, and PostgreSQL (127.0.0.1)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ctilink.sqlite3'}"
        db.upgrade(url)
        yield url
        return
    name = f"ctilink_resume_{secrets.token_hex(6)}"
    with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        db.upgrade(pg_url(name))
        yield pg_url(name)
    finally:
        with psycopg.connect(PG_MAINTENANCE, autocommit=True) as connection:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            connection.execute(drop.format(sql.Identifier(name)))


@pytest_twisted.async_yield_fixture()
async def start(url: str, tokens: Tokens) -> AsyncIterator[Callable[..., Any]]:
    """Start a run of the daemon on the test's database (as many times as the test wants)."""
    running: list[Daemon] = []

    async def run(**options: Any) -> Daemon:
        hub = Hub()
        log = EventLog(db.create_engine(url), clock=reactor, flush_interval=0.02)
        await deferred_result(log.start(hub))
        server = Server(
            hub, tokens=tokens.store(), tenants=TENANTS, event_log=log,
            history=log.retention, **options,
        )  # fmt: skip
        running.append(Daemon(hub, log, server))
        return running[-1]

    yield run
    for daemon in running:  # (fixtures run as Twisted coroutines, the tests as asyncio tasks)
        await Deferred.fromFuture(asyncio.ensure_future(daemon.stop()))


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if m["type"] not in ("snapshot", "gap")]


@aio_test
async def test_a_resumed_client_receives_exactly_the_missed_events(
    start: Callable[..., Any], tokens: Tokens
) -> None:
    daemon = await start()
    acme = tokens.secrets["acme"]
    async with connect(daemon.server.url(acme)) as ws:
        await recv_json(ws)
        await wait_open(daemon.server, 1)
        daemon.server.publish(*inbound_call("c-1", "6001", switch="pbx-a"), marker("pbx-a", "1"))
        before = await read_until(ws, "1")
    last = before[-1]["seq"]
    # Disconnected: events of both tenants, some stored, some still in the log's buffer.
    published = daemon.server.publish(
        *inbound_call("b-1", "6001", switch="pbx-b"), *hang_up("c-1", "6001", switch="pbx-a")
    )
    await deferred_result(daemon.log.flush())
    published += daemon.server.publish(*inbound_call("c-2", "6002", switch="pbx-a"))
    assert daemon.log.buffered == 4
    missed = [e.seq for e in published if e.switch == "pbx-a"]
    async with connect(daemon.server.url(acme, since=last)) as ws:
        replayed = [await recv_json(ws) for _ in missed]  # no snapshot first
        assert seqs(replayed) == missed
        assert [m["type"] for m in replayed[:3]] == ["connection_cleared"] * 2 + ["call_cleared"]
        await wait_open(daemon.server, 1)
        live = daemon.server.publish(*hang_up("c-2", "6002", switch="pbx-a"), marker("pbx-a", "2"))
        assert seqs(await read_until(ws, "2")) == [e.seq for e in live]
    assert daemon.server.socket.resumed == 1


@aio_test
async def test_no_gap_and_no_duplicate_at_the_seam_while_events_pour_in(
    start: Callable[..., Any], tokens: Tokens
) -> None:
    daemon = await start(resume_page=7)  # many pages: chase, then the seam
    for n in range(300):
        daemon.server.publish(agent_event(ev.AgentReady, f"{n % 5}", switch="pbx-a"))
    await deferred_result(daemon.log.flush())
    counter = iter(range(10**6))

    def one_more() -> None:
        daemon.server.publish(agent_event(ev.AgentBusy, f"x{next(counter)}", switch="pbx-a"))

    pouring = LoopingCall(one_more)
    pouring.start(0.001)
    try:
        async with connect(daemon.server.url(tokens.secrets["acme"], since=10)) as ws:
            received = [await recv_json(ws) for _ in range(400)]
            pouring.stop()
            daemon.server.publish(marker("pbx-a", "end"))
            received += await read_until(ws, "end")
    finally:
        if pouring.running:
            pouring.stop()
    assert seqs(received) == list(range(11, daemon.hub.last_seq + 1))


@aio_test
async def test_resume_across_a_restart(start: Callable[..., Any], tokens: Tokens) -> None:
    first = await start()
    acme, desk = tokens.secrets["acme"], tokens.secrets["phone-6001"]
    async with connect(first.server.url(acme)) as ws, connect(first.server.url(desk)) as limited:
        await recv_json(ws)
        await recv_json(limited)
        await wait_open(first.server, 2)
        first.server.publish(
            agent_event(ev.AgentLoggedOn, "6001", switch="pbx-a", queue="support"),
            *inbound_call("c-1", "6001", switch="pbx-a"),
            *inbound_call("c-2", "6002", switch="pbx-a"),
            marker("pbx-a", "seen"),
            *hang_up("c-1", "6001", switch="pbx-a"),  # the agent's call ends...
            *hang_up("c-2", "6002", switch="pbx-a"),
            marker("pbx-a", "run 1"),
        )
        seen_by_acme = await read_until(ws, "seen")
        await read_until(ws, "run 1")  # (websockets waits 10 s to close with unread messages)
        # ...and what a limited client saw live is what it must get back after the restart
        # (the caller hanging up is about the phone only because the phone was on the call).
        seen_live_by_desk = await read_until(limited, "run 1")
        assert ("connection_cleared", "5551234567") in [
            (m["type"], m.get("device")) for m in seen_live_by_desk
        ]
    await first.stop()

    second = await start()  # same database: numbering goes on, the log is still there
    assert second.hub.last_seq == first.hub.last_seq
    after = second.server.publish(*inbound_call("c-3", "6001", switch="pbx-a"))
    async with connect(second.server.url(acme, since=seen_by_acme[-1]["seq"])) as ws:
        expected = list(range(seen_by_acme[-1]["seq"] + 1, after[-1].seq + 1))
        assert seqs([await recv_json(ws) for _ in expected]) == expected
    async with connect(second.server.url(desk, since=0)) as limited:
        resumed = [await recv_json(limited) for _ in range(len(seen_live_by_desk) + 2)]
    assert resumed[: len(seen_live_by_desk)] == seen_live_by_desk
    assert [(m["type"], m["call_id"]) for m in resumed[-2:]] == [
        ("delivered", "c-3"), ("established", "c-3"),
    ]  # fmt: skip


@aio_test
async def test_a_seq_older_than_the_log_gets_gap_then_snapshot(
    start: Callable[..., Any], tokens: Tokens
) -> None:
    daemon = await start()
    daemon.server.publish(*inbound_call("c-1", "6001", switch="pbx-a"))
    daemon.server.publish(*inbound_call("c-2", "6002", switch="pbx-a"))
    await deferred_result(daemon.log.flush())
    assert await deferred_result(daemon.log.prune(older_than=-1)) == 7  # all but the newest
    async with connect(daemon.server.url(tokens.secrets["acme"], since=2)) as ws:
        gap, snapshot = await recv_json(ws), await recv_json(ws)
        assert gap == {"type": "gap", "since": 2, "oldest": 8, "reason": "expired"}
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == 8
        assert [c["call_id"] for c in snapshot["calls"]] == ["c-1", "c-2"]
        await wait_open(daemon.server, 1)
        live = daemon.server.publish(*hang_up("c-1", "6001", switch="pbx-a"), marker("pbx-a", "e"))
        assert seqs(await read_until(ws, "e")) == [e.seq for e in live]
    assert daemon.server.socket.gaps == 1


@aio_test
async def test_a_hole_in_the_log_gets_a_gap(
    start: Callable[..., Any], tokens: Tokens, url: str
) -> None:
    daemon = await start()
    daemon.server.publish(*inbound_call("c-1", "6001", switch="pbx-a"))
    daemon.server.publish(*hang_up("c-1", "6001", switch="pbx-a"))
    await deferred_result(daemon.log.flush())
    engine = db.create_engine(url)  # lose seq 5, as an outage would have
    try:
        async with engine.begin() as connection:
            await connection.execute(event_log.delete().where(event_log.c.seq == 5))
    finally:
        await engine.dispose()
    async with connect(daemon.server.url(tokens.secrets["acme"], since=2)) as ws:
        received = [await recv_json(ws) for _ in range(4)]
    assert seqs(received) == [3, 4]
    assert received[2] == {"type": "gap", "since": 2, "oldest": 6, "reason": "missing"}
    assert received[3]["type"] == "snapshot" and received[3]["seq"] == 7


@aio_test
async def test_a_seq_this_daemon_never_published_gets_a_gap(
    start: Callable[..., Any], tokens: Tokens
) -> None:
    daemon = await start()
    daemon.server.publish(*inbound_call("c-1", "6001", switch="pbx-a"))
    async with connect(daemon.server.url(tokens.secrets["acme"], since=1000)) as ws:
        gap = await recv_json(ws)
        assert (gap["type"], gap["reason"], gap["since"]) == ("gap", "unknown", 1000)
        assert (await recv_json(ws))["seq"] == 4


@aio_test
async def test_resuming_at_the_head_just_goes_live(
    start: Callable[..., Any], tokens: Tokens
) -> None:
    daemon = await start()
    daemon.server.publish(*inbound_call("c-1", "6001", switch="pbx-a"))
    async with connect(daemon.server.url(tokens.secrets["acme"], since=4)) as ws:
        await wait_open(daemon.server, 1)
        live = daemon.server.publish(marker("pbx-a", "e"))
        assert await read_until(ws, "e") == [
            {"seq": live[0].seq, "type": "link_resynced", "time": "2026-11-22T13:53:20.000Z",
             "switch": "pbx-a", "detail": "e"}
        ]  # fmt: skip


# -- without a usable event log ---------------------------------------------------------
class BrokenLog:
    """An event log whose database cannot be read."""

    def oldest_seq(self) -> Deferred[int | None]:
        return fail(OSError("database unreachable"))

    def events_since(self, seq: int, limit: int = 1000) -> Deferred[list[dict[str, Any]]]:
        return fail(OSError("database unreachable"))


@pytest.mark.parametrize("event_log", [None, BrokenLog()], ids=["no log", "broken log"])
@aio_test
async def test_without_a_readable_log_a_resume_gets_gap_and_snapshot(
    event_log: Any, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "ctilink.screenpop.resume")
    server = Server(tokens=tokens.store(), tenants=TENANTS, event_log=event_log)
    try:
        server.publish(*inbound_call("c-1", "6001", switch="pbx-a"))
        async with connect(server.url(tokens.secrets["acme"], since=1)) as ws:
            gap, snapshot = await recv_json(ws), await recv_json(ws)
        reason = "expired" if event_log is None else "unavailable"
        assert gap == {"type": "gap", "since": 1, "oldest": 5, "reason": reason}
        assert snapshot["seq"] == 4
    finally:
        await deferred_result(server.stop())
    broken = [r for r in caplog.records if "cannot read the event log" in r.getMessage()]
    assert len(broken) == (0 if event_log is None else 1)


@aio_test
async def test_a_client_that_closes_while_resuming_costs_nothing(
    start: Callable[..., Any], tokens: Tokens
) -> None:
    daemon = await start(resume_page=10)
    for n in range(500):
        daemon.server.publish(agent_event(ev.AgentReady, f"{n}", switch="pbx-a"))
    url = daemon.server.url(tokens.secrets["acme"], since=0)
    async with connect(url, close_timeout=0.1, max_queue=4) as ws:
        await recv_json(ws)
    await until(lambda: not daemon.server.socket.clients)
    await asyncio.sleep(0.1)  # the catch-up notices and stops; nothing is logged as an error
    assert daemon.server.socket.resumed == 0


@aio_test
async def test_the_readme_client_survives_disconnects_without_losing_an_event(
    start: Callable[..., Any], tokens: Tokens
) -> None:
    """The reconnect loop the README shows, against connections cut mid-stream."""
    daemon = await start()
    url = daemon.server.url(tokens.secrets["acme"])
    applied: list[int] = []
    done = asyncio.Event()

    async def client() -> None:
        last = None  # seq of the last event applied
        while not done.is_set():
            try:
                async with connect(url if last is None else f"{url}&since={last}") as ws:
                    async for text in ws:
                        message = json.loads(text)
                        if message["type"] == "snapshot":
                            last = message["seq"]  # (replace the state with it)
                        elif message["type"] != "gap" and message["seq"] > (last or 0):
                            applied.append(message["seq"])
                            last = message["seq"]
                            if message.get("detail") == "end":
                                done.set()
                                return
            except (OSError, websockets.ConnectionClosed):
                await asyncio.sleep(0.01)

    running = asyncio.ensure_future(client())
    await wait_open(daemon.server, 1)
    for round_ in range(5):
        for n in range(40):
            daemon.server.publish(agent_event(ev.AgentReady, f"{round_}-{n}", switch="pbx-a"))
            if n == 20:  # cut the connection in the middle of the stream
                for open_client in tuple(daemon.server.socket.clients):
                    open_client.dropConnection(abort=True)
            await asyncio.sleep(0.001)
    daemon.server.publish(marker("pbx-a", "end"))
    await asyncio.wait_for(running, timeout=10)
    assert applied == list(range(1, daemon.hub.last_seq + 1))
