"""Tokens (ctilink.screenpop.auth) and the event socket's handshake over real sockets:
401/403/400 with a JSON body, the token never logged, expiry and reload mid-session."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import txaio
import websockets
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from ctilink.errors import ConfigError
from ctilink.model import events as ev
from ctilink.screenpop.auth import (
    Authenticator,
    AuthError,
    Scope,
    TokenStore,
    new_token,
    presented_secret,
)
from ctilink.screenpop.web import make_site
from tests.aio import aio_test, deferred_result
from tests.eventsockets import (
    Server,
    Tokens,
    agent_event,
    connect,
    inbound_call,
    make_certificates,
    marker,
    read_until,
    recv_json,
    wait_open,
)

NOW = 1_800_000_000.0


# -- tokens ----------------------------------------------------------------------------
def test_a_new_token_is_random_and_only_its_digest_is_kept() -> None:
    secret, token = new_token("crm", "acme")
    other, _ = new_token("crm2", "acme")
    assert secret.startswith("ctl_") and len(secret) >= 40 and secret != other
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(token) and token.digest not in repr(token)
    assert secret not in token.to_toml()
    assert (token.tenant, token.scope, token.limited) == ("acme", Scope.READ, False)


def test_the_token_file_round_trips(tmp_path: Path) -> None:
    _, full = new_token(
        "wallboard", "acme", "control", agents=["6001", "6002"], queues=["support"],
        devices=["6001"], expires=NOW,
    )  # fmt: skip
    _, plain = new_token("crm", "globex")
    path = tmp_path / "tokens.toml"
    path.write_text(full.to_toml() + "\n" + plain.to_toml())
    store = TokenStore.load(path)
    assert sorted(store, key=lambda t: t.id) == [plain, full]
    assert store.get(full.digest) == full


def test_authenticate() -> None:
    secret, token = new_token("crm", "acme", expires=NOW + 10)
    store = TokenStore([token])
    assert store.authenticate(secret, NOW) is token
    for bad, code in ((None, "unauthorized"), ("", "unauthorized"), ("ctl_x", "unauthorized")):
        with pytest.raises(AuthError) as refused:
            store.authenticate(bad, NOW)
        assert (refused.value.status, refused.value.code) == (401, code)
    with pytest.raises(AuthError) as refused:
        store.authenticate(secret, NOW + 10)
    assert (refused.value.status, refused.value.code) == (401, "token_expired")


class _Clock:
    def seconds(self) -> float:
        return NOW


def test_the_command_api_view_of_tokens() -> None:
    secret, token = new_token("desk", "acme", "control", agents=["6001"], queues=["support"])
    assert Authenticator(TokenStore([token]), _Clock()).authenticate(secret) is token
    assert token.can_control("pbx", agent="6001") and token.can_read("pbx", queue="support")
    assert not token.can_read("pbx", agent="6002") and not token.can_read("pbx")
    _, reader = new_token("crm", "acme")
    assert reader.can_read("pbx") and not reader.can_control("pbx", agent="6001")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"tenant": "acme", "sha256": "0" * 64}, "'id' is required"),
        ({"id": "crm", "sha256": "0" * 64}, r"token 1 \(crm\): 'tenant' is required"),
        ({"id": "crm", "tenant": "acme", "sha256": "0" * 64, "scope": "admin"}, "'scope'"),
        ({"id": "crm", "tenant": "acme", "sha256": "abc"}, "64 hex digits"),
        ({"id": "crm", "tenant": "acme", "sha256": "0" * 64, "secret": "x"}, "unknown key"),
        ({"id": "crm", "tenant": "acme", "sha256": "0" * 64, "agents": []}, "'agents'"),
        ({"id": "crm", "tenant": "acme", "sha256": "0" * 64, "expires": "soon"}, "'expires'"),
        ({"id": "a b", "tenant": "acme", "sha256": "0" * 64}, "'id' must be"),
    ],
)
def test_bad_token_entries_name_the_file_token_and_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^tokens.toml: .*{message}"):
        TokenStore.from_entries([entry], "tokens.toml")


def test_duplicate_ids_and_unreadable_files(tmp_path: Path) -> None:
    entry = {"id": "crm", "tenant": "acme", "sha256": "0" * 64}
    with pytest.raises(ConfigError, match="appears twice"):
        TokenStore.from_entries([entry, {**entry, "sha256": "1" * 64}], "tokens.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        TokenStore.load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[token]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TokenStore.load(tmp_path / "bad.toml")


def test_where_a_handshake_carries_its_token() -> None:
    assert presented_secret({"authorization": "Bearer abc"}, {}) == "abc"
    assert presented_secret({}, {"access_token": ["abc"]}) == "abc"
    assert presented_secret({"authorization": "bearer abc"}, {"access_token": ["abc"]}) == "abc"
    assert presented_secret({}, {}) is None
    for headers, params, status in (
        ({"authorization": "Bearer abc"}, {"access_token": ["xyz"]}, 400),
        ({}, {"access_token": ["a", "b"]}, 400),
        ({"authorization": "Basic dXNlcjpwYXNz"}, {}, 401),
    ):
        with pytest.raises(AuthError) as refused:
            presented_secret(headers, params)
        assert refused.value.status == status


# -- the handshake ---------------------------------------------------------------------
@pytest.fixture
def tokens() -> Tokens:
    issued = Tokens()
    issued.issue("crm-acme", "acme")
    issued.issue("desk-6001", "acme", agents=["6001"])
    issued.issue("old", "acme", expires=time.time() - 1)
    return issued


@pytest.fixture
def server(tokens: Tokens) -> Iterator[Server]:
    srv = Server(tokens=tokens.store(), tenants={"pbx": "acme"})
    yield srv
    pytest_twisted.blockon(srv.stop())


async def refused(url: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    with pytest.raises(websockets.InvalidStatus) as failure:
        async with connect(url, **kwargs):
            pass
    response = failure.value.response
    return response.status_code, json.loads(response.body), response.headers


@aio_test
async def test_no_unknown_or_expired_token_is_refused_401(server: Server, tokens: Tokens) -> None:
    for url, code in (
        (server.url(), "unauthorized"),
        (server.url("ctl_not-a-real-token"), "unauthorized"),
        (server.url(tokens.secrets["old"]), "token_expired"),
    ):
        status, body, headers = await refused(url)
        assert (status, body["error"]) == (401, code)
        assert body["message"] and "ctl_" not in body["message"]
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert headers["Content-Type"] == "application/json"


@aio_test
async def test_a_forbidden_filter_is_403_and_a_bad_one_400(server: Server, tokens: Tokens) -> None:
    desk = tokens.secrets["desk-6001"]
    status, body, _ = await refused(server.url(desk, agents="6001,6002"))
    assert (status, body["error"]) == (403, "forbidden")
    assert "6002" in body["message"] and "desk-6001" in body["message"]
    for query in ({"types": "ringing"}, {"agent": "6001"}, {"since": "-1"}, {"agents": "6001,"}):
        status, body, _ = await refused(server.url(desk, **query))
        assert (status, body["error"]) == (400, "bad_request"), query
    assert server.socket.refused == {403: 1, 400: 4}


@aio_test
async def test_a_bearer_header_works_too(server: Server, tokens: Tokens) -> None:
    headers = {"Authorization": f"Bearer {tokens.secrets['crm-acme']}"}
    async with connect(server.url(), additional_headers=headers) as ws:
        assert (await recv_json(ws))["type"] == "snapshot"


@aio_test
async def test_the_token_never_reaches_a_log(
    server: Server, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    txaio.set_global_log_level("debug")  # autobahn's handshake dumps, if they were on
    try:
        good, expired = tokens.secrets["crm-acme"], tokens.secrets["old"]
        async with connect(server.url(good)) as ws:
            await recv_json(ws)
            await ws.send('{"type": "subscribe", "agents": ["6001"]}')
            await recv_json(ws)
        await refused(server.url(expired))
        await refused(server.url(tokens.secrets["desk-6001"], agents="6002"))
        headers = {"Authorization": f"Bearer {good}"}
        async with connect(server.url(), additional_headers=headers) as ws:
            await recv_json(ws)
    finally:
        txaio.set_global_log_level("info")
    # (The websockets client library in this process logs what it sends: not ctilink.)
    ours = [r for r in caplog.records if not r.name.startswith("websockets")]
    text = "\n".join(f"{r.getMessage()} {r.args}" for r in ours)
    assert "refused" in text and "connected" in text  # the handshakes were logged...
    for secret in tokens.secrets.values():
        assert secret not in text  # ...never the tokens


@aio_test
async def test_a_token_that_expires_mid_session_closes_with_4401(tokens: Tokens) -> None:
    secret = tokens.issue("short", "acme", expires=time.time() + 0.5)
    server = Server(tokens=tokens.store(), tenants={"pbx": "acme"})
    try:
        async with (
            connect(server.url(secret)) as ws,
            connect(server.url(tokens.secrets["crm-acme"])) as other,
        ):
            await recv_json(ws)
            await recv_json(other)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=5)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "token expired")
            server.publish(marker("pbx", "still here"))
            assert (await read_until(other, "still here"))[-1]["detail"] == "still here"
    finally:
        await deferred_result(server.stop())


@aio_test
async def test_a_reload_keeps_valid_tokens_and_closes_the_others(tokens: Tokens) -> None:
    tokens.issue("leaving", "acme")
    tokens.issue("narrowed", "acme")
    server = Server(tokens=tokens.store(), tenants={"pbx": "acme"})
    try:
        async with (
            connect(server.url(tokens.secrets["crm-acme"])) as staying,
            connect(server.url(tokens.secrets["leaving"])) as leaving,
            connect(server.url(tokens.secrets["narrowed"], agents="6002")) as narrowed,
        ):
            for ws in (staying, leaving, narrowed):
                await recv_json(ws)
            await wait_open(server, 3)
            # The new file: "leaving" is gone, "narrowed" (same secret) may only see 6001.
            smaller = replace(tokens.tokens["narrowed"], agents=frozenset({"6001"}))
            server.socket.replace_tokens(TokenStore([tokens.tokens["crm-acme"], smaller]))
            for ws, code in ((leaving, 4401), (narrowed, 4403)):
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), timeout=5)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code
            server.publish(*inbound_call("c1", "6001"), marker("pbx", "after reload"))
            received = await read_until(staying, "after reload")
            assert [m["type"] for m in received][-1] == "link_resynced" and len(received) == 5
            await wait_open(server, 1)
    finally:
        await deferred_result(server.stop())


@aio_test
async def test_tls_with_a_generated_certificate(tmp_path: Path, tokens: Tokens) -> None:
    ca, key, cert = make_certificates(tmp_path)
    server = Server(tokens=tokens.store(), tenants={"pbx": "acme"})
    # What the daemon does with [event_socket] listen = "ssl:port=...:privateKey=...:certKey=..."
    endpoint = serverFromString(
        reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    )
    port = await deferred_result(endpoint.listen(make_site(server.socket)))
    url = f"wss://localhost:{port.getHost().port}/events?access_token={tokens.secrets['crm-acme']}"
    try:
        trusting = ssl.create_default_context(cafile=str(ca))
        async with connect(url, ssl=trusting) as ws:
            assert (await recv_json(ws))["type"] == "snapshot"
            await wait_open(server, 1)
            server.publish(agent_event(ev.AgentReady, "6001"))
            assert (await recv_json(ws))["agent"] == "6001"
        with pytest.raises(ssl.SSLCertVerificationError):  # a CA that did not sign it
            async with connect(url, ssl=ssl.create_default_context()):
                pass
        with pytest.raises((websockets.InvalidHandshake, OSError, EOFError)):  # plain ws
            async with connect(url.replace("wss:", "ws:")):
                pass
    finally:
        await deferred_result(port.stopListening())
        await deferred_result(server.stop())
