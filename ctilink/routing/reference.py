"""Reference data for routing: queues (calendars, skills, overflow) and agents' skills.

Theory of operation
-------------------
Queues and agents change rarely and every decision needs them, so the routing service keeps
them in memory as one immutable ``Reference`` snapshot, loaded whole by ``load_reference``
(a handful of small SELECTs) at start and again whenever ``directory_revision`` changes
(every admin write bumps it; see ``ctilink.routing.admin``). A decision therefore reads
queues and skills without a database round trip; only the caller's record needs one.

``QueueInfo.is_open(now)`` answers the business-hours question: closed all day on a
holiday; otherwise open when the queue has no weekly hours at all (24/7) or when local time
(the queue's IANA time zone) falls in one of the day's ``[opens, closes)`` intervals, in
minutes after midnight. An interval over midnight is stored as two (22:00-24:00 on one day,
00:00-06:00 on the next).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ctilink.routing import schema as t

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; UTC when the system does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def minutes(text: str) -> int:
    """``"08:30"`` → 510; ``"24:00"`` → 1440. ValueError for anything else."""
    hours, _, mins = text.partition(":")
    if not (hours.isdigit() and mins.isdigit() and len(mins) == 2):
        raise ValueError(f"expected HH:MM, got {text!r}")
    value = int(hours) * 60 + int(mins)
    if int(mins) > 59 or value > 1440:
        raise ValueError(f"expected a time from 00:00 to 24:00, got {text!r}")
    return value


def clock_time(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    skills: Mapping[str, int] = field(default_factory=dict)  # skill -> minimum level
    service_level_seconds: int | None = None
    timezone: str = "UTC"
    hours: Mapping[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    holidays: Mapping[date, str | None] = field(default_factory=dict)
    closed_destination: str | None = None
    overflow_queue: str | None = None
    overflow_wait_seconds: int | None = None
    handle_seconds: int | None = None
    known: bool = True  # False: not in the database (only its name is known)

    def is_open(self, now: float) -> tuple[bool, str]:
        """Whether the queue takes calls at POSIX time ``now``, and why, for the audit."""
        local = datetime.fromtimestamp(now, zone(self.timezone))
        today = local.date()
        if today in self.holidays:
            name = self.holidays[today]
            return False, f"holiday {today.isoformat()}" + (f" ({name})" if name else "")
        if not self.hours:
            return True, "open 24/7"
        minute = local.hour * 60 + local.minute
        day = WEEKDAYS[local.weekday()]
        for opens, closes in self.hours.get(local.weekday(), ()):
            if opens <= minute < closes:
                return True, f"open {day} {clock_time(opens)}-{clock_time(closes)}"
        return False, f"closed {day} {local.strftime('%H:%M')} {self.timezone}"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    agent: str
    name: str | None = None
    device: str | None = None
    skills: Mapping[str, int] = field(default_factory=dict)  # skill -> level


@dataclass(frozen=True, slots=True)
class Reference:
    """Everything routing needs that admins configure, per tenant name."""

    revision: int = -1
    queues: Mapping[tuple[str, str], QueueInfo] = field(default_factory=dict)
    numbers: Mapping[tuple[str, str], str] = field(default_factory=dict)  # -> queue name
    agents: Mapping[tuple[str, str], AgentInfo] = field(default_factory=dict)

    def queue(self, tenant: str, name: str) -> QueueInfo:
        """The queue's configuration; a bare one (24/7, no skills) for an unknown name."""
        found = self.queues.get((tenant, name))
        return found if found is not None else QueueInfo(name, known=False)

    def queue_for_number(self, tenant: str, number: str | None) -> str | None:
        return self.numbers.get((tenant, number)) if number else None

    def agent(self, tenant: str, agent: str) -> AgentInfo | None:
        return self.agents.get((tenant, agent))


async def read_revision(connection: AsyncConnection) -> int:
    value = await connection.scalar(
        sa.select(t.directory_revision.c.revision).where(t.directory_revision.c.id == 1)
    )
    return int(value or 0)


async def load_reference(connection: AsyncConnection) -> Reference:
    """The whole reference snapshot, read in one transaction."""
    revision = await read_revision(connection)
    names = {row.id: row.name for row in await _rows(connection, sa.select(t.tenants))}

    skills: dict[Any, dict[str, int]] = defaultdict(dict)
    for row in await _rows(connection, sa.select(t.queue_skills)):
        skills[row.queue_id][row.skill] = row.min_level
    hours: dict[Any, dict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    query = sa.select(t.queue_hours).order_by(t.queue_hours.c.weekday, t.queue_hours.c.opens)
    for row in await _rows(connection, query):
        hours[row.queue_id][row.weekday].append((row.opens, row.closes))
    holidays: dict[Any, dict[date, str | None]] = defaultdict(dict)
    for row in await _rows(connection, sa.select(t.queue_holidays)):
        holidays[row.queue_id][row.day] = row.name

    queues: dict[tuple[str, str], QueueInfo] = {}
    queue_names: dict[Any, tuple[str, str]] = {}
    for row in await _rows(connection, sa.select(t.queues)):
        key = (names[row.tenant_id], row.name)
        queue_names[row.id] = key
        queues[key] = QueueInfo(
            name=row.name,
            skills=skills.get(row.id, {}),
            service_level_seconds=row.service_level_seconds,
            timezone=row.timezone,
            hours={day: tuple(spans) for day, spans in hours.get(row.id, {}).items()},
            holidays=holidays.get(row.id, {}),
            closed_destination=row.closed_destination,
            overflow_queue=row.overflow_queue,
            overflow_wait_seconds=row.overflow_wait_seconds,
            handle_seconds=row.handle_seconds,
        )
    numbers = {
        (names[row.tenant_id], row.number): queue_names[row.queue_id][1]
        for row in await _rows(connection, sa.select(t.queue_numbers))
    }

    agent_skills: dict[Any, dict[str, int]] = defaultdict(dict)
    for row in await _rows(connection, sa.select(t.agent_skills)):
        agent_skills[row.agent_id][row.skill] = row.level
    agents = {
        (names[row.tenant_id], row.agent): AgentInfo(
            row.agent, row.name, row.device, agent_skills.get(row.id, {})
        )
        for row in await _rows(connection, sa.select(t.agents))
    }
    return Reference(revision, queues, numbers, agents)


async def _rows(connection: AsyncConnection, query: sa.Select[Any]) -> list[Any]:
    return list((await connection.execute(query)).all())
