"""Logging setup: ctilink logs through the standard library; Twisted's log is routed there.

One stdlib logger per module (``logging.getLogger(__name__)``). Twisted and the asyncio
libraries (SQLAlchemy, panoramisk) all end up in the same handlers, so ops configure one
thing. Secrets never reach a log call: code logs names of credentials, never values.
"""

from __future__ import annotations

import logging
import sys

from twisted.logger import STDLibLogObserver, globalLogPublisher

_routed = False


def route_twisted_to_stdlib() -> None:
    """Send Twisted's log events (including unhandled Deferred errors) to stdlib logging."""
    global _routed
    if not _routed:
        globalLogPublisher.addObserver(STDLibLogObserver(name="twisted"))
        _routed = True


def configure(level: str = "info") -> None:
    """Plain text logging to stderr for the CLI."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    route_twisted_to_stdlib()
