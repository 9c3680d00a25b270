"""Handlers for AMI channel, dial, bridge, transfer and queue-caller events.

Each handler reads one AMI event, updates the ``CallBook`` and emits the CSTA events the
switch's action implies. ``TABLE`` at the bottom maps AMI event names (as Asterisk spells
them, older spellings included) to handlers. Field names follow the XML documentation in
asterisk/asterisk (main/manager_channels.c, main/stasis_bridges.c, apps/app_queue.c).
"""

from __future__ import annotations

from collections.abc import Callable

from ctilink.ami import names
from ctilink.ami.calls import PSEUDO_APPLICATIONS, Call, CallBook, Channel, Leg
from ctilink.ami.message import AmiMessage
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS


class CallEvents:
    def __init__(self, book: CallBook) -> None:
        self.book = book

    # -- channels --------------------------------------------------------------------------
    def newchannel(self, msg: AmiMessage) -> None:
        self.book.channel(msg)

    def refresh(self, msg: AmiMessage) -> None:
        """Newstate, NewCallerid, NewConnectedLine: keep the channel's description current."""
        chan = self.book.channel(msg)
        if chan is not None and msg.name == "Newstate":
            self.book.announce(chan.call)

    def newexten(self, msg: AmiMessage) -> None:
        if msg.get("Application", "") in PSEUDO_APPLICATIONS:
            return
        chan = self.book.find(msg)
        if chan is None or (chan.call.announced and not chan.call.make_call):
            return  # nothing to learn: dialplan steps are not call events
        chan = self.book.channel(msg)
        assert chan is not None
        call = chan.call
        self.book.announce(call)
        leg = chan.leg
        if call.make_call and chan.originated and not call.originated_sent and leg is not None:
            # No OriginateResponse seen: the answered originated channel now runs the
            # dialplan at the number it was asked to call.
            called = names.known(chan.exten)
            self.book._originated(call, leg, called)

    def varset(self, msg: AmiMessage) -> None:
        variable = msg.get("Variable", "")
        bare = variable.lstrip("_")
        # Inherited variables (_X, __X) travel with the call: that is call data. So is
        # anything the config names explicitly. Other variables are dialplan internals.
        if not bare or (bare == variable and bare not in self.book._data_vars):
            return
        chan = self.book.find(msg)
        if chan is not None:
            chan.call.data[bare] = msg.get("Value", "")

    def hangup_request(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        cause = names.parse_cause(msg.get("Cause"))
        if chan is not None and cause is not None and chan.cause is None:
            chan.cause = cause

    def hangup(self, msg: AmiMessage) -> None:
        book = self.book
        chan = book.channel(msg, create=False)
        if chan is None:
            return
        code = names.parse_cause(msg.get("Cause"))
        code = chan.cause if code is None else code
        call = chan.call
        if call.first_cause is None and code is not None:
            call.first_cause = (names.cause_name(code), code)
        book.by_uid.pop(chan.uniqueid, None)
        if book.by_name.get(chan.name) is chan:
            del book.by_name[chan.name]
        if chan.pair is not None:
            halves = book.pairs.get(chan.pair, {})
            halves.pop(chan.half, None)
            if not halves:
                book.pairs.pop(chan.pair, None)
        call.channels.pop(chan.uniqueid, None)
        leg = chan.leg
        if leg is not None:
            leg.channels.discard(chan.uniqueid)
            if leg.cause is None and code is not None:
                leg.cause, leg.cause_code = names.cause_name(code), code
            if not leg.channels and not leg.cleared:
                book.clear_leg(leg, call)
        if not call.channels:
            book.clear_call(call)

    # -- dialling --------------------------------------------------------------------------
    def dial_begin(self, msg: AmiMessage) -> None:
        book = self.book
        dest = book.channel(msg, "Dest")
        if dest is None:
            return
        caller = book.channel(msg)
        if caller is None:
            self._originate_begin(msg, dest)
            return
        call = caller.call
        book.announce(call)
        if dest.call is not call:
            book._move(dest, call)
        if dest.leg is not None:
            return
        if caller.half == 2 and caller.leg is not None and caller.leg.transparent:
            book._attach(dest, caller.leg)  # a Local pair reaching its real device
            return
        device = names.device_of_dialstring(msg.get("DialString"))
        device = device or names.device_of_channel(dest.name)
        leg = book._new_leg(dest, device)
        self._deliver(call, leg)

    def _deliver(self, call: Call, leg: Leg, **extra: str | None) -> None:
        if leg.state is not LCS.NULL:
            return
        leg.state = LCS.ALERTING
        if leg.device == call.route_position and call.route_position != call.queue:
            return  # already delivered there as the routing device
        self.book.emit(
            ev.Delivered,
            call,
            leg.device,
            LCS.ALERTING,
            last_redirection_device=call.route_position,
            **extra,
        )

    def _originate_begin(self, msg: AmiMessage, dest: Channel) -> None:
        """DialBegin without a calling channel: the switch originates ``dest``."""
        book = self.book
        call = dest.call
        dest.originated = True
        if call.announced:
            return
        call.announced = True
        device = names.device_of_dialstring(msg.get("DialString"))
        device = device or names.device_of_channel(dest.name)
        presented = dest.caller_num
        if presented is None or presented == device:
            call.make_call = True
            leg = dest.leg or book._new_leg(dest, device)
            leg.device, leg.state = device, LCS.INITIATED
            call.calling = device
            book.emit(ev.ServiceInitiated, call, device, LCS.INITIATED)
        else:
            leg = dest.leg or book._new_leg(dest, presented)
            leg.device, leg.state, leg.transparent = presented, LCS.CONNECTED, False
            call.calling, call.called = presented, device
            book._arrive(call, device)

    def dial_end(self, msg: AmiMessage) -> None:
        book = self.book
        dest = book.channel(msg, "Dest", create=False)
        if dest is None or dest.leg is None:
            return
        caller = book.channel(msg, create=False)
        status = msg.get("DialStatus", "").split(":", 1)[0].upper()
        leg, call = dest.leg, dest.call
        if caller is None:
            return  # an originate: OriginateResponse tells how it ended
        if status == "ANSWER":
            book.established(leg, call)
            return
        kind, cause = names.DIAL_STATUS.get(status, (None, status.lower() or "unknown"))
        leg.cause = leg.cause if kind is None and leg.cause else cause
        if kind == "failed" and leg.state is LCS.ALERTING:
            leg.state = LCS.FAIL
            book.emit(ev.Failed, call, leg.device, LCS.FAIL, cause=cause)

    def originate_response(self, msg: AmiMessage) -> None:
        book = self.book
        chan = book.by_uid.get(msg.get("Uniqueid", ""))
        if chan is None or chan.leg is None or not chan.call.make_call:
            return
        call, leg = chan.call, chan.leg
        if msg.get("Response", "").lower() == "success":
            if not call.originated_sent:
                called = names.known(msg.get("Exten"))
                book._originated(call, leg, None if called == "s" else called)
        elif leg.state is LCS.INITIATED:
            cause = names.ORIGINATE_REASON.get(msg.get("Reason", ""), "failed")
            leg.state, leg.cause = LCS.FAIL, cause
            book.emit(ev.Failed, call, leg.device, LCS.FAIL, cause=cause)

    # -- hold ------------------------------------------------------------------------------
    def hold(self, msg: AmiMessage) -> None:
        self._hold(msg, LCS.CONNECTED, LCS.HELD, ev.Held)

    def unhold(self, msg: AmiMessage) -> None:
        self._hold(msg, LCS.HELD, LCS.CONNECTED, ev.Retrieved)

    def _hold(self, msg: AmiMessage, before: LCS, after: LCS, cls: type[ev.CallEvent]) -> None:
        chan = self.book.channel(msg)
        if chan is None or chan.leg is None or chan.leg.state is not before:
            return
        chan.leg.state = after
        self.book.emit(cls, chan.call, chan.leg.device, after)

    # -- bridges ---------------------------------------------------------------------------
    def bridge_enter(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg)
        if chan is not None:
            chan.bridge = msg.get("BridgeUniqueid")

    def bridge_leave(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg)
        if chan is not None and chan.bridge == msg.get("BridgeUniqueid"):
            chan.bridge = None

    # -- transfers -------------------------------------------------------------------------
    def blind_transfer(self, msg: AmiMessage) -> None:
        if msg.get("Result", "") != "Success":
            return
        transferer = self.book.channel(msg, "Transferer")
        if transferer is None or transferer.leg is None:
            return
        call, leg = transferer.call, transferer.leg
        leg.silent = True
        target = names.known(msg.get("Extension"))
        self.book.emit(
            ev.Transferred, call, leg.device, LCS.NULL, transferred_to=target, cause="transfer"
        )
        call.answered = False

    def attended_transfer(self, msg: AmiMessage) -> None:
        if msg.get("Result", "") != "Success":
            return
        book = self.book
        first = book.channel(msg, "OrigTransferer")
        second = book.channel(msg, "SecondTransferer")
        if first is None or second is None or first.leg is None:
            return
        transferee = book.channel(msg, "Transferee")
        target = book.channel(msg, "TransferTarget")
        survivor = transferee.call if transferee is not None else first.call
        secondary = second.call if second.call is not survivor else first.call
        merged = secondary if secondary is not survivor else None
        if merged is not None:
            self._merge(merged, survivor)
        target_device = target.leg.device if target is not None and target.leg else None
        if msg.get("DestType") == "Threeway":
            book.emit(
                ev.Conferenced,
                survivor,
                first.leg.device,
                LCS.CONNECTED,
                added_device=target_device,
                secondary_call_id=merged.call_id if merged else None,
            )
            return
        for chan in (first, second):
            if chan.leg is not None:
                chan.leg.silent = True
        book.emit(
            ev.Transferred,
            survivor,
            first.leg.device,
            LCS.NULL,
            transferred_to=target_device,
            cause="transfer",
            secondary_call_id=merged.call_id if merged else None,
        )

    def _merge(self, old: Call, into: Call) -> None:
        """Fold ``old`` into ``into``: its channels, legs and Linkedids now belong to ``into``."""
        for chan in list(old.channels.values()):
            chan.call = into
            into.channels[chan.uniqueid] = chan
        for leg in old.legs:
            if leg not in into.legs:
                into.legs.append(leg)
        for linkedid in old.aliases:
            into.aliases.add(linkedid)
            self.book.calls_by_linkedid[linkedid] = into
        for key, value in old.data.items():
            into.data.setdefault(key, value)
        old.channels.clear()
        old.legs.clear()

    # -- queue callers ---------------------------------------------------------------------
    def queue_caller_join(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg)
        queue = msg.get("Queue")
        if chan is None or not queue:
            return
        call = chan.call
        self.book.announce(call)
        prior, call.queue, call.route_position = call.route_position, queue, queue
        self.book.emit(
            ev.Queued,
            call,
            queue,
            LCS.QUEUED,
            position=_int(msg.get("Position"), 1),
            queue_count=_int(msg.get("Count"), None),
            last_redirection_device=prior,
        )

    def queue_caller_leave(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        queue = msg.get("Queue")
        if chan is None or not queue:
            return
        call = chan.call
        if call.answered or call.abandoned or call.route_position != queue:
            return
        call.route_position = None
        self.book.emit(ev.Diverted, call, queue, LCS.NULL, cause="queue_exit")

    def queue_caller_abandon(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        if chan is not None:
            chan.call.abandoned = True

    def agent_called(self, msg: AmiMessage) -> None:
        book = self.book
        caller, dest = book.channel(msg), book.channel(msg, "Dest")
        if caller is None or dest is None:
            return
        call = caller.call
        book.announce(call)
        if dest.call is not call:
            book._move(dest, call)
        agent = names.device_of_dialstring(msg.get("Interface"))
        leg = dest.leg or book._new_leg(dest, agent)
        leg.agent, leg.queue = agent, msg.get("Queue") or call.queue
        self._deliver(call, leg, agent=agent, queue=leg.queue)

    def agent_connect(self, msg: AmiMessage) -> None:
        dest = self.book.channel(msg, "Dest", create=False)
        if dest is not None and dest.leg is not None:
            self.book.established(dest.leg, dest.call)

    def agent_ring_no_answer(self, msg: AmiMessage) -> None:
        self._agent_cause(msg, "no_answer")

    def agent_dump(self, msg: AmiMessage) -> None:
        self._agent_cause(msg, "agent_dump")

    def _agent_cause(self, msg: AmiMessage, cause: str) -> None:
        dest = self.book.channel(msg, "Dest", create=False)
        if dest is not None and dest.leg is not None and dest.leg.state is not LCS.CONNECTED:
            dest.leg.cause = cause

    def table(self) -> dict[str, Callable[[AmiMessage], None]]:
        return {
            "Newchannel": self.newchannel,
            "Newstate": self.refresh,
            "NewCallerid": self.refresh,
            "NewConnectedLine": self.refresh,
            "Newexten": self.newexten,
            "VarSet": self.varset,
            "HangupRequest": self.hangup_request,
            "SoftHangupRequest": self.hangup_request,
            "Hangup": self.hangup,
            "DialBegin": self.dial_begin,
            "DialEnd": self.dial_end,
            "OriginateResponse": self.originate_response,
            "Hold": self.hold,
            "Unhold": self.unhold,
            "BridgeEnter": self.bridge_enter,
            "BridgeLeave": self.bridge_leave,
            "BlindTransfer": self.blind_transfer,
            "AttendedTransfer": self.attended_transfer,
            "QueueCallerJoin": self.queue_caller_join,
            "Join": self.queue_caller_join,  # Asterisk 11 and older
            "QueueCallerLeave": self.queue_caller_leave,
            "Leave": self.queue_caller_leave,
            "QueueCallerAbandon": self.queue_caller_abandon,
            "AgentCalled": self.agent_called,
            "AgentConnect": self.agent_connect,
            "AgentRingNoAnswer": self.agent_ring_no_answer,
            "AgentDump": self.agent_dump,
        }


def _int(value: str | None, default: int | None) -> int | None:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
