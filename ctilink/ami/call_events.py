"""Handlers for AMI channel, dial, bridge, transfer and queue-caller events.

Each handler reads one AMI event (field names as in the XML documentation of
asterisk/asterisk: main/manager_channels.c, main/stasis_bridges.c, apps/app_queue.c),
updates the channel records and tells ``Connections`` what happened. ``table()`` maps AMI
event names, older spellings included, to handlers.
"""

from __future__ import annotations

from collections.abc import Callable

from ctilink.ami import names
from ctilink.ami.calls import PSEUDO_APPLICATIONS, CallBook
from ctilink.ami.connections import Connections
from ctilink.ami.message import AmiMessage
from ctilink.model.states import LocalConnectionState as LCS


class CallEvents:
    def __init__(self, book: CallBook, connections: Connections) -> None:
        self.book = book
        self.connections = connections

    # -- channels --------------------------------------------------------------------------
    def newchannel(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg)
        if chan is not None:
            chan.complete = True

    def refresh(self, msg: AmiMessage) -> None:
        """Newstate, NewCallerid, NewConnectedLine: keep the channel's description current.

        A state change is the first sign of a call that started in the dialplan (announce
        itself refuses a call whose start ctilink did not see)."""
        chan = self.book.channel(msg)
        if chan is not None and msg.name == "Newstate":
            self.connections.announce(chan.call)

    def newexten(self, msg: AmiMessage) -> None:
        if msg.get("Application", "") in PSEUDO_APPLICATIONS:
            return
        chan = self.book.find(msg)
        if chan is None or (chan.call.announced and not chan.call.make_call):
            return  # nothing to learn: dialplan steps are not call events
        chan = self.book.channel(msg)
        assert chan is not None
        call = chan.call
        self.connections.announce(call)
        if call.make_call and chan.originated and chan.leg is not None:
            # No OriginateResponse seen: the answered originated channel now runs the
            # dialplan at the number it was asked to call.
            self.connections.originated(call, chan.leg, names.known(chan.exten))

    def varset(self, msg: AmiMessage) -> None:
        name = self.book.is_call_data(msg.get("Variable", ""))
        if name is None:
            return
        chan = self.book.find(msg)
        if chan is not None:
            chan.call.data[name] = msg.get("Value", "")

    def hangup_request(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        cause = names.parse_cause(msg.get("Cause"))
        if chan is not None and cause is not None and chan.cause is None:
            chan.cause = cause

    def hangup(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        if chan is not None:
            code = names.parse_cause(msg.get("Cause"))
            self.connections.hang_up(chan, chan.cause if code is None else code)

    # -- dialling --------------------------------------------------------------------------
    def dial_begin(self, msg: AmiMessage) -> None:
        caller = self.book.channel(msg)  # the caller first: it may be what starts the call
        dest = self.book.channel(msg, "Dest")
        if dest is None:
            return
        device = names.device_of_dialstring(msg.get("DialString"))
        device = device or names.device_of_channel(dest.name)
        if caller is None:
            self.connections.originate(dest.call, dest, device)
        else:
            self.connections.dial(caller, dest, device)

    def dial_end(self, msg: AmiMessage) -> None:
        dest = self.book.channel(msg, "Dest", create=False)
        caller = self.book.channel(msg, create=False)
        if dest is None or dest.leg is None or caller is None:
            return  # an originate's end: OriginateResponse tells how it went
        status = msg.get("DialStatus", "").split(":", 1)[0].upper()
        leg, call = dest.leg, dest.call
        if status == "ANSWER":
            self.connections.established(leg, call)
            return
        kind, cause = names.DIAL_STATUS.get(status, (None, status.lower() or "unknown"))
        if kind == "failed":
            self.connections.failed(leg, call, cause)
        elif leg.cause is None:
            leg.cause = cause

    def originate_response(self, msg: AmiMessage) -> None:
        chan = self.book.by_uid.get(msg.get("Uniqueid", ""))
        if chan is None or chan.leg is None or not chan.call.make_call:
            return
        if msg.get("Response", "").lower() == "success":
            called = names.known(msg.get("Exten"))
            self.connections.originated(chan.call, chan.leg, None if called == "s" else called)
        else:
            cause = names.ORIGINATE_REASON.get(msg.get("Reason", ""), "failed")
            self.connections.originate_failed(chan.call, chan.leg, cause)

    # -- hold ------------------------------------------------------------------------------
    def hold(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        if chan is not None and chan.leg is not None:
            self.connections.hold(chan.leg, chan.call, held=msg.name == "Hold")

    # -- bridges ---------------------------------------------------------------------------
    def bridge_enter(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        if chan is not None:
            chan.bridge = msg.get("BridgeUniqueid")

    def bridge_leave(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        if chan is not None and chan.bridge == msg.get("BridgeUniqueid"):
            chan.bridge = None

    # -- transfers -------------------------------------------------------------------------
    def blind_transfer(self, msg: AmiMessage) -> None:
        transferer = self.book.channel(msg, "Transferer", create=False)
        if msg.get("Result", "") == "Success" and transferer is not None:
            self.connections.blind_transfer(transferer, names.known(msg.get("Extension")))

    def attended_transfer(self, msg: AmiMessage) -> None:
        if msg.get("Result", "") != "Success":
            return
        first = self.book.channel(msg, "OrigTransferer", create=False)
        second = self.book.channel(msg, "SecondTransferer", create=False)
        if first is not None and second is not None:
            threeway = msg.get("DestType") == "Threeway"
            self.connections.attended_transfer(first, second, threeway)

    # -- queue callers ---------------------------------------------------------------------
    def queue_caller_join(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg)
        queue = msg.get("Queue")
        if chan is not None and queue:
            position = names.parse_int(msg.get("Position")) or 1
            count = names.parse_int(msg.get("Count"))
            self.connections.queued(chan.call, queue, position, count)

    def queue_caller_leave(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        queue = msg.get("Queue")
        if chan is not None and queue:
            self.connections.left_queue(chan.call, queue)

    def queue_caller_abandon(self, msg: AmiMessage) -> None:
        chan = self.book.channel(msg, create=False)
        if chan is not None:
            chan.call.abandoned = True

    def agent_called(self, msg: AmiMessage) -> None:
        caller, dest = self.book.channel(msg), self.book.channel(msg, "Dest")
        if caller is not None and dest is not None:
            agent = names.device_of_dialstring(msg.get("Interface"))
            queue = msg.get("Queue") or caller.call.queue or ""
            self.connections.offer_agent(caller, dest, agent, queue)

    def agent_connect(self, msg: AmiMessage) -> None:
        dest = self.book.channel(msg, "Dest", create=False)
        if dest is not None and dest.leg is not None:
            self.connections.established(dest.leg, dest.call)

    def agent_ring_no_answer(self, msg: AmiMessage) -> None:
        self._agent_cause(msg, "no_answer")

    def agent_dump(self, msg: AmiMessage) -> None:
        self._agent_cause(msg, "agent_dump")

    def _agent_cause(self, msg: AmiMessage, cause: str) -> None:
        dest = self.book.channel(msg, "Dest", create=False)
        if dest is not None and dest.leg is not None and dest.leg.state in (LCS.ALERTING, LCS.FAIL):
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
            "Unhold": self.hold,
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
