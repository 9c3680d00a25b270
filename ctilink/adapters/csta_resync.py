"""Resync after a (re)connect: make ctilink's calls match the switch's snapshots.

Theory of operation
-------------------
Right after the monitors are started again, the live adapter asks ``snapshotDevice`` for
every monitored object and keeps handling live events while the answers arrive. ``begin``
marks that moment; ``finish`` compares the snapshots with the calls ctilink knew before
the mark:

* a known call that involves a snapshotted device but appears in no snapshot ended while
  the link was down: its parties and the call are cleared with cause ``resync``;
* a known call still listed loses the parties whose (snapshotted) device no longer shows
  it (``connection_cleared``, cause ``resync``), and a party whose state changed gets the
  event that says so (``established``, ``held``, ``retrieved``);
* a listed call ctilink does not know, and did not see end since the mark, started while
  the link was down: it is announced in its current state (``delivered``, ``queued``,
  ``established`` per party; its numbers are unknown: a snapshot does not carry them).

A device whose snapshot failed (``None``) proves nothing, so nothing is concluded from
it. Only differences produce events, so a client connected throughout sees no duplicate.
Agents are aligned separately from ``getAgentState`` (``AgentBook.reconcile``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ctilink.adapters import csta_values as values
from ctilink.adapters.csta_calls import CstaCall, Party
from ctilink.adapters.csta_events import CstaNormalizer
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS

RESYNC: Final = "resync"

_STATES: Final = {
    "null": LCS.NULL,
    "initiated": LCS.INITIATED,
    "alerting": LCS.ALERTING,
    "connected": LCS.CONNECTED,
    "hold": LCS.HELD,
    "queued": LCS.QUEUED,
    "fail": LCS.FAIL,
}
# SimpleCallState (ECMA-269 6.1.3): the snapshotted device's own connection state.
_SIMPLE: Final = {
    "callNull": LCS.NULL, "callPending": LCS.INITIATED, "callOriginated": LCS.CONNECTED,
    "callDelivered": LCS.CONNECTED, "callDeliveredHeld": LCS.HELD,
    "callReceived": LCS.ALERTING, "callEstablished": LCS.CONNECTED,
    "callEstablishedHeld": LCS.HELD, "callReceivedOnHold": LCS.ALERTING,
    "callEstablishedOnHold": LCS.CONNECTED, "callQueued": LCS.CONNECTED,
    "callQueuedHeld": LCS.HELD, "callFailed": LCS.CONNECTED, "callFailedHeld": LCS.HELD,
    "callBlocked": LCS.FAIL,
}  # fmt: skip
# A party's state changed while the link was down: the event that says so.
_CHANGES: Final[Mapping[tuple[LCS, LCS], type[ev.CallEvent]]] = {
    (LCS.ALERTING, LCS.CONNECTED): ev.Established,
    (LCS.INITIATED, LCS.CONNECTED): ev.Established,
    (LCS.CONNECTED, LCS.HELD): ev.Held,
    (LCS.HELD, LCS.CONNECTED): ev.Retrieved,
}
_ANNOUNCE: Final[Mapping[LCS, type[ev.CallEvent]]] = {
    LCS.ALERTING: ev.Delivered,
    LCS.CONNECTED: ev.Established,
    LCS.HELD: ev.Held,
    LCS.INITIATED: ev.ServiceInitiated,
    LCS.FAIL: ev.Failed,
}


def own_state(call_state: Any) -> LCS | None:
    """The snapshotted device's connection state in a ``CallState``."""
    form, value = call_state
    if form == "compoundCallState" and value:
        return _STATES.get(value[0])
    if form == "simpleCallState":
        return _SIMPLE.get(value)
    return LCS.CONNECTED if form == "unknown" else None


@dataclass
class ResyncReport:
    calls: int = 0
    cleared_calls: int = 0
    cleared_parties: int = 0
    added_calls: int = 0

    def __str__(self) -> str:
        return (
            f"{self.calls} calls at the monitored devices; {self.cleared_calls} ended and"
            f" {self.cleared_parties} parties left while the link was down,"
            f" {self.added_calls} new"
        )


Listing = list[tuple[str, LCS, Any]]  # (device, its state, its ConnectionID)


class CstaResync:
    def __init__(self, normalizer: CstaNormalizer) -> None:
        self.normalizer = normalizer
        self._mark = 0

    def begin(self) -> None:
        self._mark = self.normalizer.book.generation
        self.normalizer.book.forgotten = set()

    def finish(
        self, snapshots: Mapping[str, Sequence[dict[str, Any]] | None], time: float
    ) -> ResyncReport:
        """Reconcile with ``snapshots``: device → its SnapshotDeviceData items, or None."""
        normalizer, book = self.normalizer, self.normalizer.book
        normalizer.now = normalizer.agents.now = time
        gone, book.forgotten = book.forgotten or set(), None
        seen = {device for device, items in snapshots.items() if items is not None}
        listed: dict[bytes, Listing] = {}
        for device, items in snapshots.items():
            for item in items or ():
                connection = item.get("connectionIdentifier")
                switch_id, _ = values.connection_parts(connection)
                state = own_state(item.get("localCallState", ("unknown", None)))
                if switch_id is not None and state not in (None, LCS.NULL):
                    assert state is not None
                    listed.setdefault(switch_id, []).append((device, state, connection))
        report = ResyncReport(calls=len(listed))
        for call in [c for c in book.calls.values() if c.born <= self._mark]:
            entries = [e for switch_id in call.switch_ids for e in listed.get(switch_id, ())]
            if entries:
                report.cleared_parties += self._align(call, entries, seen)
            elif not call.parties or any(device in seen for device in call.parties):
                normalizer.end_call(call, RESYNC, None)
                report.cleared_calls += 1
        for switch_id, entries in listed.items():
            if switch_id not in book.by_switch_id and switch_id not in gone:
                self._announce(book.start(switch_id), entries)
                report.added_calls += 1
        return report

    def _align(self, call: CstaCall, entries: Listing, seen: set[str]) -> int:
        normalizer = self.normalizer
        states = {device: (state, connection) for device, state, connection in entries}
        cleared = 0
        for party in list(call.parties.values()):
            if party.device in seen and party.device not in states:
                normalizer.clear_party(call, party, RESYNC, None)
                cleared += 1
        for device, (state, connection) in states.items():
            known = call.parties.get(device)
            if known is None:
                self._join(call, Party(device, state, connection))
                continue
            change = _CHANGES.get((known.state, state))
            known.state, known.connection = state, connection
            if change is not None:
                if change is ev.Established:
                    call.answered = True
                normalizer.emit(change, call, device, state, known)
        monitored = normalizer.monitored
        if call.parties and monitored is not None and not any(d in monitored for d in call.parties):
            normalizer.end_call(call, RESYNC, None)
        return cleared

    def _announce(self, call: CstaCall, entries: Listing) -> None:
        call.announced = True
        for device, state, connection in entries:
            self._join(call, Party(device, state, connection))

    def _join(self, call: CstaCall, party: Party) -> None:
        normalizer = self.normalizer
        call.parties[party.device] = party
        if party.state is LCS.QUEUED:
            party.routing = True
            call.queue = call.route_position = party.device
            normalizer.emit(ev.Queued, call, party.device, LCS.QUEUED, position=1)
            return
        cls = _ANNOUNCE.get(party.state)
        if cls is ev.Held:  # it was answered before it was held
            normalizer.emit(ev.Established, call, party.device, LCS.CONNECTED, party)
        if cls is ev.Established or cls is ev.Held:
            call.answered = True
        if cls is not None:
            normalizer.emit(cls, call, party.device, party.state, party)
