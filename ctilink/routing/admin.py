"""Admin writes to the directory (agents, queues, customers) and the demo's seed data.

Every function here takes an open sync ``Connection`` inside the caller's transaction and
ends by bumping ``directory_revision`` (``bump_revision``), which is how a running daemon
learns, within ``[routing] refresh_seconds``, that it must reload queues and agents and
drop its cached callers. They are blocking: for the command line, tools and tests, never
for the reactor thread.

``seed_demo(url)`` fills a database with what the bundled demo traces need, so that the
demo's pops show real records: customers Alice Customer (5551234567, account ACME-001),
Bob Caller (5559876543) and Dana Vip (5554446666, tier VIP); agents 6001 Alice, 6002 Bob,
6003 Carol and 6004 Dave with skills; queues ``support`` (number 800) and ``sales``
(number 803), open 24/7; and a few past interactions. Running it again changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ctilink.db import create_sync_engine, insert_for
from ctilink.routing import schema as t
from ctilink.routing.numbers import NumberNormalizer
from ctilink.routing.reference import minutes

Hours = Mapping[int, Sequence[tuple[str, str]]]  # weekday (0 Monday) -> ("08:00", "18:00")


def bump_revision(connection: sa.Connection) -> None:
    connection.execute(
        t.directory_revision.update()
        .where(t.directory_revision.c.id == 1)
        .values(revision=t.directory_revision.c.revision + 1)
    )


def tenant_ids(connection: sa.Connection, names: Iterable[str]) -> dict[str, int]:
    """The ids of tenants ``names``, creating those that do not exist."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    insert = insert_for(connection.dialect.name, t.tenants).on_conflict_do_nothing(
        index_elements=["name"]
    )
    connection.execute(insert, [{"name": name} for name in wanted])
    query = sa.select(t.tenants.c.name, t.tenants.c.id).where(t.tenants.c.name.in_(wanted))
    return {name: int(id_) for name, id_ in connection.execute(query)}


def _upsert(
    connection: sa.Connection, table: sa.Table, keys: Sequence[str], values: dict[str, Any]
) -> int:
    insert = insert_for(connection.dialect.name, table).values(**values)
    update = {k: v for k, v in values.items() if k not in keys}
    statement = (
        insert.on_conflict_do_update(index_elements=list(keys), set_=update)
        if update
        else insert.on_conflict_do_nothing(index_elements=list(keys))
    )
    connection.execute(statement)
    query = sa.select(table.c.id).where(*(table.c[k] == values[k] for k in keys))
    return int(connection.execute(query).scalar_one())


def upsert_agent(
    connection: sa.Connection,
    tenant: str,
    agent: str,
    *,
    name: str | None = None,
    device: str | None = None,
    skills: Mapping[str, int] | None = None,
) -> int:
    """Create or replace agent ``agent`` (the device id ctilink names it by) and its skills."""
    tenant_id = tenant_ids(connection, [tenant])[tenant]
    values = {"tenant_id": tenant_id, "agent": agent, "name": name, "device": device}
    agent_id = _upsert(connection, t.agents, ("tenant_id", "agent"), values)
    connection.execute(t.agent_skills.delete().where(t.agent_skills.c.agent_id == agent_id))
    if skills:
        connection.execute(
            t.agent_skills.insert(),
            [{"agent_id": agent_id, "skill": s, "level": lvl} for s, lvl in skills.items()],
        )
    bump_revision(connection)
    return agent_id


def upsert_queue(
    connection: sa.Connection,
    tenant: str,
    name: str,
    *,
    numbers: Sequence[str] = (),
    skills: Mapping[str, int] | None = None,
    hours: Hours | None = None,
    holidays: Mapping[date, str | None] | None = None,
    timezone: str = "UTC",
    service_level_seconds: int | None = None,
    closed_destination: str | None = None,
    overflow_queue: str | None = None,
    overflow_wait_seconds: int | None = None,
    handle_seconds: int | None = None,
) -> int:
    """Create or replace queue ``name``: its numbers, skills, weekly hours (none: 24/7) and
    holidays are replaced by these."""
    tenant_id = tenant_ids(connection, [tenant])[tenant]
    values = {
        "tenant_id": tenant_id,
        "name": name,
        "timezone": timezone,
        "service_level_seconds": service_level_seconds,
        "closed_destination": closed_destination,
        "overflow_queue": overflow_queue,
        "overflow_wait_seconds": overflow_wait_seconds,
        "handle_seconds": handle_seconds,
    }
    queue_id = _upsert(connection, t.queues, ("tenant_id", "name"), values)
    for table in (t.queue_numbers, t.queue_skills, t.queue_hours, t.queue_holidays):
        connection.execute(table.delete().where(table.c.queue_id == queue_id))
    rows: list[tuple[sa.Table, list[dict[str, Any]]]] = [
        (
            t.queue_numbers,
            [{"tenant_id": tenant_id, "number": n, "queue_id": queue_id} for n in numbers],
        ),
        (
            t.queue_skills,
            [
                {"queue_id": queue_id, "skill": s, "min_level": lvl}
                for s, lvl in (skills or {}).items()
            ],
        ),
        (
            t.queue_hours,
            [
                {"queue_id": queue_id, "weekday": day, "opens": minutes(o), "closes": minutes(c)}
                for day, spans in (hours or {}).items()
                for o, c in spans
            ],
        ),
        (
            t.queue_holidays,
            [{"queue_id": queue_id, "day": d, "name": n} for d, n in (holidays or {}).items()],
        ),
    ]
    for table, values_list in rows:
        if values_list:
            connection.execute(table.insert(), values_list)
    bump_revision(connection)
    return queue_id


