"""The HTTP side of ctilink: one twisted.web site.

/events    the event socket (WebSocket)
/metrics   Prometheus text format
/healthz   200 while the process serves (liveness)
/readyz    200 when every link is up and the database is reachable, else 503; the JSON
           body says which is not (readiness)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from ctilink import __version__
from ctilink.screenpop.eventsocket import EventSocket

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def _json(request: Request, body: dict[str, Any], code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode("utf-8")


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"" and not request.postpath:  # "/" itself: what is served here
            return self
        return notFound()

    def render_GET(self, request: Request) -> bytes:
        body = {"service": "ctilink", "version": __version__, "events": "/events"}
        for name, path in ((b"api", "/api/v1"), (b"desktop", "/desktop/")):
            if name in self.children:  # mounted by the daemon
                body[name.decode()] = path
        return _json(request, body)


class _Health(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return _json(request, {"status": "ok", "version": __version__})


class _Ready(Resource):
    isLeaf = True

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request: Request) -> bytes:
        ready, body = self.readiness()
        return _json(request, {"ready": ready, **body}, 200 if ready else 503)


class _Metrics(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


def make_site(
    event_socket: EventSocket,
    *,
    registry: CollectorRegistry | None = None,
    readiness: Readiness | None = None,
) -> Site:
    root = _Root()
    root.putChild(b"events", WebSocketResource(event_socket))
    root.putChild(b"healthz", _Health())
    if readiness is not None:
        root.putChild(b"readyz", _Ready(readiness))
    if registry is not None:
        root.putChild(b"metrics", _Metrics(registry))
    site = Site(root)
    site.displayTracebacks = False
    site.noisy = False
    return site
