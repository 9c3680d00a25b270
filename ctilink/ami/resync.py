"""Resync: after every (re)connect, make ctilink's view match what Asterisk has now.

Theory of operation
-------------------
The live adapter asks for ``CoreShowChannels`` and ``QueueStatus`` right after login and
keeps handling live events while the lists arrive. ``begin`` marks the moment the lists
were asked for; ``finish`` compares them with the normalizer's channels and agents:

* a channel ctilink knew before the mark that the switch no longer lists ended while the
  link was down: it is hung up with cause ``resync`` (its call clears with that cause);
* a listed channel ctilink does not know, and did not see hang up since the mark, started
  while the link was down: it is added, and each call made only of such channels is
  announced in its current state (the caller's arrival, ``queued`` with its position from
  ``QueueEntry``, ``delivered`` for parties ringing, ``established`` for parties up);
* a known channel that is now up where its party was still ringing is ``established``;
* queue members are compared one (agent, queue) at a time: logged on/off, paused
  (reason), device state, through the agent book.

Only differences produce events, so a client that was connected throughout sees no
duplicate, and one that connects afterwards gets the same state from the snapshot.
Channels created or hung up during the window are left to their live events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ctilink.ami import names
from ctilink.ami.calls import Call, CallBook, Channel
from ctilink.ami.connections import Connections, age_of
from ctilink.ami.message import AmiMessage
from ctilink.ami.normalizer import AmiNormalizer
from ctilink.model.states import LocalConnectionState as LCS

_UP = 6
_RINGING = 5


@dataclass
class ResyncReport:
    channels: int = 0
    cleared_channels: int = 0
    added_channels: int = 0
    added_calls: int = 0

    def __str__(self) -> str:
        return (
            f"{self.channels} channels on the switch; {self.cleared_channels} ended while"
            f" the link was down, {self.added_channels} new in {self.added_calls} calls"
        )


class Resync:
    def __init__(self, normalizer: AmiNormalizer) -> None:
        self.normalizer = normalizer
        self._mark = 0

    def begin(self) -> None:
        book = self.normalizer.calls
        self._mark = book.generation
        book.hung_up_during_resync = set()

    def finish(
        self,
        channels: Iterable[AmiMessage],
        queue_status: Iterable[AmiMessage] | None,
        time: float,
    ) -> ResyncReport:
        """Reconcile; ``queue_status`` None leaves agents as they are (nothing to compare)."""
        book = self.normalizer.calls
        connections = self.normalizer.connections
        connections.now = self.normalizer.agents.now = time
        gone = book.hung_up_during_resync or set()
        book.hung_up_during_resync = None
        listed = {
            uid: item
            for item in channels
            if item.name == "CoreShowChannel" and (uid := item.get("Uniqueid"))
        }
        status = list(queue_status or ())
        report = ResyncReport(channels=len(listed))
        for old in [c for c in book.by_uid.values() if c.born <= self._mark]:
            if old.uniqueid not in listed:
                connections.hang_up(old, None, cause="resync")
                report.cleared_channels += 1
        new_calls: dict[str, Call] = {}
        grown: dict[str, Call] = {}  # known calls with parties that joined during the gap
        for uid, item in sorted(listed.items(), key=lambda pair: age_of(pair[0])):
            known = book.by_uid.get(uid)
            if known is None and uid in gone:
                continue
            found = book.channel(item)
            if found is None:
                continue
            chan = found
            chan.complete = True
            chan.bridge = names.known(item.get("BridgeId"))
            if known is None:
                report.added_channels += 1
                target = grown if chan.call.announced else new_calls
                target[chan.call.call_id] = chan.call
            elif chan.leg is not None and chan.state == _UP:
                connections.established(chan.leg, chan.call)
        entries = {item.get("Uniqueid", ""): item for item in status if item.name == "QueueEntry"}
        agents = _agent_devices(status)
        for call in new_calls.values():
            _present(connections, call, entries)
        for call in (*new_calls.values(), *grown.values()):
            _parties(connections, call, agents)
        report.added_calls = len(new_calls)
        if queue_status is not None:
            self.normalizer.agents.reconcile(i for i in status if i.name == "QueueMember")
        return report


def _agent_devices(status: list[AmiMessage]) -> dict[str, str]:
    """Device → agent id, from the QueueMember items (Location / StateInterface)."""
    out: dict[str, str] = {}
    for item in status:
        if item.name != "QueueMember":
            continue
        agent = names.device_of_dialstring(item.get("Location") or item.get("Interface"))
        device = names.device_of_dialstring(item.get("StateInterface")) or agent
        if agent is not None and device is not None:
            out[device] = agent
    return out


def _present(connections: Connections, call: Call, entries: dict[str, AmiMessage]) -> None:
    """Announce a call first seen at resync, and its queue position if it waits in one."""
    connections.announce(call)
    leg = call.caller_leg
    for uid in leg.channels if leg is not None else ():
        entry = entries.get(uid)
        if entry is not None:
            position = names.parse_int(entry.get("Position")) or 1
            connections.queued(call, entry.get("Queue", ""), position, None)
            return


def _parties(connections: Connections, call: Call, agents: dict[str, str]) -> None:
    """A party for each channel of the call without one, ringing or connected as it is."""
    book = connections.book
    for chan in list(call.channels.values()):
        if chan.leg is not None:
            continue
        leg = book.new_leg(chan, names.device_of_channel(chan.name))
        leg.agent = agents.get(leg.device or "")
        state = _liveliest(book, chan).state
        if state == _UP:
            leg.state = LCS.ALERTING
            connections.established(leg, call)
        elif state == _RINGING:
            connections.deliver(call, leg)


def _liveliest(book: CallBook, chan: Channel) -> Channel:
    """For a Local pair, the half that shows the party's state (the one further on)."""
    partner = book.partner(chan)
    return partner if partner is not None and partner.state >= chan.state else chan
