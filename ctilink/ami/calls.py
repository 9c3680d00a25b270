"""Asterisk channels → ctilink calls: the bookkeeping behind the AMI normalizer.

Theory of operation
-------------------
Asterisk reports *channels*; a CTI client wants *calls* with *connections* (one per
device). Three records bridge the two:

``Channel``
    one Asterisk channel, keyed by ``Uniqueid``, as last described by the switch.
``Leg``
    one party's connection to the call: the channels that together are one device's
    participation. A Local channel's two halves (``;1``/``;2``) are one leg, so one
    customer call is one call with one connection per party, not two or four channels.
    A leg holds the CSTA local connection state of its device. It ends when its last
    channel hangs up (so a Local pair optimized away, whose real channel lives on in the
    leg, does not end the connection).
``Call``
    the ctilink call: a ``call_id`` chosen once and never changed while any of the call's
    channels lives. Channels find their call by their Local partner, then by ``Linkedid``
    (Asterisk gives a dialled channel its caller's Linkedid). When Asterisk re-keys a
    channel's Linkedid (bridges merging), the new Linkedid is added as an alias: the
    call_id stays. Transfers merge the consultation call into the transferee's call,
    which keeps its call_id.

How a call starts decides its first events (``_announce`` and the originate branch of
``dial_begin``):

* a party that calls with its own number as caller id is a device making a call
  (a phone dialling, or Originate to a phone: click-to-dial): ``service_initiated``,
  then ``originated`` once the dialled number is known;
* any other party entering the dialplan is a call arriving at the switch (a trunk, or
  Originate injecting a call with a customer's caller id, as callback and test systems
  do): ``delivered`` at the dialled extension (the routing device), from the caller's
  number.

A call is announced on its first event that is not mere channel setup (new channel,
caller id, variables, LocalBridge), so caller-id updates that Asterisk sends right after
creating a channel are included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctilink.ami import names
from ctilink.ami.message import AmiMessage
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS

PSEUDO_APPLICATIONS = frozenset({"", "AppDial", "AppDial2", "AppQueue"})


@dataclass(eq=False)
class Leg:
    device: str | None
    state: LCS = LCS.NULL
    channels: set[str] = field(default_factory=set)
    transparent: bool = False  # a Local pair: what its ;2 half dials is this same party
    agent: str | None = None
    queue: str | None = None
    cause: str | None = None
    cause_code: int | None = None
    silent: bool = False  # left the call by transfer: no connection_cleared
    cleared: bool = False


@dataclass(eq=False)
class Call:
    call_id: str
    linkedid: str
    channels: dict[str, Channel] = field(default_factory=dict)
    legs: list[Leg] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)
    calling: str | None = None
    called: str | None = None
    announced: bool = False
    make_call: bool = False
    originated_sent: bool = False
    route_position: str | None = None  # routing device or queue where the call waits
    queue: str | None = None
    agent: str | None = None
    answered: bool = False
    abandoned: bool = False
    first_cause: tuple[str, int | None] | None = None
    data: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class Channel:
    uniqueid: str
    name: str
    call: Call
    linkedid: str = ""
    state: int = 0
    caller_num: str | None = None
    context: str | None = None
    exten: str | None = None
    leg: Leg | None = None
    pair: str | None = None
    half: int = 0
    bridge: str | None = None
    cause: int | None = None
    originated: bool = False


Emit = Callable[[ev.Event], object]


class CallBook:
    """Channels, legs and calls of one switch, and the call events they produce."""

    def __init__(
        self,
        switch: str,
        emit: Emit,
        new_call_id: Callable[[], str],
        call_data_variables: frozenset[str] = frozenset(),
    ) -> None:
        self.switch = switch
        self._emit = emit
        self._new_call_id = new_call_id
        self._data_vars = call_data_variables
        self.by_uid: dict[str, Channel] = {}
        self.by_name: dict[str, Channel] = {}
        self.pairs: dict[str, dict[int, Channel]] = {}
        self.calls_by_linkedid: dict[str, Call] = {}
        self.now = 0.0

    # -- channel records -------------------------------------------------------------------
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
        partner = None
        if pair is not None:
            partner = self.pairs.get(pair[0], {}).get(3 - pair[1])
        call = partner.call if partner else self.calls_by_linkedid.get(linkedid)
        if call is None:
            call = Call(self._new_call_id(), linkedid)
            self._alias(call, linkedid)
        chan = Channel(uid, name, call, linkedid=linkedid)
        if pair is not None:
            chan.pair, chan.half = pair
            self.pairs.setdefault(pair[0], {})[pair[1]] = chan
            if partner is not None and partner.leg is not None:
                self._attach(chan, partner.leg)
        call.channels[uid] = chan
        self.by_uid[uid] = chan
        self.by_name[name] = chan
        return chan

    def _refresh(self, chan: Channel, msg: AmiMessage, prefix: str) -> None:
        state = msg.get(prefix + "ChannelState")
        if state is not None and state.isdigit():
            chan.state = int(state)
        caller = msg.get(prefix + "CallerIDNum")
        if caller is not None:
            chan.caller_num = names.known(caller)
        for attr in ("Context", "Exten"):
            value = msg.get(prefix + attr)
            if value is not None:
                setattr(chan, attr.lower(), value)
        linkedid = names.known(msg.get(prefix + "Linkedid"))
        if linkedid and linkedid != chan.linkedid:
            chan.linkedid = linkedid
            self._alias(chan.call, linkedid)
        for key, value in msg.variables(prefix + "ChanVariable").items():
            chan.call.data[key] = value

    def _alias(self, call: Call, linkedid: str) -> None:
        call.aliases.add(linkedid)
        self.calls_by_linkedid.setdefault(linkedid, call)

    def _attach(self, chan: Channel, leg: Leg) -> None:
        chan.leg = leg
        leg.channels.add(chan.uniqueid)
        if leg not in chan.call.legs:
            chan.call.legs.append(leg)
        partner = self._partner(chan)
        if partner is not None and partner.leg is None:
            self._attach(partner, leg)

    def _partner(self, chan: Channel) -> Channel | None:
        if chan.pair is None:
            return None
        return self.pairs.get(chan.pair, {}).get(3 - chan.half)

    def _new_leg(self, chan: Channel, device: str | None) -> Leg:
        leg = Leg(device, transparent=chan.pair is not None)
        self._attach(chan, leg)
        return leg

    def _move(self, chan: Channel, call: Call) -> None:
        """Move ``chan`` (and its Local partner) into ``call``; drop the call it leaves if empty."""
        for member in (chan, self._partner(chan)):
            if member is None or member.call is call:
                continue
            old = member.call
            old.channels.pop(member.uniqueid, None)
            member.call = call
            call.channels[member.uniqueid] = member
            if not old.channels and not old.announced:
                self._forget(old)

    def _forget(self, call: Call) -> None:
        for linkedid in call.aliases:
            if self.calls_by_linkedid.get(linkedid) is call:
                del self.calls_by_linkedid[linkedid]

    # -- emitting --------------------------------------------------------------------------
    def emit(
        self,
        cls: type[ev.CallEvent],
        call: Call,
        device: str | None,
        state: LCS | None,
        **extra: Any,
    ) -> None:
        extra.setdefault("queue", call.queue)
        extra.setdefault("agent", call.agent)
        self._emit(
            cls(
                switch=self.switch,
                time=self.now,
                call_id=call.call_id,
                device=device,
                calling_number=call.calling,
                called_number=call.called,
                connection_state=state,
                switch_call_id=call.linkedid,
                data=dict(call.data),
                **extra,
            )
        )

    def announce(self, call: Call) -> None:
        """Emit a call's first events unless already done (see the module docstring)."""
        if call.announced or not call.channels:
            return
        call.announced = True
        first = next(iter(call.channels.values()))
        dialplan = self._partner(first) if first.half == 1 else None
        dialplan = dialplan or first
        own = names.device_of_channel(first.name)
        caller = first.caller_num or dialplan.caller_num
        called = names.known(dialplan.exten)
        called = None if called == "s" else called
        if caller is None or caller == own:
            leg = first.leg or self._new_leg(first, own)
            leg.device, leg.state = own, LCS.INITIATED
            call.calling, call.called = own, called
            self.emit(ev.ServiceInitiated, call, own, LCS.INITIATED)
            if called is not None:
                self._originated(call, leg, called)
        else:
            leg = first.leg or self._new_leg(first, caller)
            leg.device, leg.state = caller, LCS.CONNECTED
            call.calling, call.called = caller, called
            self._arrive(call, called)

    def _arrive(self, call: Call, routing_device: str | None) -> None:
        """A call arriving at the switch for ``routing_device``: delivered there."""
        call.route_position = routing_device
        self.emit(ev.Delivered, call, routing_device, LCS.ALERTING)

    def _originated(self, call: Call, leg: Leg, called: str | None) -> None:
        call.called = called
        call.originated_sent = True
        leg.state = LCS.CONNECTED
        self.emit(ev.Originated, call, leg.device, LCS.CONNECTED)

    def established(self, leg: Leg, call: Call) -> None:
        if leg.state is LCS.CONNECTED or leg.cleared:
            return
        leg.state = LCS.CONNECTED
        call.answered = True
        call.route_position = None
        if leg.agent is not None:
            call.agent = leg.agent
        self.emit(ev.Established, call, leg.device, LCS.CONNECTED, queue=leg.queue or call.queue)

    def clear_leg(self, leg: Leg, call: Call) -> None:
        leg.cleared = True
        if leg.silent or not call.announced or leg.device is None:
            return
        cause, code = leg.cause, leg.cause_code
        if call.abandoned and leg.agent is None and leg.device == call.calling:
            cause = "abandoned"
        self.emit(
            ev.ConnectionCleared,
            call,
            leg.device,
            LCS.NULL,
            cause=cause or "normal_clearing",
            cause_code=code,
        )

    def clear_call(self, call: Call) -> None:
        for leg in call.legs:
            if not leg.cleared:
                self.clear_leg(leg, call)
        if call.announced:
            cause, code = call.first_cause or ("normal_clearing", None)
            if call.abandoned:
                cause = "abandoned"
            self.emit(ev.CallCleared, call, None, None, cause=cause, cause_code=code)
        self._forget(call)
