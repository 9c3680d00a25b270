"""Connection states and the call events they publish: the one place both change.

Theory of operation
-------------------
``Connections`` is the Asterisk adapter's notifier: one method per thing that happens to
a call (a call starts, a party is dialled, answers, fails, holds, leaves, is transferred;
the call queues, leaves a queue, ends), each setting the parties' CSTA local connection
states and publishing the matching model event. ``call_events`` translates AMI into these
calls; ``CallBook`` (ctilink.ami.calls) only keeps records.

Who called whom (``_start``): a party presenting its own device number as caller id is a
device making a call (a phone dialling, or Asterisk ringing a phone for an Originate:
click-to-dial): ``service_initiated``, then ``originated`` once the dialled number is known.
Any other party entering the dialplan is a call arriving at the switch (a trunk, or an
Originate injecting a call with a customer's caller id, as callback and test systems do):
``delivered`` at the dialled number, the routing device.

A party reached through a Local channel that answers on its own (the dialplan answering
for an IVR or queue) stands for the routing device: a ``routing`` leg, whose answer is not
the call being answered and whose end is not a party leaving. A leg ends when its last
channel hangs up, or when its last real (non-Local) channel does: an agent who hangs up
has left even while a Local half still plays a survey to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctilink.ami import names
from ctilink.ami.calls import Call, CallBook, Channel, Leg
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS

Emit = Callable[[ev.Event], object]
_TALKING = (LCS.CONNECTED, LCS.HELD)


class Connections:
    def __init__(self, switch: str, emit: Emit, book: CallBook) -> None:
        self.switch = switch
        self._emit = emit
        self.book = book
        self.now = 0.0

    def emit(
        self,
        cls: type[ev.CallEvent],
        call: Call,
        device: str | None,
        state: LCS | None,
        leg: Leg | None = None,
        **extra: Any,
    ) -> None:
        """Publish one call event; a leg's own agent and queue win over the call's.

        Nothing is said about a call whose start was never reported (met in the middle):
        a client would get events for a call it never saw begin, and never see it end."""
        if not call.announced:
            return
        extra.setdefault("agent", (leg.agent if leg else None) or call.agent)
        extra.setdefault("queue", (leg.queue if leg else None) or call.queue)
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

    # -- a call starts ---------------------------------------------------------------------
    def announce(self, call: Call) -> None:
        """Report a call started in the dialplan, unless already done."""
        if call.announced:
            return
        first = self.book.first_party(call)
        if first is None or not first.complete:
            return  # a call whose start ctilink did not see is not invented
        dialplan = self.book.partner(first) if first.half == 1 else None
        dialplan = dialplan or first
        called = names.known(dialplan.exten)
        self._start(
            call,
            first,
            own=names.device_of_channel(first.name),
            presented=first.caller_num or dialplan.caller_num,
            called=None if called == "s" else called,
        )

    def originate(self, call: Call, dest: Channel, device: str) -> None:
        """Asterisk originates ``dest`` (DialBegin without a caller) to reach ``device``."""
        dest.originated = True
        if not call.announced:
            self._start(call, dest, own=device, presented=dest.caller_num, called=device)

    def _start(
        self, call: Call, first: Channel, own: str, presented: str | None, called: str | None
    ) -> None:
        call.announced = True
        leg = first.leg or self.book.new_leg(first, own)
        call.caller_leg = leg
        if call.make_call or presented is None or presented == own:
            # An Originate rings ``own`` itself; the number it then calls comes later.
            dialled = None if first.originated else called
            call.make_call = call.make_call or first.originated
            leg.device, leg.state = own, LCS.INITIATED
            call.calling = own
            call.called = call.called or dialled
            self.emit(ev.ServiceInitiated, call, own, LCS.INITIATED, leg)
            if dialled is not None:
                self.originated(call, leg, dialled)
        else:
            # The caller's side: a trunk or an injected call; what it reaches through a
            # Local pair is a new party, never itself.
            leg.device, leg.state, leg.transparent = presented, LCS.CONNECTED, False
            call.calling, call.called = presented, called
            call.route_position = called
            self.emit(ev.Delivered, call, called, LCS.ALERTING)

    def originated(self, call: Call, leg: Leg, called: str | None) -> None:
        if call.originated_sent:
            return
        call.called = called or call.called
        call.originated_sent = True
        leg.state = LCS.CONNECTED
        self.emit(ev.Originated, call, leg.device, LCS.CONNECTED, leg)

    def originate_failed(self, call: Call, leg: Leg, cause: str) -> None:
        if leg.state is LCS.INITIATED:
            leg.state, leg.cause = LCS.FAIL, cause
            self.emit(ev.Failed, call, leg.device, LCS.FAIL, leg, cause=cause)

    # -- parties ---------------------------------------------------------------------------
    def dial(self, caller: Channel, dest: Channel, device: str) -> None:
        """``caller`` dials ``dest`` to reach ``device``."""
        call = caller.call
        self.announce(call)
        self.move(dest, call)
        if dest.leg is not None:
            return
        through = caller.leg
        if (
            caller.half == 2
            and through is not None
            and through.transparent
            and through.active
            and not through.had_real
            and through.device == device
        ):
            self.book.attach(dest, through)  # the Local pair reaching its own device
            return
        leg = self.book.new_leg(dest, device)
        if device == call.route_position and call.route_position != call.queue:
            leg.routing, leg.state = True, LCS.ALERTING  # delivered there already
            return
        self.deliver(call, leg)

    def offer_agent(self, caller: Channel, dest: Channel, agent: str | None, queue: str) -> None:
        """A queue rings member ``agent`` through ``dest``."""
        call = caller.call
        self.announce(call)
        self.move(dest, call)
        leg = dest.leg or self.book.new_leg(dest, agent)
        leg.agent, leg.queue = agent, queue
        self.deliver(call, leg)

    def deliver(self, call: Call, leg: Leg) -> None:
        if leg.state is not LCS.NULL:
            return
        leg.state = LCS.ALERTING
        self.emit(
            ev.Delivered,
            call,
            leg.device,
            LCS.ALERTING,
            leg,
            last_redirection_device=call.route_position or call.redirected_from,
        )

    def established(self, leg: Leg, call: Call) -> None:
        if leg.state in _TALKING or not leg.active or leg.routing:
            return
        leg.state = LCS.CONNECTED
        call.answered = True
        call.route_position = None
        if leg.agent is not None:
            call.agent = leg.agent
        self.emit(ev.Established, call, leg.device, LCS.CONNECTED, leg)

    def failed(self, leg: Leg, call: Call, cause: str) -> None:
        if leg.state is LCS.ALERTING and not leg.routing:
            leg.state, leg.cause = LCS.FAIL, cause
            call.failure = call.failure or cause
            self.emit(ev.Failed, call, leg.device, LCS.FAIL, leg, cause=cause)

    def hold(self, leg: Leg, call: Call, held: bool) -> None:
        before, after = (LCS.CONNECTED, LCS.HELD) if held else (LCS.HELD, LCS.CONNECTED)
        if leg.state is before and leg.active:
            leg.state = after
            self.emit(ev.Held if held else ev.Retrieved, call, leg.device, after, leg)

    def move(self, chan: Channel, call: Call) -> None:
        emptied = self.book.move(chan, call)
        if emptied is not None:
            emptied.end_cause = ("merged", None)
            self.clear_call(emptied)

    # -- parties leave ---------------------------------------------------------------------
    def hang_up(self, chan: Channel, code: int | None, cause: str | None = None) -> None:
        """A channel is gone; ``cause`` overrides the Q.850 name (``resync``)."""
        call, leg = chan.call, chan.leg
        name = cause or (names.cause_name(code) if code is not None else None)
        if leg is not None:
            if cause is not None:
                leg.cause, leg.cause_code = name, code
            else:
                leg.cause = leg.cause or name
                leg.cause_code = code if leg.cause_code is None else leg.cause_code
            # The call ends for the reason its parties ended: a ring-all loser's
            # "answered elsewhere" is not the call's cause.
            talking = leg.state in _TALKING or leg is call.caller_leg
            if name is not None and (cause is not None or (talking and call.end_cause is None)):
                call.end_cause = (name, code)
        self.book.remove(chan)
        if leg is not None and not leg.cleared:
            real_left = any(
                c.pair is None for uid in leg.channels if (c := self.book.by_uid.get(uid))
            )
            if not leg.channels or (chan.pair is None and not real_left):
                self.clear_leg(leg, call)
        if not call.channels:
            self.clear_call(call)

    def clear_leg(self, leg: Leg, call: Call) -> None:
        leg.cleared = True
        if leg.silent or leg.routing or not call.announced or leg.device is None:
            return
        leg.state = LCS.NULL
        cause = leg.cause or "normal_clearing"
        if call.abandoned and leg is call.caller_leg:
            cause = "abandoned"
        self.emit(
            ev.ConnectionCleared,
            call,
            leg.device,
            LCS.NULL,
            leg,
            cause=cause,
            cause_code=leg.cause_code,
        )

    def clear_call(self, call: Call) -> None:
        for leg in call.legs:
            if not leg.cleared:
                self.clear_leg(leg, call)
        if call.announced:
            cause, code = call.end_cause or ("normal_clearing", None)
            if call.abandoned:
                cause = "abandoned"
            elif not call.answered and call.failure and cause != "resync":
                # Never answered because a party was busy, congested...: that is why.
                cause = call.failure
                code = next((g.cause_code for g in call.legs if g.cause == cause), None)
            self.emit(ev.CallCleared, call, None, None, cause=cause, cause_code=code)
        self.book.forget(call)

    # -- queues ----------------------------------------------------------------------------
    def queued(self, call: Call, queue: str, position: int, count: int | None) -> None:
        self.announce(call)
        prior = call.route_position or call.redirected_from
        call.queue, call.route_position = queue, queue
        self.emit(
            ev.Queued,
            call,
            queue,
            LCS.QUEUED,
            position=position,
            queue_count=count,
            last_redirection_device=prior,
        )

    def left_queue(self, call: Call, queue: str) -> None:
        """The caller left ``queue``; unless answered or abandoned, it went elsewhere."""
        if call.answered or call.abandoned or call.route_position != queue:
            return
        call.route_position = None
        self.emit(ev.Diverted, call, queue, LCS.NULL, cause="queue_exit")

    # -- transfers -------------------------------------------------------------------------
    def blind_transfer(self, transferer: Channel, target: str | None) -> None:
        leg, call = transferer.leg, transferer.call
        if leg is None or not leg.active:
            return
        self.emit(
            ev.Transferred,
            call,
            leg.device,
            LCS.NULL,
            leg,
            transferred_to=target,
            cause="transfer",
        )
        leg.silent, leg.state = True, LCS.NULL
        call.answered, call.agent, call.queue = False, None, None
        call.route_position, call.redirected_from = None, leg.device

    def attended_transfer(self, first: Channel, second: Channel, threeway: bool) -> None:
        """``first``/``second``: the transferer's channels on its two calls (may be one)."""
        transferer = first.leg.device if first.leg is not None else None
        calls = {id(first.call): first.call, id(second.call): second.call}.values()
        # The older call survives (the customer's, whichever dialog the transfer came on);
        # a call never reported cannot survive one that was.
        survivor = min(calls, key=lambda call: (not call.announced, _age(call.linkedid)))
        merged = next((call for call in calls if call is not survivor), None)
        reached = merged if merged is not None else survivor
        target = next(
            (leg.device for leg in reached.legs
             if leg.active and not leg.routing and leg.device != transferer),
            None,
        )  # fmt: skip
        if merged is not None:
            self.book.merge(merged, survivor)
        secondary = merged.call_id if merged is not None else None
        if threeway:
            self.emit(
                ev.Conferenced,
                survivor,
                transferer,
                LCS.CONNECTED,
                added_device=target,
                secondary_call_id=secondary,
            )
            return
        self.emit(
            ev.Transferred,
            survivor,
            transferer,
            LCS.NULL,
            transferred_to=target,
            cause="transfer",
            secondary_call_id=secondary,
        )
        for leg in (first.leg, second.leg):
            if leg is not None:
                leg.silent, leg.state = True, LCS.NULL


def age_of(uniqueid: str) -> tuple[float, int]:
    """Asterisk Uniqueids are ``<epoch>.<counter>``: older channels sort first."""
    head, _, tail = uniqueid.partition(".")
    try:
        return float(head), int(tail or 0)
    except ValueError:
        return float("inf"), 0


_age = age_of
