"""``ctilink db load-directory``: agents and queues from TOML, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ctilink import db
from ctilink.errors import ConfigError
from ctilink.routing import schema as t
from ctilink.routing.directory_file import load_directory, read_directory_file
from ctilink.state import StateTracker
from tests.configs import REPO
from tests.routing_helpers import TENANT, clock_at, live_agent, make_service, query, settings

pytest_plugins = ["tests.routing_fixtures"]

EXAMPLE = REPO / "contrib" / "directory.example.toml"


def rows(url: str, statement: sa.Select[tuple[object, ...]]) -> list[tuple[object, ...]]:
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(statement)]
    finally:
        engine.dispose()


@pytest_twisted.ensureDeferred
async def test_the_example_file_loads_and_its_skills_route_a_call(
    routing_url: str, make_engine: Callable[..., AsyncEngine], tmp_path: Path
) -> None:
    # The example, for the tenant of the test switch (tests.routing_helpers.TENANT).
    example = tmp_path / "directory.toml"
    text = EXAMPLE.read_text().replace("\n#tenant = ", "\n#was ")
    for table in ("[[agent]]", "[[queue]]"):
        text = text.replace(table, f'{table}\ntenant = "{TENANT}"')
    example.write_text(text)
    found = load_directory(routing_url, example)
    assert [a["agent"] for a in found.agents] == ["6001", "6002"]
    skills = sa.select(t.agents.c.agent, t.agent_skills.c.skill, t.agent_skills.c.level).join(
        t.agent_skills, t.agent_skills.c.agent_id == t.agents.c.id
    )
    assert sorted(rows(routing_url, skills)) == [
        ("6001", "billing", 3), ("6001", "french", 2), ("6002", "billing", 1), ("6002", "sales", 3),
    ]  # fmt: skip
    hours = sa.select(t.queue_hours.c.weekday, t.queue_hours.c.opens, t.queue_hours.c.closes)
    assert sorted(rows(routing_url, hours)) == [
        (0, 480, 1080), (1, 480, 1080), (2, 480, 1080), (3, 480, 1080), (4, 480, 1020),
    ]  # fmt: skip
    holidays = sa.select(t.queue_holidays.c.name).order_by(t.queue_holidays.c.day)
    assert rows(routing_url, holidays) == [("Christmas",), ("New Year",)]

    # Monday 11:00 in Paris, open; the queue asks billing >= 2: only 6001 qualifies.
    tracker = StateTracker()
    live_agent(tracker, "6001", queues=("support",))
    live_agent(tracker, "6002", since=0, queues=("support",))  # idle longer, unskilled
    service, audit = make_service(routing_url, make_engine, tracker, clock_at(), settings())
    decision = await service.route(query(calling=None, called="800"))
    await audit.flush()
    assert (decision.agent, decision.queue, decision.rule) == ("6001", "support", "skills")

    # Loading again replaces each agent's and queue's details; nothing is duplicated.
    load_directory(routing_url, example)
    assert len(rows(routing_url, skills)) == 4 and len(rows(routing_url, hours)) == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[agent]]\nid = "6001"\nskills = { billing = 101 }\n',
         "agent[0].skills: expected a table of skill = level (0 to 100), got {'billing': 101}"),
        ('[[agent]]\nname = "no id"\n',
         "agent[0].id: expected a non-empty string of at most 80 characters, got None"),
        ('[[agent]]\nid = "6001"\nqueue = "x"\n', "agent[0].queue: unknown key (expected one of"),
        ('[[agent]]\nid = "6001"\n[[agent]]\nid = "6001"\n', "agent[1]: '6001' appears twice"),
        ('[[queue]]\nname = "q"\nhours = { mon = ["18:00-08:00"] }\n',
         "queue[0].hours.mon: '18:00-08:00': closes before it opens"),
        ('[[queue]]\nname = "q"\nhours = { monday = ["08:00-18:00"] }\n',
         "queue[0].hours: expected a table of weekday"),
        ('[[queue]]\nname = "q"\ntimezone = "Mars/Olympus"\n',
         "queue[0].timezone: expected an IANA time zone name, got 'Mars/Olympus'"),
        ('[[queue]]\nname = "q"\nholidays = { "25/12/2026" = "x" }\n',
         "queue[0].holidays: '25/12/2026' is not a date (YYYY-MM-DD)"),
        ('[[queue]]\nname = "q"\noverflow_wait_seconds = -1\n',
         "queue[0].overflow_wait_seconds: expected whole seconds from 0 to 86400, got -1"),
        ("[agents]\n", "unknown key 'agents' (expected [[agent]], [[queue]])"),
        ("[[agent]\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_naming_the_table_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_directory_file(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert message in str(refused.value)


def test_the_command_refuses_a_bad_file_and_writes_nothing(tmp_path: Path) -> None:
    from ctilink.cli import main

    url = f"sqlite:///{tmp_path / 'ctilink.sqlite3'}"
    config = tmp_path / "ctilink.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[event_socket]\nauth = "none"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text() + '\n[[queue]]\nname = "late"\nhandle_seconds = "x"\n')
    assert main(["db", "load-directory", str(bad), "-c", str(config)]) == 2
    assert rows(url, sa.select(t.agents.c.agent)) == []  # the good tables were not written
    assert main(["db", "load-directory", str(EXAMPLE), "-c", str(config)]) == 0
    assert sorted(rows(url, sa.select(t.agents.c.agent))) == [("6001",), ("6002",)]
