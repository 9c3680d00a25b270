"""Real-time statistics from replayed Asterisk traces and hand-made event stories: the
figures, the published ``queue_stats`` / ``agent_stats`` events (schema, change-only, rate
limit, stream order) and the REST view over a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import AgentState
from ctilink.model.states import LocalConnectionState as LCS
from ctilink.model.wire import event_to_wire
from ctilink.screenpop.stats import Statistics
from tests._schemas import validate_wire
from tests.aio import aio_test
from tests.conftest import TRACES
from tests.replaying import START, Recorder, counter_ids
from tests.test_api_support import ApiServer, ScriptedAdapter, agent_ready, queued, request


def replayed(*names: str, **options: Any) -> tuple[Recorder, Statistics, Clock]:
    """The traces replayed through the real adapter path, with statistics consuming."""
    recorder, clock = Recorder(), Clock()
    stats = Statistics(recorder.hub, clock, **options)
    adapter = ReplayAdapter(
        "pbx",
        load_replay([TRACES / name for name in names]),
        recorder.hub.publish,
        start_time=START,
        call_id_factory=counter_ids(),
    )
    adapter.run_to_end()
    return recorder, stats, clock


def figures(stats: Statistics, queue: str = "support", now: float = START + 60) -> dict[str, Any]:
    wire = event_to_wire(stats.queue_stats("pbx", queue, now))
    return {k: v for k, v in wire.items() if k not in ("seq", "type", "time", "switch")}


def test_inbound_answered_one_answered_in_a_second() -> None:
    _, stats, _ = replayed("inbound-answered.jsonl")
    got = figures(stats)
    assert got["calls_offered"] == got["calls_answered"] == got["answered_within_target"] == 1
    assert got["calls_abandoned"] == got["calls_waiting"] == 0
    assert got["average_speed_of_answer_seconds"] == pytest.approx(1.0, abs=0.01)  # 1.001 s
    assert got["service_level_percent"] == 100.0
    assert got["service_level_target_seconds"] == 20.0
    agent = stats.agent_stats("pbx", "6001", START + 60)
    assert agent is not None
    assert (agent.state, agent.calls_handled, agent.agent_name) == (
        AgentState.READY,
        1,
        "Agent Alice",
    )


def test_inbound_abandoned_one_abandoned() -> None:
    _, stats, _ = replayed("inbound-abandoned.jsonl")
    got = figures(stats)
    assert (got["calls_offered"], got["calls_abandoned"], got["calls_answered"]) == (1, 1, 0)
    assert got["service_level_percent"] == 0.0
    assert "average_speed_of_answer_seconds" not in got  # none answered: unknown
    # Both agents were paused (lunch) while the caller waited, then became ready.
    assert (got["agents_ready"], got["agents_not_ready"]) == (2, 0)


def test_two_traces_add_up_and_the_target_is_per_queue() -> None:
    _, stats, _ = replayed(
        "inbound-answered.jsonl", "inbound-abandoned.jsonl", targets={"support": 0.5}
    )
    got = figures(stats)
    assert (got["calls_offered"], got["calls_answered"], got["calls_abandoned"]) == (2, 1, 1)
    assert (got["answered_within_target"], got["service_level_percent"]) == (0, 0.0)
    assert got["service_level_target_seconds"] == 0.5


def test_agent_state_time_in_state_and_reason() -> None:
    _, stats, _ = replayed("agent-login.jsonl")
    agent = stats.agent_stats("pbx", "6004", START + 10)
    assert agent is not None
    assert agent.state is AgentState.LOGGED_OFF and agent.queues == ()
    hub, clock = Hub(), Clock()
    stats = Statistics(hub, clock)
    hub.publish(agent_ready("6001", "support"))
    hub.publish(
        ev.AgentNotReady(
            switch="pbx", time=START + 5, agent="6001", state=AgentState.NOT_READY,
            queue="support", reason="lunch",
        )
    )  # fmt: skip
    agent = stats.agent_stats("pbx", "6001", START + 65)
    assert agent is not None
    assert (agent.state, agent.reason, agent.seconds_in_state) == (
        AgentState.NOT_READY,
        "lunch",
        60.0,
    )
    assert figures(stats)["agents_not_ready"] == 1


def _call(cls: type[ev.CallEvent], call_id: str, device: str, at: float, **kw: Any) -> Any:
    return cls(
        switch="pbx", time=at, call_id=call_id, device=device, calling_number="5559876543",
        called_number="800", connection_state=kw.pop("state", LCS.CONNECTED), **kw,
    )  # fmt: skip


def test_waits_answers_and_leaving_the_queue() -> None:
    hub, clock = Hub(), Clock()
    stats = Statistics(hub, clock, service_level_target=10.0)
    hub.publish(queued("a", "support", at=START))
    hub.publish(queued("b", "support", at=START + 1))
    hub.publish(queued("c", "support", at=START + 2))
    hub.publish(queued("d", "support", at=START + 2))
    assert figures(stats, now=START + 4)["longest_wait_seconds"] == 4.0
    hub.publish(queued("a", "support", at=START + 3))  # again: still one offer, first time
    hub.publish(_call(ev.Established, "a", "6001", START + 8, agent="6001", queue="support"))
    hub.publish(_call(ev.Established, "b", "6002", START + 21, agent="6002", queue="support"))
    hub.publish(_call(ev.Diverted, "c", "support", START + 30, queue="support", state=LCS.NULL))
    hub.publish(_call(ev.CallCleared, "d", None, START + 31, cause="resync", state=None))
    got = figures(stats, now=START + 40)
    assert (got["calls_offered"], got["calls_answered"], got["calls_abandoned"]) == (4, 2, 0)
    assert (got["answered_within_target"], got["service_level_percent"]) == (1, 50.0)
    assert got["average_speed_of_answer_seconds"] == 14.0  # (8 + 20) / 2
    assert got["calls_waiting"] == 0 and got["longest_wait_seconds"] == 0.0
    assert stats.handled == {("pbx", "6001"): 1, ("pbx", "6002"): 1}


def test_published_events_follow_changes_validate_and_keep_stream_order() -> None:
    recorder, _, clock = replayed("inbound-answered.jsonl")
    before = len(recorder.events)
    clock.advance(0)
    published = recorder.events[before:]
    assert {e.TYPE for e in published} == {"queue_stats", "agent_stats"}
    for event in published:
        validate_wire(event_to_wire(event))
    (support,) = [e for e in published if isinstance(e, ev.QueueStats)]
    assert (support.queue, support.calls_answered) == ("support", 1)
    seqs = [e.seq for e in recorder.events]
    assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))
    clock.advance(5)
    assert len(recorder.events) == before + len(published)  # nothing changed: nothing sent


def test_at_most_one_publication_per_second_per_queue_with_the_latest_figures() -> None:
    recorder, clock = Recorder(), Clock()
    stats = Statistics(recorder.hub, clock)

    def published() -> list[int]:
        return [e.calls_waiting for e in recorder.events if isinstance(e, ev.QueueStats)]

    recorder.hub.publish(queued("c0", "support"))
    clock.advance(0)
    assert published() == [1]
    for index in range(1, 6):
        recorder.hub.publish(queued(f"c{index}", "support"))
        clock.advance(0.1)
    assert published() == [1]  # within the second: held back
    clock.advance(0.5)
    assert published() == [1, 6]  # then once, with the figures as they are then
    clock.advance(10)
    assert published() == [1, 6]
    assert stats.published == 2


def test_reset_starts_the_counters_again() -> None:
    _, stats, clock = replayed("inbound-answered.jsonl")
    clock.advance(3600)
    stats.reset()
    got = figures(stats)
    assert (got["calls_offered"], got["calls_answered"]) == (0, 0)
    assert got["counters_since"] == "1970-01-01T01:00:00.000Z"
    assert stats.handled == {}


def test_a_switch_event_never_waits_for_statistics() -> None:
    """Publishing happens on the clock: inside the hub's call, nothing is published."""
    recorder, clock = Recorder(), Clock()
    Statistics(recorder.hub, clock)
    recorder.hub.publish(queued("c1", "support"))
    assert [e.TYPE for e in recorder.events] == ["queued"]


