"""The HTTP side of ctilink: one twisted.web site, the event socket at ``/events``."""

from __future__ import annotations

import json

from autobahn.twisted.resource import WebSocketResource
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from ctilink import __version__
from ctilink.screenpop.eventsocket import EventSocket


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        body = {"service": "ctilink", "version": __version__, "events": "/events"}
        return json.dumps(body).encode("utf-8")


def make_site(event_socket: EventSocket) -> Site:
    root = _Root()
    root.putChild(b"events", WebSocketResource(event_socket))
    site = Site(root)
    site.displayTracebacks = False
    site.noisy = False
    return site
