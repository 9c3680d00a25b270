"""The routing runtime as the daemon wires it (``start_routing``) and the command-line helpers
(``ctilink db import|seed-demo``, ``ctilink route explain|simulate``) as ``ctilink/cli.py``
plugs them in, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy.ext.asyncio import AsyncEngine
from twisted.internet.task import Clock

from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.cli import main
from ctilink.config import load_config
from ctilink.demo import TRACES as DEMO_TRACES
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.routing.admin import seed_demo
from ctilink.routing.runtime import start_routing
from ctilink.routing.static import RouteDecision, RouteQuery
from tests.configs import REPO
from tests.conftest import TRACES
from tests.routing_helpers import stored_decisions

pytest_plugins = ["tests.routing_fixtures"]

Engines = Callable[..., AsyncEngine]
T0 = 1_795_355_630.0


def ctilink(*argv: str) -> int:
    """The ``ctilink`` command's entry point, in this process."""
    return main(list(argv))


def ctilink_process(*argv: str) -> subprocess.CompletedProcess[str]:
    """The console script, as a user runs it (``route simulate`` runs its own asyncio loop,
    which a test inside the reactor cannot)."""
    script = Path(sys.executable).parent / "ctilink"
    return subprocess.run([str(script), *argv], capture_output=True, text=True, cwd=REPO)


def config_file(tmp_path: Path, url: str, switch: str = "demo") -> Path:
    path = tmp_path / "ctilink.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[event_socket]\nauth = "none"\n'
        '[routing]\ndefault_queue = "support"\n'
        f'[[switch]]\nname = "{switch}"\nkind = "replay"\ntenant = "default"\n'
        f'traces = ["{TRACES / "inbound-answered.jsonl"}"]\n'
    )
    return path


@pytest_twisted.ensureDeferred
async def test_the_runtime_routes_pops_and_records_a_demo_call(
    routing_url: str, tmp_path: Path
) -> None:
    seed_demo(routing_url)
    config = load_config(config_file(tmp_path, routing_url))
    hub = Hub()
    seen: list[ev.Event] = []
    hub.subscribe(seen.append)  # like the event socket: subscribed before the routing
    clock = Clock()
    clock.advance(T0)
    runtime = await start_routing(config, routing_url, hub, hub.tracker, clock, tmp_path / "st")
    assert runtime.router.reference is not None  # queues and agents loaded
    hub.publish(ev.AgentReady(switch="demo", time=T0 - 60, agent="6001", state=AgentState.READY))

    # The FastAGI request of the call (its call id is the replay's first one, "call-1").
    query = RouteQuery("demo", "call-1", "5551234567", "800", "800", {"arg_1": "x"})
    assert await runtime.router.route(query) == RouteDecision("support", "6001", 0, "last_agent")

    traces = load_replay([TRACES / "inbound-answered.jsonl"])
    ids = iter(f"call-{n}" for n in range(1, 10))
    ReplayAdapter(
        "demo", traces, hub.publish, start_time=T0, call_id_factory=lambda: next(ids)
    ).run_to_end()
    pops = [e for e in seen if isinstance(e, ev.ScreenPop)]
    assert len(pops) == 1 and runtime.pops.synchronous == 1  # the routing lookup was cached
    (pop,) = pops
    delivered = seen[seen.index(pop) - 1]
    assert isinstance(delivered, ev.Delivered) and delivered.agent == "6001"
    assert pop.customer is not None and pop.customer["name"] == "Alice Customer"
    assert [i["call_id"] for i in pop.customer["interactions"]] == [
        "demo-seed-2",
        "demo-seed-1",
    ]

    await runtime.close()  # writes the audit and the interaction
    (decision,) = stored_decisions(routing_url, "call-1")
    assert decision["rule"] == "last_agent"
    assert runtime.recorder.written == 1