@pytest.fixture
def server() -> Iterator[ApiServer]:
    hub = Hub()
    running = ApiServer(hub, {"pbx": ScriptedAdapter("pbx", "acme")})
    traces = load_replay([TRACES / "inbound-answered.jsonl", TRACES / "inbound-abandoned.jsonl"])
    ReplayAdapter("pbx", traces, hub.publish, start_time=START).run_to_end()
    yield running
    pytest_twisted.blockon(running.closed())


@aio_test
async def test_rest_queue_statistics(server: ApiServer) -> None:
    reply = await request("GET", server.url("/stats/queues"), token="acme-read")
    assert reply.status == 200
    (support,) = reply.body["queues"]
    assert (support["switch"], support["queue"]) == ("pbx", "support")
    assert (support["calls_answered"], support["calls_abandoned"]) == (1, 1)
    assert support["service_level_percent"] == 50.0
    only = await request("GET", server.url("/stats/queues?queue=sales"), token="acme-read")
    assert only.body["queues"] == []
    limited = await request("GET", server.url("/stats/queues"), token="acme-sales")
    assert limited.body["queues"] == []  # a sales-only token does not see support


@aio_test
async def test_rest_agent_statistics(server: ApiServer) -> None:
    reply = await request("GET", server.url("/stats/agents"), token="acme-read")
    agents = {a["agent"]: a for a in reply.body["agents"]}
    assert set(agents) == {"6001", "6002"}
    assert agents["6001"]["calls_handled"] == 1
    assert agents["6002"]["queues"] == ["support"] and agents["6002"]["state"] == "ready"
    assert agents["6002"]["seconds_in_state"] >= 0
    mine = await request("GET", server.url("/stats/agents"), token="acme-6001")
    assert [a["agent"] for a in mine.body["agents"]] == ["6001"]
    in_support = await request("GET", server.url("/stats/agents?queue=support"))
    assert [a["agent"] for a in in_support.body["agents"]] == ["6001", "6002"]
    in_sales = await request("GET", server.url("/stats/agents?queue=sales"))
    assert in_sales.body["agents"] == []


def test_stats_events_round_trip_their_schema() -> None:
    _, stats, _ = replayed("inbound-abandoned.jsonl")
    for item in [*stats.all_queue_stats(START + 9), *stats.all_agent_stats(START + 9)]:
        validate_wire(event_to_wire(replace(item, seq=1)))
