"""The agent desktop's files at ``/desktop/`` (``ctilink.screenpop.desktop``), over real HTTP:
content types, caching, the security policy, and nothing else reachable, however the path
is spelt. Requests are written byte for byte, so no client tidies a path on the way."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred

from ctilink.hub import Hub
from ctilink.screenpop.desktop import mount_desktop
from ctilink.screenpop.eventsocket import EventSocket
from ctilink.screenpop.web import make_site
from tests.aio import aio_test

STATIC = resources.files("ctilink.screenpop").joinpath("static", "desktop")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Site:
    """The real web site with the desktop mounted, on 127.0.0.1."""

    def __init__(self) -> None:
        self.socket = EventSocket(Hub(), reactor)
        site = make_site(self.socket)
        mount_desktop(site.resource)
        self.port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.number = self.port.getHost().port

    async def get(
        self, target: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Answer:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.number)
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.number}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        lines += ["Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        found = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        return Answer(int(status_line.split()[1]), found, body)


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    yield server
    server.socket.close_all()
    pytest_twisted.blockon(maybeDeferred(server.port.stopListening))


def _policy(answer: Answer) -> dict[str, list[str]]:
    directives = {}
    for part in answer.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@aio_test
async def test_the_page_and_its_files_with_their_types(site: Site) -> None:
    expected = {
        "/desktop/": ("text/html; charset=utf-8", "index.html"),
        "/desktop/index.html": ("text/html; charset=utf-8", "index.html"),
        "/desktop/desktop.js": ("text/javascript; charset=utf-8", "desktop.js"),
        "/desktop/desktop.css": ("text/css; charset=utf-8", "desktop.css"),
    }
    for path, (content_type, name) in expected.items():
        answer = await site.get(path)
        assert answer.status == 200, path
        assert answer.headers["content-type"] == content_type
        assert answer.body == STATIC.joinpath(name).read_bytes()
        assert answer.headers["cache-control"] == "no-cache"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"


@aio_test
async def test_the_page_loads_only_its_own_files(site: Site) -> None:
    page = (await site.get("/desktop/")).body.decode()
    assert re.findall(r'(?:src|href)="([^"]+)"', page) == ["desktop.css", "desktop.js"]
    assert "<style" not in page and " style=" not in page and "<script>" not in page
    for name in ("index.html", "desktop.js", "desktop.css"):
        text = STATIC.joinpath(name).read_text()
        # Nothing from elsewhere: the machine running the page may have no internet.
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text.replace("//", "// ")), (
            name
        )
        assert "innerHTML" not in text and "eval(" not in text


@aio_test
async def test_a_strict_content_security_policy(site: Site) -> None:
    answer = await site.get("/desktop/")
    policy = _policy(answer)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", f"ws://127.0.0.1:{site.number}"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in answer.headers["content-security-policy"]
    # A Host header that is not a host name is not copied into the policy.
    odd = await site.get("/desktop/", headers={"Host": "evil; script-src *"})
    assert _policy(odd)["connect-src"] == ["'self'"]
    assert _policy(odd)["script-src"] == ["'self'"]


@aio_test
async def test_revalidation_answers_304_without_the_body(site: Site) -> None:
    first = await site.get("/desktop/desktop.js")
    etag = first.headers["etag"]
    again = await site.get("/desktop/desktop.js", headers={"If-None-Match": etag})
    assert (again.status, again.body) == (304, b"")
    assert again.headers["etag"] == etag
    other = await site.get("/desktop/desktop.js", headers={"If-None-Match": '"stale"'})
    assert other.status == 200 and other.body == first.body


@aio_test
async def test_head_and_the_bare_path(site: Site) -> None:
    head = await site.get("/desktop/desktop.css", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == len(STATIC.joinpath("desktop.css").read_bytes())
    bare = await site.get("/desktop")
    assert bare.status == 301 and bare.headers["location"] == "/desktop/"


@aio_test
async def test_other_methods_are_refused(site: Site) -> None:
    # The sign-in form posts if its script cannot run: refused, and the token is in no URL.
    for method in ("POST", "PUT", "DELETE"):
        answer = await site.get("/desktop/", method=method)
        assert answer.status == 405 and answer.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path",
    [
        "/desktop/missing.js",
        "/desktop/static/desktop/index.html",
        "/desktop/index.html/",
        "/desktop/index.html/x",
        "/desktop/../web.py",
        "/desktop/../../screenpop/web.py",
        "/desktop/..%2fweb.py",
        "/desktop/%2e%2e/%2e%2e/__init__.py",
        "/desktop/%2e%2e%2f%2e%2e%2fweb.py",
        "/desktop/..\\web.py",
        "/desktop/./desktop.js",
        "/desktop//etc/passwd",
        "/desktop/%2fetc%2fpasswd",
        "/desktop/desktop.js%00.html",
        "/desktop/DESKTOP.JS",
        "/desktop/.",
        "/desktop/..",
    ],
)
@aio_test
async def test_nothing_else_is_served(site: Site, path: str) -> None:
    answer = await site.get(path)
    assert answer.status in (404, 400), (path, answer.status)
    assert b"import" not in answer.body and b"root:" not in answer.body
    if answer.status == 404:
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert "content-security-policy" in answer.headers


@aio_test
async def test_no_directory_listing(site: Site) -> None:
    for path in ("/desktop/", "/desktop/?C=M;O=A", "/desktop/static/"):
        answer = await site.get(path)
        assert b"Directory listing" not in answer.body and b"desktop.css</a>" not in answer.body
    assert (await site.get("/desktop/?x=1")).body == STATIC.joinpath("index.html").read_bytes()
