"""The agent desktop in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright) against ctilink replaying ``inbound-answered`` (customer 5551234567, account
ACME-001, queue support, answered by agent 6001).

How the moments of the call are made observable: the replay adapter paces itself on its
own clock (speed 1), and the test gives it a ``task.Clock`` that it steps record by record
(``DesktopStack.step_until``). Stopped right after the call is delivered to 6001, the call
cannot be established, whatever the browser's speed: the next record is never played until
the test steps again. So "the name is shown before the call is established" is proved by
the order of things, not by a sleep. Everything else (web site, event log, routing and its
customer database, screen pops) runs on the reactor as in the daemon.

Clicks are checked at both ends: the request the page sent (Playwright's request events:
method, path, JSON body, bearer token) and what the switch adapter was asked (the replay
adapter records every call-control command, as ``ScriptedAdapter`` does).

There is no skip: without ``/usr/bin/chromium`` the test fails and says how to install it
(``.ci/run`` does).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Request, async_playwright, expect
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from ctilink import db
from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.config import ReplayOptions, SwitchConfig, default_config
from ctilink.errors import CommandError
from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.routing import admin
from ctilink.routing.runtime import start_routing
from ctilink.screenpop.acks import install_acks
from ctilink.screenpop.api import CommandApi, mount
from ctilink.screenpop.auth import Authenticator, Scope, TokenStore, new_token
from ctilink.screenpop.desktop import mount_desktop
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.stats import Statistics
from ctilink.screenpop.web import make_site
from ctilink.store import EventLog
from tests.aio import aio_test, deferred_result, until
from tests.conftest import TRACES
from tests.routing_helpers import past_call, write
from tests.test_api_support import CONTROL_METHODS, ScriptedAdapter

CHROMIUM = Path("/usr/bin/chromium")
SWITCH, TENANT, AGENT = "pbx1", "acme", "6001"
TIMEOUT_MS = 5000


def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test needs Debian's chromium "
            "(apt-get install chromium; .ci/run installs it)",
            pytrace=False,
        )
    return CHROMIUM


class RecordingReplay(ReplayAdapter, ScriptedAdapter):  # type: ignore[misc]  # two _do
    """A trace as the switch (``ReplayAdapter``) that records every call-control command
    and accepts it, or fails with ``failure`` when set (``ScriptedAdapter``)."""


def _recording(name: str) -> Callable[..., Deferred[Any]]:
    # Both bases have a ``_do`` (the replay's is its next step): name the scripted one.
    def method(self: RecordingReplay, *args: Any) -> Deferred[Any]:
        return ScriptedAdapter._do(self, name, *args)

    return method


for _name in CONTROL_METHODS:
    setattr(RecordingReplay, _name, _recording(_name))


class DesktopStack:
    """ctilink put together as the daemon does, on 127.0.0.1: hub, event log and customer
    database (one SQLite file), event socket with tokens, command API and statistics,
    routing (screen pops), acks, the desktop page. Switch pbx1 (tenant acme) replays the
    trace on ``switch_clock``, which only the test moves."""

    def __init__(self, tmp_path: Path) -> None:
        trace = TRACES / "inbound-answered.jsonl"
        base = default_config(tmp_path / "state")
        switch = SwitchConfig(
            SWITCH, "replay", TENANT, replay=ReplayOptions((trace,), False, 1.0, 5038)
        )
        self.config = replace(base, switches=(switch,))
        self.url = self.config.database.connect_url()
        self.secret, token = new_token(
            "desk-6001", TENANT, Scope.CONTROL,
            agents=[AGENT], devices=[AGENT], queues=["support"],
        )  # fmt: skip
        self.tokens = TokenStore([token])
        self.switch_clock = Clock()
        self.switch_clock.advance(reactor.seconds())
        self.hub = Hub()
        self.seen: list[Event] = []
        self.registry = CollectorRegistry()
        self.adapter = RecordingReplay(
            SWITCH, load_replay([trace]), self.hub.publish,
            clock=self.switch_clock, speed=1.0, tenant=TENANT,
        )  # fmt: skip

    async def start(self) -> None:
        (self.config.daemon.state_dir).mkdir(parents=True)
        db.upgrade(self.url)
        write(
            str(self.url),  # SQLite: nothing to mask
            lambda c: admin.upsert_customer(
                c, TENANT, ["ACME-001"], "Alice Customer", phones=["5551234567"],
                tier="gold", notes="Prefers a call back before noon",
            ),
        )  # fmt: skip
        past_call(str(self.url), "earlier-call", "ACME-001", "6002", reactor.seconds() - 86400)
        self.store = EventLog(db.create_engine(self.url), clock=reactor)
        await deferred_result(self.store.start(self.hub))
        self.hub.subscribe(self.seen.append)
        self.socket = EventSocket(
            self.hub, reactor, tokens=self.tokens, tenants={SWITCH: TENANT},
            event_log=self.store, history=self.store.retention,
        )  # fmt: skip
        self.acks = install_acks(self.socket, self.hub, reactor, self.registry)
        self.statistics = Statistics(self.hub, reactor)
        api = CommandApi(
            self.hub, {SWITCH: self.adapter}, Authenticator(self.tokens, reactor), reactor,
            statistics=self.statistics,
        )  # fmt: skip
        site = make_site(self.socket, registry=self.registry)
        mount(site.resource, api)
        mount_desktop(site.resource)
        self.routing = await deferred_result(
            start_routing(
                self.config, self.url, self.hub, self.hub.tracker, reactor,
                self.config.daemon.state_dir,
            )
        )  # fmt: skip
        self.port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/desktop/"

    def types(self) -> list[str]:
        return [event.TYPE for event in self.seen]

    def events(self, kind: str, device: str | None = None) -> list[Any]:
        return [e for e in self.seen if kind == e.TYPE and getattr(e, "device", None) == device]

    def step_until(self, done: Callable[[], bool]) -> None:
        """Play the trace record by record (its own clock) until ``done()``."""
        while not done():
            pending = self.switch_clock.getDelayedCalls()
            if not pending:
                raise AssertionError("the replay ended before the moment the test waits for")
            due = min(call.getTime() for call in pending)
            self.switch_clock.advance(max(0.0, due - self.switch_clock.seconds()))

    def last_command(self) -> tuple[str, tuple[Any, ...]]:
        """What the switch adapter was asked last (method, arguments)."""
        return self.adapter.calls[-1]

    def acked(self) -> float:
        count = self.registry.get_sample_value(
            "ctilink_screen_pop_ack_seconds_count", {"switch": SWITCH}
        )
        return count or 0.0

    async def close(self) -> None:
        await deferred_result(self.adapter.stop())
        self.socket.close_all()
        await deferred_result(maybeDeferred(self.port.stopListening))
        self.acks.close()
        self.statistics.close()
        await deferred_result(self.routing.close())
        await deferred_result(self.store.close())


async def sign_in(page: Page, stack: DesktopStack, secret: str) -> None:
    await page.goto(stack.page_url)
    await page.get_by_label("Access token").fill(secret)
    await page.get_by_label("Agent id").fill(AGENT)
    await page.get_by_role("button", name="Sign in").click()


async def click_and_capture(page: Page, button: str, path: str) -> Request:
    """Click ``button``; the API request it sent, once answered."""
    async with page.expect_response(lambda r: r.url.endswith(path)) as answer:
        await page.get_by_role("button", name=button, exact=True).click()
    response = await answer.value
    return response.request


@asynccontextmanager
async def desktop(tmp_path: Path) -> AsyncIterator[tuple[DesktopStack, Page]]:
    """A started stack and a page of a fresh headless Chromium."""
    browser_path = chromium()
    stack = DesktopStack(tmp_path)
    await stack.start()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(browser_path))
            try:
                page = await browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                yield stack, page
            finally:
                await browser.close()
    finally:
        await stack.close()


@aio_test
async def test_the_pop_shows_before_the_answer_and_clicks_send_commands(tmp_path: Path) -> None:
    async with desktop(tmp_path) as (stack, page):
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text} ({m.location['url']})"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        await story(page, stack, sockets)
    # No script error, no Content-Security-Policy violation, no token in the console: only
    # the browser's notes of the favicon nobody serves and of the refused hang-up.
    assert not any(stack.secret in line for line in console)
    errors = [
        line
        for line in console
        if line.startswith(("error", "pageerror")) and "/favicon.ico)" not in line
    ]
    assert len(errors) == 1 and "status of 502" in errors[0], console


async def story(page: Page, stack: DesktopStack, sockets: list[str]) -> None:
    # Signing in: the token goes into no URL but the WebSocket's, and leaves the form.
    await sign_in(page, stack, stack.secret)
    await expect(page.locator("#connection")).to_have_text("Connected")
    await expect(page.locator("#signin")).to_be_hidden()
    assert stack.secret not in page.url
    assert await page.get_by_label("Access token").input_value() == ""
    assert len(sockets) == 1 and f"access_token={stack.secret}" in sockets[0]
    assert "since=" not in sockets[0]

    # The call is delivered to 6001; the replay stops there.
    stack.adapter.start()
    stack.step_until(lambda: bool(stack.events("delivered", AGENT)))
    call_id = stack.events("delivered", AGENT)[0].call_id
    await until(lambda: "screen_pop" in stack.types())  # the customer lookup answers

    await expect(page.locator("#customer-name")).to_have_text("Alice Customer")
    await expect(page.locator("#call-state")).to_have_text("alerting")
    assert "established" not in stack.types()  # not yet, and not until the test steps
    await expect(page.locator("#pop-summary")).to_have_text("Call from Alice Customer (gold)")
    await expect(page.locator("#customer-tier")).to_have_text("gold")
    await expect(page.locator("#customer-account")).to_have_text("ACME-001")
    await expect(page.locator("#customer-notes")).to_have_text("Prefers a call back before noon")
    await expect(page.locator("#ivr")).to_contain_text("CUSTOMER_ACCOUNT")
    await expect(page.locator("#history tr")).to_have_count(1)
    await expect(page.locator("#history")).to_contain_text("answered")
    await expect(page.locator("#call-queue")).to_have_text("support")
    await expect(page.locator("#queues tr")).to_contain_text(["support"])  # the wallboard
    await until(lambda: stack.acked() == 1.0)  # the page acknowledged the pop it showed
    assert "established" not in stack.types()

    # Answer: the right request, and the adapter asked to answer at 6001.
    request = await click_and_capture(page, "Answer", f"/calls/{call_id}/answer")
    assert request.method == "POST"
    assert request.post_data_json == {"device": AGENT}
    assert request.headers["authorization"] == f"Bearer {stack.secret}"
    assert stack.last_command() == ("answer_call", (call_id, AGENT))

    stack.step_until(lambda: "established" in stack.types())
    await expect(page.locator("#call-state")).to_have_text("connected")
    await expect(page.get_by_role("button", name="Hold")).to_be_enabled()

    request = await click_and_capture(page, "Hold", f"/calls/{call_id}/hold")
    assert request.post_data_json == {"device": AGENT}
    assert stack.last_command() == ("hold_call", (call_id, AGENT))

    await page.get_by_label("Transfer to").fill("7000")
    request = await click_and_capture(page, "Blind transfer", f"/calls/{call_id}/blind_transfer")
    assert request.post_data_json == {"device": AGENT, "destination": "7000"}
    assert stack.last_command() == ("single_step_transfer", (call_id, AGENT, "7000"))

    await page.locator("#dial-number").fill("5550001111")
    request = await click_and_capture(page, "Call", "/api/v1/calls")
    assert request.post_data_json == {"device": AGENT, "number": "5550001111", "switch": SWITCH}
    assert stack.last_command() == ("make_call", (AGENT, "5550001111", None))

    # A refused command: the API's error body, shown.
    stack.adapter.failure = CommandError("error", "Asterisk says: No such channel")
    await click_and_capture(page, "Hang up", f"/calls/{call_id}/clear_connection")
    await expect(page.get_by_role("alert")).to_have_text(
        "Hang up failed (502) error: Asterisk says: No such channel"
    )
    stack.adapter.failure = None

    # Agent state: not ready with a reason.
    await page.get_by_label("Change to").select_option("not_ready")
    await page.get_by_label("Reason").fill("coffee")
    request = await click_and_capture(page, "Set state", f"/agents/{AGENT}/state")
    assert request.post_data_json == {"state": "not_ready", "reason": "coffee", "switch": SWITCH}
    assert stack.last_command() == ("set_agent_state", (AGENT, "not_ready", None, "coffee"))
    await expect(page.get_by_role("alert")).to_be_hidden()

    # The connection drops; the call ends meanwhile; the page resumes from its last seq
    # (the last it applied: at least the established, at most the hub's last now).
    established = stack.events("established", AGENT)[0].seq
    last_published = stack.hub.last_seq
    for client in tuple(stack.socket.clients):
        client.dropConnection(abort=True)
    stack.step_until(lambda: "call_cleared" in stack.types())
    await expect(page.locator("#no-call")).to_be_visible()
    assert len(sockets) == 2 and stack.secret not in page.url
    since = re.search(r"[?&]since=([0-9]+)(?:&|$)", sockets[1])
    assert since is not None and established <= int(since.group(1)) <= last_published
    await expect(page.locator("#pop-summary")).to_have_text("Last call: Alice Customer (gold)")
    await expect(page.locator("#agent-state")).to_have_text("ready")  # agent_ready, missed
    assert stack.acked() == 1.0  # the pop was not shown (nor acknowledged) twice
    assert stack.socket.resumed == 1 and stack.socket.gaps == 0

    # Signing out forgets the token and closes the stream.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    await until(lambda: not stack.socket.clients)


@aio_test
async def test_a_bad_token_is_refused_at_sign_in(tmp_path: Path) -> None:
    async with desktop(tmp_path) as (stack, page):
        await sign_in(page, stack, "ctl_not-a-token")
        await expect(page.locator("#signin-note")).to_have_text(
            "Not signed in: unauthorized: unknown token"
        )
        await expect(page.locator("#desk")).to_be_hidden()
        assert "ctl_" not in page.url
        assert await page.evaluate("sessionStorage.length") == 0
