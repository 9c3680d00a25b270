"""Test helpers: replay fixture traces or hand-built AMI through the real adapter path."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ctilink.adapters.ami import AmiInbound
from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.ami.codec import serialize
from ctilink.ami.message import AmiMessage
from ctilink.ami.normalizer import AmiNormalizer
from ctilink.hub import Hub
from ctilink.model.events import Event
from ctilink.model.wire import event_to_wire
from tests.conftest import TRACES

START = 1795355600.0  # 2026-11-22T13:53:20Z, the day the traces were captured


def counter_ids(prefix: str = "call") -> Any:
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers)}"


class Recorder:
    """A hub with every published event kept, as model objects and as wire objects."""

    def __init__(self) -> None:
        self.hub = Hub()
        self.events: list[Event] = []
        self.hub.subscribe(self.events.append)

    @property
    def wire(self) -> list[dict[str, Any]]:
        return [event_to_wire(event) for event in self.events]

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [w for w in self.wire if w["type"] in types]


def replay_files(*paths: Path, switch: str = "pbx", start_time: float | None = START) -> Recorder:
    recorder = Recorder()
    adapter = ReplayAdapter(
        switch,
        load_replay(paths),
        recorder.hub.publish,
        start_time=start_time,
        call_id_factory=counter_ids(),
    )
    adapter.run_to_end()
    return recorder


def replay_fixture(name: str) -> Recorder:
    return replay_files(TRACES / name)


class AmiFeed:
    """Feed hand-built AMI events (as bytes, through the codec) into a fresh normalizer."""

    def __init__(self, switch: str = "pbx") -> None:
        self.recorder = Recorder()
        self.normalizer = AmiNormalizer(
            switch, self.recorder.hub.publish, call_id_factory=counter_ids()
        )
        self.inbound = AmiInbound(self.normalizer)
        self.inbound.data_received(b"Asterisk Call Manager/11.0.0\r\n", START)
        self.t = START

    def send(self, event: str, *blocks: Iterable[tuple[str, str]], **fields: str) -> None:
        headers = [("Event", event), ("Privilege", "call,all")]
        for block in blocks:
            headers.extend(block)
        headers.extend((key.replace("_", "-"), value) for key, value in fields.items())
        self.t += 0.01
        self.inbound.data_received(serialize(AmiMessage(headers)), self.t)

    @property
    def wire(self) -> list[dict[str, Any]]:
        return self.recorder.wire


def chan(
    name: str,
    uid: str,
    *,
    linkedid: str | None = None,
    state: int = 6,
    caller: str = "<unknown>",
    exten: str = "s",
    context: str = "default",
    prefix: str = "",
) -> list[tuple[str, str]]:
    """A channel block as Asterisk 22 writes it (main/manager_channels.c field order)."""
    states = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}
    return [
        (f"{prefix}Channel", name),
        (f"{prefix}ChannelState", str(state)),
        (f"{prefix}ChannelStateDesc", states.get(state, "Unknown")),
        (f"{prefix}CallerIDNum", caller),
        (f"{prefix}CallerIDName", "<unknown>"),
        (f"{prefix}ConnectedLineNum", "<unknown>"),
        (f"{prefix}ConnectedLineName", "<unknown>"),
        (f"{prefix}Language", "en"),
        (f"{prefix}AccountCode", ""),
        (f"{prefix}Context", context),
        (f"{prefix}Exten", exten),
        (f"{prefix}Priority", "1"),
        (f"{prefix}Uniqueid", uid),
        (f"{prefix}Linkedid", linkedid or uid),
    ]
