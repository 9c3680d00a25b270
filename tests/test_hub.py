"""The hub: numbering, the tracker first, consumers in order, a failing consumer, and
events published by consumers."""

from __future__ import annotations

import logging

import pytest

from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.model.states import AgentState

T0 = 1_795_355_600.0


def ready(agent: str) -> ev.AgentReady:
    return ev.AgentReady(switch="pbx", time=T0, agent=agent, state=AgentState.READY)


def test_events_are_numbered_and_applied_to_the_tracker_before_any_consumer() -> None:
    hub = Hub(first_seq=41)
    seen: list[tuple[int, int]] = []
    hub.subscribe(lambda event: seen.append((event.seq, hub.tracker.last_seq)))
    published = [hub.publish(ready("6001")), hub.publish(ready("6002"))]
    assert [event.seq for event in published] == [41, 42]
    assert seen == [(41, 41), (42, 42)]  # the tracker already holds the event
    assert hub.last_seq == 42


def test_a_failing_consumer_is_logged_and_the_others_carry_on(
    logged_errors: list[logging.LogRecord],
) -> None:
    hub = Hub()
    seen: list[int] = []

    def broken(event: ev.Event) -> None:
        raise ValueError("a bug")

    hub.subscribe(broken)
    hub.subscribe(lambda event: seen.append(event.seq))
    hub.publish(ready("6001"))
    hub.publish(ready("6002"))
    assert seen == [1, 2]
    assert [r.getMessage() for r in logged_errors] == [
        f"consumer {broken!r} failed on event seq=1 (agent_ready)",
        f"consumer {broken!r} failed on event seq=2 (agent_ready)",
    ]


@pytest.mark.parametrize("publisher_at", [0, 1, 2])
def test_events_published_by_a_consumer_reach_every_consumer_in_seq_order(
    publisher_at: int,
) -> None:
    """Wherever the consumer that publishes (a screen popper) subscribed, every consumer
    sees the event that caused the publication first, then what was published."""
    hub = Hub()
    seen: dict[str, list[tuple[int, str]]] = {"a": [], "b": []}

    def pops(event: ev.Event) -> None:
        if isinstance(event, ev.AgentReady) and event.agent == "6001":
            popped = hub.publish(ready("pop-1"))
            assert popped.seq == event.seq + 1  # numbered at once
            hub.publish(ready("pop-2"))

    def recorder(name: str) -> object:
        return lambda event: seen[name].append((event.seq, event.agent))

    order = [recorder("a"), recorder("b")]
    order.insert(publisher_at, pops)
    for consumer in order:
        hub.subscribe(consumer)  # type: ignore[arg-type]
    hub.publish(ready("6001"))
    hub.publish(ready("6002"))
    expected = [(1, "6001"), (2, "pop-1"), (3, "pop-2"), (4, "6002")]
    assert seen == {"a": expected, "b": expected}
    assert hub.tracker.last_seq == 4


def test_numbering_continues_after_a_stored_seq_and_never_goes_back() -> None:
    hub = Hub()
    hub.restart_numbering(100)  # the event log's last stored seq was 99
    assert hub.publish(ready("6001")).seq == 100
    with pytest.raises(RuntimeError):
        hub.restart_numbering(50)
    assert hub.publish(ready("6002")).seq == 101
