"""The agent desktop page at ``/desktop/``: three static files, served from the package.

Theory of operation
-------------------
The page (``static/desktop/``: ``index.html``, ``desktop.js``, ``desktop.css``) is plain
HTML and an ES module, with no build step and nothing fetched from elsewhere: it talks to
the event socket (``/events``) and the command API (``/api/v1``) of the same listener.

``DesktopPage`` reads the files once, when it is made, into a table name → (content type,
bytes, ETag). A request is answered from that table only: the path below ``/desktop/``
must be one of its names (``""`` is ``index.html``), so nothing else on the disk can be
reached however the path is spelt (``..``, encoded slashes, a directory); anything else
is 404, a method other than GET or HEAD 405, and ``/desktop`` redirects to ``/desktop/``
(the page's relative links need the slash).

Every answer carries a strict Content-Security-Policy: scripts, styles and connections
only from this origin (and the WebSocket of this host), no inline code, no framing, no
plugins; plus ``nosniff`` and no referrer. Files are ``Cache-Control: no-cache`` with an
ETag: a browser revalidates each time (a 304 is a few bytes) and sees a new release at
once.

Wiring (the web site, ``ctilink.screenpop.web.make_site`` or the daemon)::

    mount_desktop(site.resource)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from twisted.web.resource import Resource
from twisted.web.server import Request

PACKAGE = "ctilink.screenpop"
FOLDER = ("static", "desktop")
TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}
INDEX = "index.html"
# What a Host header may be to be named in the policy (name or [IPv6], optional port).
_HOST = re.compile(rb"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class _File:
    content_type: bytes
    body: bytes
    etag: bytes


def load_files() -> dict[str, _File]:
    """The page's files by name, read from the installed package."""
    folder = resources.files(PACKAGE).joinpath(*FOLDER)
    files: dict[str, _File] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in TYPES:
            body = entry.read_bytes()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'
            files[entry.name] = _File(TYPES[suffix], body, etag)
    if INDEX not in files:
        raise FileNotFoundError(f"{PACKAGE}/{'/'.join(FOLDER)}/{INDEX} is missing")
    files[""] = files[INDEX]
    return files


def security_policy(request: Request) -> bytes:
    """The Content-Security-Policy of every answer: this origin only, and its WebSocket."""
    host = request.getHeader(b"host")
    sockets = ""
    if host is not None and _HOST.fullmatch(host):
        # CSP 3 lets 'self' match ws(s) to the same host; older browsers need it named.
        sockets = f" {'wss' if request.isSecure() else 'ws'}://{host.decode('ascii')}"
    return _POLICY.format(sockets=sockets).encode("ascii")


class DesktopPage(Resource):
    """``/desktop/``: the agent desktop's files (see the module docstring)."""

    isLeaf = True

    def __init__(self, files: dict[str, _File] | None = None) -> None:
        super().__init__()
        self.files = files if files is not None else load_files()

    def render(self, request: Request) -> bytes:
        request.setHeader(b"content-security-policy", security_policy(request))
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return self._plain(request, 405, b"method not allowed")
        if not request.postpath:  # /desktop: the page's relative links need /desktop/
            request.setHeader(b"location", b"/desktop/")
            return self._plain(request, 301, b"see /desktop/")
        found = self.files.get(request.postpath[0].decode("utf-8", "replace"))
        if found is None or len(request.postpath) > 1:
            return self._plain(request, 404, b"not found")
        request.setHeader(b"content-type", found.content_type)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"etag", found.etag)
        if found.etag in _etags(request.getHeader(b"if-none-match")):
            request.setResponseCode(304)
            return b""
        return found.body

    @staticmethod
    def _plain(request: Request, code: int, text: bytes) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return text + b"\n"


def _etags(header: bytes | None) -> set[bytes]:
    if header is None:
        return set()
    return {tag.strip().removeprefix(b"W/") for tag in header.split(b",")}


def mount_desktop(root: Resource) -> DesktopPage:
    """Serve the agent desktop at ``/desktop/`` under the site's root resource."""
    page = DesktopPage()
    root.putChild(b"desktop", page)
    return page
