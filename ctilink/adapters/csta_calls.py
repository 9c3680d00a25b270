"""CSTA calls as ctilink calls: the records and their bookkeeping.

Theory of operation
-------------------
A CSTA switch names a call by its ``callID`` and a device's part in it by a
``ConnectionID``; it may give a call a new callID (a transfer or conference joins two
calls into one with fresh ids). A CTI client wants one call id for the life of the call,
so ``CallBook`` keeps:

``CstaCall``
    the ctilink call: ``call_id`` chosen once, ``switch_ids`` the callIDs the switch uses
    for it now (usually one), the calling and called numbers, call data, and one ``Party``
    per device in it.
``Party``
    one device's connection to the call: its CSTA ``LocalConnectionState``, the exact
    ``ConnectionID`` the switch gave for it (what call control sends back), and, for a
    party reached through a queue, the agent and queue. A ``routing`` party is the route
    point or queue (ACD group) the call sits at: not a person, so it never gets a
    ``connection_cleared`` of its own.

A callID may start a call only through an event that creates a connection (delivered,
established, queued...); an event about an unknown callID that only ends or changes one
(a duplicate report from a second monitor, a call already cleared) is ignored. Calls made
by ctilink (make call, consultation call) are announced with the call id the command
returned: ``expect(device, call_id)`` before the request, ``bind`` once the switch's
result names the callID. The book emits nothing: ``csta_events`` decides every event.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ctilink.model.states import LocalConnectionState as LCS

MAX_EXPECTED = 10_000


@dataclass(eq=False)
class Party:
    device: str
    state: LCS
    connection: Any = None  # the ConnectionID value as the switch sent it
    routing: bool = False  # a route point or queue the call sits at, not a person
    agent: str | None = None
    queue: str | None = None


@dataclass(eq=False)
class CstaCall:
    call_id: str
    born: int
    switch_ids: list[bytes] = field(default_factory=list)
    calling: str | None = None
    called: str | None = None
    caller: str | None = None  # the device whose call it is (inbound caller or initiator)
    queue: str | None = None
    agent: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    parties: dict[str, Party] = field(default_factory=dict)
    announced: bool = False
    answered: bool = False
    abandoned: bool = False
    originated: bool = False
    network_reached: bool = False
    failure: str | None = None  # why a party could not be reached
    end_cause: tuple[str, int | None] | None = None
    route_position: str | None = None  # the route point or queue the call was last at

    @property
    def switch_call_id(self) -> bytes | None:
        return self.switch_ids[0] if self.switch_ids else None

    def people(self) -> list[Party]:
        """The parties that are devices (people, trunks), not routing positions."""
        return [party for party in self.parties.values() if not party.routing]


class CallBook:
    def __init__(self, call_id_factory: Callable[[], str]) -> None:
        self._new_id = call_id_factory
        self.calls: dict[str, CstaCall] = {}
        self.by_switch_id: dict[bytes, CstaCall] = {}
        self.expected: OrderedDict[str, str] = OrderedDict()  # device -> call_id
        self._generation = itertools.count(1)
        self.generation = 0
        self.forgotten: set[bytes] | None = None  # callIDs ended while a resync runs

    def find(self, switch_id: bytes | None) -> CstaCall | None:
        return self.by_switch_id.get(switch_id) if switch_id is not None else None

    def start(self, switch_id: bytes, device: str | None = None) -> CstaCall:
        """The call ``switch_id`` names, created if new (with the id ctilink promised for a
        call ``device`` was asked to make, if any)."""
        call = self.by_switch_id.get(switch_id)
        if call is not None:
            return call
        call_id = self.expected.pop(device, None) if device is not None else None
        call = self._create(call_id or self._new_id())
        self._alias(call, switch_id)
        return call

    def _create(self, call_id: str) -> CstaCall:
        self.generation = next(self._generation)
        call = CstaCall(call_id, self.generation)
        self.calls[call_id] = call
        return call

    def _alias(self, call: CstaCall, switch_id: bytes) -> None:
        if switch_id not in call.switch_ids:
            call.switch_ids.append(switch_id)
        self.by_switch_id[switch_id] = call

    def expect(self, device: str, call_id: str) -> None:
        """The next call ``device`` makes is ``call_id`` (a make call ctilink sent)."""
        self.expected[device] = call_id
        self.expected.move_to_end(device)
        while len(self.expected) > MAX_EXPECTED:
            self.expected.popitem(last=False)

    def bind(self, switch_id: bytes, device: str, call_id: str) -> None:
        """The switch answered a make call: ``switch_id`` is the call ``call_id``."""
        if self.expected.get(device) == call_id:
            del self.expected[device]
        if switch_id in self.by_switch_id:
            return  # its events came first
        call = self.calls.get(call_id) or self._create(call_id)
        self._alias(call, switch_id)

    def rekey(self, call: CstaCall, switch_ids: Iterable[bytes]) -> None:
        """The switch now names ``call`` by ``switch_ids`` (after a transfer, conference)."""
        fresh = [switch_id for switch_id in dict.fromkeys(switch_ids)]
        if not fresh:
            return
        for old in call.switch_ids:
            if self.by_switch_id.get(old) is call and old not in fresh:
                del self.by_switch_id[old]
        call.switch_ids = []
        for switch_id in fresh:
            self._alias(call, switch_id)

    def merge(self, merged: CstaCall, survivor: CstaCall, leaving: str | None) -> None:
        """``merged``'s parties (but ``leaving``) and data join ``survivor``; it is forgotten."""
        for device, party in merged.parties.items():
            if device != leaving:
                survivor.parties.setdefault(device, party)
        for key, value in merged.data.items():
            survivor.data.setdefault(key, value)
        for switch_id in merged.switch_ids:
            if self.by_switch_id.get(switch_id) is merged:
                self._alias(survivor, switch_id)
        merged.switch_ids = []
        self.calls.pop(merged.call_id, None)

    def forget(self, call: CstaCall) -> None:
        self.calls.pop(call.call_id, None)
        if self.forgotten is not None:
            self.forgotten.update(call.switch_ids)
        for switch_id in call.switch_ids:
            if self.by_switch_id.get(switch_id) is call:
                del self.by_switch_id[switch_id]
