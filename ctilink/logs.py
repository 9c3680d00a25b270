"""Logging setup: ctilink logs through the standard library; Twisted's log is routed there.

One stdlib logger per module (``logging.getLogger(__name__)``). Twisted and the asyncio
libraries (SQLAlchemy) all end up in the same handlers, so ops configure one thing:
``text`` (one readable line per record) or ``json`` (one JSON object per line, for log
shippers). Secrets never reach a log call: code logs names of credentials, never values.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from twisted.logger import STDLibLogObserver, globalLogPublisher

_routed = False


def route_twisted_to_stdlib() -> None:
    """Send Twisted's log events (including unhandled Deferred errors) to stdlib logging."""
    global _routed
    if not _routed:
        globalLogPublisher.addObserver(STDLibLogObserver(name="twisted"))
        _routed = True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message[, error]."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``); call once at start."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    route_twisted_to_stdlib()


def set_level(level: str) -> None:
    """Change the level of everything already configured (a reload)."""
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))
