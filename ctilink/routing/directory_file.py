"""``ctilink db load-directory FILE``: agents and queues from a TOML file.

Customers come in bulk from CSV (``ctilink.routing.importer``); agents and queues are few
and carry structure (skills with levels, weekly hours, holidays), so they are described in
TOML, one ``[[agent]]`` or ``[[queue]]`` table each::

    [[agent]]
    id = "6001"                        # the agent id / device ctilink names it by
    name = "Alice Martin"
    skills = { billing = 3, french = 2 }
    #tenant = "default"                # the [[switch]] tenant; default "default"
    #device = "6001"                   # default: the id

    [[queue]]
    name = "support"
    numbers = ["800"]                  # dialled numbers / route points that mean it
    skills = { billing = 2 }           # minimum level of each skill asked
    timezone = "Europe/Paris"          # IANA name; default UTC
    hours = { mon = ["08:00-12:30", "13:30-18:00"], sat = ["09:00-12:00"] }  # none: 24/7
    holidays = { "2026-12-25" = "Christmas" }
    service_level_seconds = 20
    closed_destination = "closed-msg"  # queue or number for closed hours
    overflow_queue = "support-2"
    overflow_wait_seconds = 120        # estimated wait beyond which to overflow
    handle_seconds = 240               # average handle time, for the estimated wait

Each table replaces what the database holds for that agent or queue (its skills, numbers,
hours and holidays included); agents and queues not in the file are left alone. The file
is checked whole before anything is written, and written in one transaction: a bad value
is a ``ConfigError`` naming the table and key, and nothing changes. A running daemon picks
the change up within ``[routing] refresh_seconds``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import URL

from ctilink.db import create_sync_engine
from ctilink.errors import ConfigError
from ctilink.routing.admin import Hours, upsert_agent, upsert_queue
from ctilink.routing.reference import WEEKDAYS, minutes

_AGENT_KEYS = frozenset({"tenant", "id", "name", "device", "skills"})
_QUEUE_KEYS = frozenset(
    {
        "tenant", "name", "numbers", "skills", "timezone", "hours", "holidays",
        "service_level_seconds", "closed_destination", "overflow_queue",
        "overflow_wait_seconds", "handle_seconds",
    }
)  # fmt: skip
_SECONDS = ("service_level_seconds", "overflow_wait_seconds", "handle_seconds")
MAX_LEVEL = 100


@dataclass
class DirectoryFile:
    agents: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)


class _Table:
    """One ``[[agent]]``/``[[queue]]`` table being read; errors name it and the key."""

    def __init__(self, source: Path, kind: str, index: int, values: Mapping[str, Any]) -> None:
        self.where = f"{source}: {kind}[{index}]"
        self.values = values

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.where}.{key}: {expected}, got {self.values.get(key)!r}")

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self.values.get(key, default)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > 80:
            raise self.fail(key, "expected a non-empty string of at most 80 characters")
        return value

    def seconds(self, key: str) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 86400:
            raise self.fail(key, "expected whole seconds from 0 to 86400")
        return value

    def skills(self) -> dict[str, int]:
        value = self.values.get("skills", {})
        if not isinstance(value, dict) or not all(
            isinstance(skill, str) and skill
            and isinstance(level, int) and not isinstance(level, bool)
            and 0 <= level <= MAX_LEVEL
            for skill, level in value.items()
        ):  # fmt: skip
            raise self.fail("skills", f"expected a table of skill = level (0 to {MAX_LEVEL})")
        return dict(value)

    def names(self, key: str) -> list[str]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "expected a list of non-empty strings")
        return list(value)

    def timezone(self) -> str:
        name = self.text("timezone", "UTC")
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail("timezone", "expected an IANA time zone name") from None
        return str(name)

    def hours(self) -> Hours | None:
        value = self.values.get("hours")
        if value is None:
            return None
        expected = 'expected a table of weekday = ["HH:MM-HH:MM", ...] (mon ... sun)'
        if not isinstance(value, dict) or not set(value) <= set(WEEKDAYS):
            raise self.fail("hours", expected)
        hours: dict[int, list[tuple[str, str]]] = {}
        for day, spans in value.items():
            if not isinstance(spans, list):
                raise self.fail("hours", expected)
            for span in spans:
                opens, _, closes = str(span).partition("-")
                try:
                    if not minutes(opens) < minutes(closes):
                        raise ValueError("closes before it opens")
                except ValueError as exc:
                    raise ConfigError(f"{self.where}.hours.{day}: {span!r}: {exc}") from None
                hours.setdefault(WEEKDAYS.index(day), []).append((opens, closes))
        return hours

    def holidays(self) -> dict[date, str | None]:
        value = self.values.get("holidays", {})
        if not isinstance(value, dict):
            raise self.fail("holidays", 'expected a table of "YYYY-MM-DD" = "name"')
        holidays: dict[date, str | None] = {}
        for day, name in value.items():
            try:
                holidays[date.fromisoformat(day)] = str(name) if name else None
            except ValueError:
                raise ConfigError(
                    f"{self.where}.holidays: {day!r} is not a date (YYYY-MM-DD)"
                ) from None
        return holidays

    def reject_unknown(self, known: frozenset[str]) -> None:
        for key in self.values:
            if key not in known:
                raise ConfigError(
                    f"{self.where}.{key}: unknown key (expected one of {', '.join(sorted(known))})"
                )


def _agent(table: _Table) -> dict[str, Any]:
    table.reject_unknown(_AGENT_KEYS)
    agent = table.text("id", required=True)
    return {
        "tenant": table.text("tenant", "default"),
        "agent": agent,
        "name": table.text("name"),
        "device": table.text("device", agent),
        "skills": table.skills(),
    }


def _queue(table: _Table) -> dict[str, Any]:
    table.reject_unknown(_QUEUE_KEYS)
    queue: dict[str, Any] = {
        "tenant": table.text("tenant", "default"),
        "name": table.text("name", required=True),
        "numbers": table.names("numbers"),
        "skills": table.skills(),
        "timezone": table.timezone(),
        "hours": table.hours(),
        "holidays": table.holidays(),
        "closed_destination": table.text("closed_destination"),
        "overflow_queue": table.text("overflow_queue"),
    }
    for key in _SECONDS:
        queue[key] = table.seconds(key)
    return queue


def read_directory_file(path: Path) -> DirectoryFile:
    """Read and check ``path`` (see the module docstring); ``ConfigError`` if it is bad."""
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(document) - {"agent", "queue"}
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"{path}: unknown key {first!r} (expected [[agent]], [[queue]])")
    found = DirectoryFile()
    readers: dict[str, tuple[Callable[[_Table], dict[str, Any]], list[dict[str, Any]]]] = {
        "agent": (_agent, found.agents),
        "queue": (_queue, found.queues),
    }
    for kind, (read, into) in readers.items():
        tables = document.get(kind, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError(f"{path}: {kind!r} must be an array of tables ([[{kind}]])")
        seen: set[tuple[str, str]] = set()
        for index, values in enumerate(tables):
            entry = read(_Table(path, kind, index, values))
            key = (entry["tenant"], entry["agent" if kind == "agent" else "name"])
            if key in seen:
                raise ConfigError(f"{path}: {kind}[{index}]: {key[1]!r} appears twice")
            seen.add(key)
            into.append(entry)
    return found


def load_directory(url: str | URL, path: Path) -> DirectoryFile:
    """Write the agents and queues of ``path`` to the database at ``url`` (blocking, one
    transaction); returns what was written."""
    found = read_directory_file(path)
    engine = create_sync_engine(url)
    try:
        with engine.begin() as connection:
            for entry in found.agents:
                agent = dict(entry)
                upsert_agent(connection, agent.pop("tenant"), agent.pop("agent"), **agent)
            for entry in found.queues:
                queue = dict(entry)
                upsert_queue(connection, queue.pop("tenant"), queue.pop("name"), **queue)
    finally:
        engine.dispose()
    return found
