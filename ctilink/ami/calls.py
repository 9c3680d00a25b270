"""Asterisk channels grouped into ctilink calls and parties: the records.

Theory of operation
-------------------
Asterisk reports *channels*; a CTI client wants *calls* with *connections* (one per
device). Three records bridge the two:

``Channel``
    one Asterisk channel, keyed by ``Uniqueid``, as last described by the switch.
``Leg``
    one party's connection to the call: the channels that together are one device's
    participation. A Local channel's two halves (``;1``/``;2``) are one leg; what a
    dialled Local pair dials is the same party when it is the device the pair was dialled
    for (``Local/6001@agents`` reaching ``PJSIP/6001``). A leg holds the CSTA local
    connection state of its device.
``Call``
    the ctilink call: a ``call_id`` chosen once and never changed while any of the call's
    channels lives. Channels find their call by their Local partner, then by ``Linkedid``
    (Asterisk gives a dialled channel its caller's Linkedid). A re-keyed Linkedid is an
    alias: the call_id stays. Transfers merge the consultation call into the older call.

``CallBook`` keeps these records and their indexes and does the bookkeeping (create,
refresh, attach, move, merge, remove). It emits nothing: every CSTA event and every
connection-state change is decided in ``ctilink.ami.connections``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ctilink.ami import names
from ctilink.ami.message import AmiMessage
from ctilink.model.states import LocalConnectionState as LCS

PSEUDO_APPLICATIONS = frozenset({"", "AppDial", "AppDial2", "AppQueue"})
MAX_EXPECTED = 10_000


@dataclass(eq=False)
class Leg:
    device: str | None
    state: LCS = LCS.NULL
    channels: set[str] = field(default_factory=set)
    transparent: bool = False  # a Local pair: may reach its own device through ;2
    had_real: bool = False  # a non-Local channel has been part of this leg
    routing: bool = False  # stands for the routing device (the dialled number), not a party
    agent: str | None = None
    queue: str | None = None
    cause: str | None = None
    cause_code: int | None = None
    silent: bool = False  # left the call by transfer: no connection_cleared
    cleared: bool = False

    @property
    def active(self) -> bool:
        return not (self.silent or self.cleared)


@dataclass(eq=False)
class Call:
    call_id: str
    linkedid: str
    channels: dict[str, Channel] = field(default_factory=dict)
    legs: list[Leg] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)
    calling: str | None = None
    called: str | None = None
    caller_leg: Leg | None = None
    announced: bool = False
    make_call: bool = False
    originated_sent: bool = False
    route_position: str | None = None  # routing device or queue where the call waits
    redirected_from: str | None = None  # the device that last sent the call on
    queue: str | None = None
    agent: str | None = None
    answered: bool = False
    abandoned: bool = False
    failure: str | None = None  # why a party could not be reached (busy...), if one could not
    end_cause: tuple[str, int | None] | None = None
    data: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class Channel:
    uniqueid: str
    name: str
    call: Call
    linkedid: str = ""
    state: int = 0
    caller_num: str | None = None
    exten: str | None = None
    leg: Leg | None = None
    pair: str | None = None
    half: int = 0
    bridge: str | None = None
    cause: int | None = None
    originated: bool = False
    complete: bool = False  # its Newchannel (or a resync listing) was seen
    born: int = 0  # CallBook.generation when the channel was first seen


class CallBook:
    """Channels, legs and calls of one switch, and their indexes."""

    def __init__(
        self, new_call_id: Callable[[], str], call_data_variables: frozenset[str] = frozenset()
    ) -> None:
        self._new_call_id = new_call_id
        self.data_variables = call_data_variables
        self.by_uid: dict[str, Channel] = {}
        self.by_name: dict[str, Channel] = {}
        self.pairs: dict[str, dict[int, Channel]] = {}
        self.calls_by_linkedid: dict[str, Call] = {}
        self.calls: dict[str, Call] = {}  # call_id -> call
        # Uniqueids ctilink chose itself (Originate ChannelId, FastAGI lookups) -> the call
        # id (and dialled number) their call must get; bounded, oldest forgotten first.
        self.expected: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        # While a resync runs: Uniqueids hung up since it began (None otherwise), and the
        # creation counter, so channels born during the resync are told apart.
        self.hung_up_during_resync: set[str] | None = None
        self.generation = 0

    # -- finding and describing channels -------------------------------------------------
    def find(self, msg: AmiMessage, prefix: str = "") -> Channel | None:
        """The known channel ``msg`` is about, without refreshing it (cheap)."""
        uid = msg.get(prefix + "Uniqueid")
        chan = self.by_uid.get(uid) if uid else None
        if chan is None:
            name = msg.get(prefix + "Channel")
            chan = self.by_name.get(name) if name else None
        return chan

    def channel(self, msg: AmiMessage, prefix: str = "", create: bool = True) -> Channel | None:
        """The channel described by ``msg``'s (prefixed) channel block, refreshed from it."""
        uid = names.known(msg.get(prefix + "Uniqueid"))
        name = msg.get(prefix + "Channel")
        chan = self.by_uid.get(uid) if uid else None
        if chan is None and name:
            chan = self.by_name.get(name)
        if chan is None:
            if not (create and uid and name):
                return None
            chan = self._create(uid, name, names.known(msg.get(prefix + "Linkedid")) or uid)
        self._refresh(chan, msg, prefix)
        return chan

    def _create(self, uid: str, name: str, linkedid: str) -> Channel:
        pair = names.local_pair(name)
        partner = self.pairs.get(pair[0], {}).get(3 - pair[1]) if pair else None
        call = partner.call if partner else self.calls_by_linkedid.get(linkedid)
        if call is None:
            preset = self.expected.pop(uid, None) or self.expected.pop(linkedid, None)
            call_id, called = preset if preset is not None else (self._new_call_id(), None)
            call = Call(call_id, linkedid, make_call=called is not None, called=called)
            self.calls[call.call_id] = call
            self._alias(call, linkedid)
        self.generation += 1
        chan = Channel(uid, name, call, linkedid=linkedid, born=self.generation)
        if pair is not None:
            chan.pair, chan.half = pair
            self.pairs.setdefault(pair[0], {})[pair[1]] = chan
            if partner is not None and partner.leg is not None:
                self.attach(chan, partner.leg)
        call.channels[uid] = chan
        self.by_uid[uid] = chan
        self.by_name[name] = chan
        return chan

    def _refresh(self, chan: Channel, msg: AmiMessage, prefix: str) -> None:
        state = msg.get(prefix + "ChannelState")
        parsed = names.parse_int(state)
        if parsed is not None:
            chan.state = parsed
        caller = msg.get(prefix + "CallerIDNum")
        if caller is not None:
            chan.caller_num = names.known(caller)
        exten = msg.get(prefix + "Exten")
        if exten is not None:
            chan.exten = exten
        linkedid = names.known(msg.get(prefix + "Linkedid"))
        if linkedid and linkedid != chan.linkedid:
            chan.linkedid = linkedid
            self._alias(chan.call, linkedid)
        for key, value in msg.variables(prefix + "ChanVariable").items():
            chan.call.data[key] = value

    def is_call_data(self, variable: str) -> str | None:
        """The call-data name of a channel variable, or None if it is dialplan-internal.

        Inherited variables (``_X``, ``__X``) travel with the call, and so do the names the
        configuration lists."""
        bare = variable.lstrip("_")
        if bare and (bare != variable or bare in self.data_variables):
            return bare
        return None

    def partner(self, chan: Channel) -> Channel | None:
        if chan.pair is None:
            return None
        return self.pairs.get(chan.pair, {}).get(3 - chan.half)

    def first_party(self, call: Call) -> Channel | None:
        """The channel that started the call: Asterisk's Linkedid is the oldest channel's
        Uniqueid; failing that, the first one ctilink saw."""
        chan = call.channels.get(call.linkedid)
        return chan if chan is not None else next(iter(call.channels.values()), None)

    # -- legs ------------------------------------------------------------------------------
    def attach(self, chan: Channel, leg: Leg) -> None:
        chan.leg = leg
        leg.channels.add(chan.uniqueid)
        leg.had_real = leg.had_real or chan.pair is None
        if leg not in chan.call.legs:
            chan.call.legs.append(leg)
        partner = self.partner(chan)
        if partner is not None and partner.leg is None:
            self.attach(partner, leg)

    def new_leg(self, chan: Channel, device: str | None) -> Leg:
        leg = Leg(device, transparent=chan.pair is not None)
        self.attach(chan, leg)
        return leg

    # -- moving channels between calls ----------------------------------------------------
    def move(self, chan: Channel, call: Call) -> Call | None:
        """Move ``chan`` (and its Local partner, and their leg) into ``call``. Returns the
        call it left if that call has no channel left (the caller ends it), else None."""
        emptied: Call | None = None
        for member in (chan, self.partner(chan)):
            if member is None or member.call is call:
                continue
            old = member.call
            old.channels.pop(member.uniqueid, None)
            member.call = call
            call.channels[member.uniqueid] = member
            leg = member.leg
            if leg in old.legs and not any(c.leg is leg for c in old.channels.values()):
                old.legs.remove(leg)
                call.legs.append(leg)
            if not old.channels:
                emptied = old
        if emptied is not None and not emptied.announced:
            self.forget(emptied)
            return None
        return emptied

    def merge(self, old: Call, into: Call) -> None:
        """Fold ``old`` into ``into``: its channels, legs and Linkedids now belong to it."""
        for chan in old.channels.values():
            chan.call = into
            into.channels[chan.uniqueid] = chan
        into.legs.extend(leg for leg in old.legs if leg not in into.legs)
        for linkedid in old.aliases:
            into.aliases.add(linkedid)
            self.calls_by_linkedid[linkedid] = into
        for key, value in old.data.items():
            into.data.setdefault(key, value)
        old.channels.clear()
        old.legs.clear()
        self.calls.pop(old.call_id, None)

    # -- removing --------------------------------------------------------------------------
    def remove(self, chan: Channel) -> None:
        """Forget a channel that is gone (the caller ends its leg and call as needed)."""
        self.by_uid.pop(chan.uniqueid, None)
        if self.by_name.get(chan.name) is chan:
            del self.by_name[chan.name]
        if chan.pair is not None:
            halves = self.pairs.get(chan.pair, {})
            halves.pop(chan.half, None)
            if not halves:
                self.pairs.pop(chan.pair, None)
        if self.hung_up_during_resync is not None:
            self.hung_up_during_resync.add(chan.uniqueid)
        chan.call.channels.pop(chan.uniqueid, None)
        if chan.leg is not None:
            chan.leg.channels.discard(chan.uniqueid)

    def forget(self, call: Call) -> None:
        self.calls.pop(call.call_id, None)
        for linkedid in call.aliases:
            if self.calls_by_linkedid.get(linkedid) is call:
                del self.calls_by_linkedid[linkedid]

    # -- ids chosen by ctilink -------------------------------------------------------------
    def expect(self, uniqueid: str, call_id: str, called: str | None = None) -> None:
        """The channel ``uniqueid`` (not seen yet) starts call ``call_id``; with ``called``,
        it is a make-call ctilink itself originated towards that number."""
        self.expected[uniqueid] = (call_id, called)
        while len(self.expected) > MAX_EXPECTED:
            self.expected.popitem(last=False)

    def call_id_for(self, uniqueid: str) -> str:
        """The call id of channel ``uniqueid``, chosen now if the channel is not known yet."""
        chan = self.by_uid.get(uniqueid)
        if chan is not None:
            return chan.call.call_id
        preset = self.expected.get(uniqueid)
        if preset is None:
            preset = (self._new_call_id(), None)
            self.expect(uniqueid, preset[0])
        return preset[0]

    def _alias(self, call: Call, linkedid: str) -> None:
        call.aliases.add(linkedid)
        self.calls_by_linkedid.setdefault(linkedid, call)