@pytest_twisted.ensureDeferred
async def test_the_runtime_starts_with_the_database_down(
    routing_pg_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.routing_outages import closed_port_url

    url = closed_port_url(routing_pg_database)
    config = load_config(config_file(tmp_path, url))
    hub = Hub()
    runtime = await start_routing(config, url, hub, hub.tracker, Clock(), tmp_path / "st")
    assert "routing: cannot load queues and agents from" in caplog.text
    runtime.recorder.max_buffer = 0  # nothing to write: the close is quick
    await runtime.close()


def test_import_seed_explain_and_simulate_from_the_command_line(
    routing_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(config_file(tmp_path, routing_url))
    good = tmp_path / "good.csv"
    good.write_text("account,name,phones,tier\nX-1,Xavier,5552223333,VIP\n")
    assert ctilink("db", "import", str(good), "-c", config) == 0
    assert capsys.readouterr().out.startswith(f"{good}: imported 1 customer(s) in ")

    bad = tmp_path / "bad.csv"
    bad.write_text("account,name,phones\nY-1,Yves,nope\nY-2,,5552224444\n")
    assert ctilink("db", "import", str(bad), "-c", config) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}: line 2: phones: 'nope' is not a phone number (read as dialled in region US)",
        f"{bad}: line 3: name: missing",
        f"{bad}: rejected: 2 bad row(s) in 2; nothing was imported",
    ]
    assert ctilink("db", "import", str(bad), "--on-error", "skip", "-c", config) == 0
    assert capsys.readouterr().out.startswith(f"{bad}: imported 0 customer(s) in ")
    assert ctilink("db", "import", str(tmp_path / "none.csv"), "-c", config) == 2
    assert "none.csv: cannot read" in capsys.readouterr().err

    assert ctilink("db", "seed-demo", "-c", config) == 0
    assert "demo directory in place (3 customers, 4 agents, 2 queues)" in capsys.readouterr().out

    traces = [str(DEMO_TRACES[1]), str(DEMO_TRACES[4])]  # inbound-answered, routed-fastagi
    done = ctilink_process("route", "simulate", *traces, "--switch", "demo", "-c", config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" from 5551234567 to 800: queue support, priority 0 (rule queue)")
    assert lines[1].endswith(" from 5554446666 to 803: queue sales, priority 10 (rule vip)")
    assert done.stderr == "2 arriving call(s) simulated; nothing was written\n"
    assert stored_decisions(routing_url, lines[0].split()[2]) == []  # nothing written

    done = ctilink_process("route", "simulate", traces[0], "--explain", "-c", config)
    assert done.returncode == 0, done.stderr
    assert "    identify         found       customer " in done.stdout
    assert "    candidate last_agent: 6001 score " in done.stdout

    assert ctilink("route", "explain", "no-such-call", "-c", config) == 1
    assert capsys.readouterr().err == (
        "ctilink route explain: no routing decision stored for call no-such-call\n"
    )


@pytest_twisted.ensureDeferred
async def test_explain_prints_a_stored_decision(routing_url: str, tmp_path: Path) -> None:
    seed_demo(routing_url)
    config = load_config(config_file(tmp_path, routing_url))
    hub = Hub()
    clock = Clock()
    clock.advance(T0)
    runtime = await start_routing(config, routing_url, hub, hub.tracker, clock, tmp_path / "st")
    hub.publish(ev.AgentReady(switch="demo", time=T0 - 90, agent="6002", state=AgentState.READY))
    query = RouteQuery("demo", "c-42", "5554446666", "803", "803", {"queue": "support"})
    await runtime.router.route(query)
    await runtime.close()

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert ctilink("route", "explain", "c-42", "-c", str(config.source)) == 0
    assert out.getvalue().splitlines() == [
        "call c-42 on switch demo (tenant default), 2026-11-22T13:53:50.000Z",
        "  request:  from 5554446666 to 803 at route point 803; data queue=support",
        "  decision: agent 6002 in queue support, priority 10 by rule skills in "
        + out.getvalue().split(" by rule skills in ")[1].split("\n")[0],
        "  steps:",
        "    target           queue       support (route data queue)",
        "    business_hours   open        support: open 24/7",
        "    identify         found       customer 3 Dana Vip (account VIP-003) by number"
        " +15554446666",
        "    vip              raised      tier VIP: priority 10",
        "    last_agent       passed      no answered call in the recent history",
        "    preferred_agent  unavailable 6003 is preferred: unknown to the switch",
        "    skills           decided     6002 scores 3 on support>=1",
        "  candidates:",
        "    preferred_agent  6003       score 1.0      available no  unknown to the switch",
        "    skills           6002       score 3        available yes meets support>=1 idle 90 s",
    ]


def test_route_commands_want_a_migrated_database_and_a_good_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(config_file(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}"))
    assert ctilink("route", "explain", "x", "-c", config) == 2
    assert "is not at the current schema: run `ctilink db upgrade -c" in capsys.readouterr().err
    (tmp_path / "broken.toml").write_text("[routing]\nstrategies = ['nope']\n")
    assert ctilink("route", "explain", "x", "-c", str(tmp_path / "broken.toml")) == 2
    assert capsys.readouterr().err.startswith("ctilink route: ")


def test_simulate_reads_csta_traces_as_replay_does() -> None:
    from ctilink.routing.simulate import arrivals
    from tests.conftest import FIXTURES

    def requests(path: Path) -> list[tuple[str | None, str | None, str | None]]:
        found = arrivals([path])
        return [(a.query.calling_number, a.query.called_number, a.query.route_point) for a in found]

    csta = requests(FIXTURES / "csta" / "inbound-answered.jsonl")  # the same story over CSTA
    assert csta == requests(TRACES / "inbound-answered.jsonl") == [("5551234567", "800", "800")]