def upsert_customer(
    connection: sa.Connection,
    tenant: str,
    accounts: Sequence[str],
    name: str,
    *,
    phones: Sequence[str] = (),
    tier: str | None = None,
    language: str | None = None,
    preferred_agent: str | None = None,
    notes: str | None = None,
    normalizer: NumberNormalizer | None = None,
) -> int:
    """Create or replace the customer whose key is ``accounts[0]``; phones are normalized
    (ValueError for one that is not a phone number)."""
    normalizer = normalizer or NumberNormalizer()
    e164 = []
    for raw in phones:
        number = normalizer.normalize(raw)
        if number is None:
            raise ValueError(f"{raw!r} is not a phone number")
        e164.append(number)
    tenant_id = tenant_ids(connection, [tenant])[tenant]
    values = {
        "tenant_id": tenant_id,
        "account": accounts[0],
        "name": name,
        "tier": tier,
        "language": language,
        "preferred_agent": preferred_agent,
        "notes": notes,
        "updated_at": time.time(),
    }
    customer_id = _upsert(connection, t.customers, ("tenant_id", "account"), values)
    for table in (t.customer_accounts, t.customer_phones):
        connection.execute(table.delete().where(table.c.customer_id == customer_id))
    insert = insert_for(connection.dialect.name, t.customer_accounts)
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=["tenant_id", "account"],
            set_={"customer_id": insert.excluded.customer_id},
        ),
        [{"tenant_id": tenant_id, "account": a, "customer_id": customer_id} for a in accounts],
    )
    if e164:
        connection.execute(
            t.customer_phones.insert(),
            [{"tenant_id": tenant_id, "e164": p, "customer_id": customer_id} for p in e164],
        )
    bump_revision(connection)
    return customer_id


# -- the demo ------------------------------------------------------------------------------
DEMO_TENANT = "default"
DEMO_AGENTS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("6001", "Alice", {"support": 5, "billing": 3}),
    ("6002", "Bob", {"support": 3, "sales": 2}),
    ("6003", "Carol", {"sales": 5, "support": 1}),
    ("6004", "Dave", {"support": 2, "sales": 3}),
)
DEMO_QUEUES: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("support", "800", {"support": 1}),
    ("sales", "803", {"sales": 1}),
)
DEMO_CUSTOMERS: tuple[dict[str, Any], ...] = (
    {
        "accounts": ["ACME-001"],
        "name": "Alice Customer",
        "phones": ["5551234567"],
        "tier": "gold",
        "language": "en",
        "notes": "ACME Corp. Two open tickets about invoices.",
    },
    {
        "accounts": ["BOB-002"],
        "name": "Bob Caller",
        "phones": ["5559876543"],
        "tier": "standard",
        "language": "en",
        "notes": "Prefers e-mail follow-ups.",
    },
    {
        "accounts": ["VIP-003"],
        "name": "Dana Vip",
        "phones": ["5554446666"],
        "tier": "VIP",
        "language": "en",
        "preferred_agent": "6003",
        "notes": "Key account: offer the premium line.",
    },
)


@dataclass(frozen=True, slots=True)
class SeedReport:
    customers: int
    agents: int
    queues: int
    interactions: int


def seed_demo(url: str | URL, *, default_region: str = "US") -> SeedReport:
    """Fill the database at ``url`` with the demo's directory (blocking; idempotent)."""
    normalizer = NumberNormalizer(default_region)
    engine = create_sync_engine(url)
    try:
        with engine.begin() as connection:
            for agent, name, skills in DEMO_AGENTS:
                upsert_agent(connection, DEMO_TENANT, agent, name=name, device=agent, skills=skills)
            for queue, number, skills in DEMO_QUEUES:
                upsert_queue(connection, DEMO_TENANT, queue, numbers=[number], skills=skills)
            ids = [
                upsert_customer(connection, DEMO_TENANT, normalizer=normalizer, **customer)
                for customer in DEMO_CUSTOMERS
            ]
            history = _demo_history(ids[0], ids[2])
            insert = insert_for(connection.dialect.name, t.interactions).on_conflict_do_nothing(
                index_elements=["call_id"]
            )
            connection.execute(insert, history)
    finally:
        engine.dispose()
    return SeedReport(len(DEMO_CUSTOMERS), len(DEMO_AGENTS), len(DEMO_QUEUES), len(history))


def _demo_history(alice: int, dana: int) -> list[dict[str, Any]]:
    day = 86400.0
    now = time.time()
    calls = (
        ("demo-seed-1", alice, "+15551234567", "support", "6002", "answered", 9 * day),
        ("demo-seed-2", alice, "+15551234567", "support", "6001", "answered", 2 * day),
        ("demo-seed-3", dana, "+15554446666", "sales", None, "abandoned", 1 * day),
    )
    return [
        {
            "call_id": call_id,
            "switch": "demo",
            "tenant": DEMO_TENANT,
            "customer_id": customer,
            "direction": "inbound",
            "started": now - ago,
            "answered": now - ago + 8 if outcome == "answered" else None,
            "ended": now - ago + 200,
            "calling_number": number,
            "called_number": "800" if queue == "support" else "803",
            "queue": queue,
            "agent": agent,
            "outcome": outcome,
            "cause": "normal_clearing" if outcome == "answered" else "abandoned",
            "switch_call_id": None,
            "data": {},
        }
        for call_id, customer, number, queue, agent, outcome, ago in calls
    ]
