"""CSTA event reports → model events: the CSTA adapter's inbound table.

Theory of operation
-------------------
``CstaNormalizer.handle`` takes the argument of one ``cSTAEventReport`` (the same value
from the BER and the XML codec) and dispatches on its event: call control events to the
handlers below, agent and device maintenance events to ``csta_agents``. Each call event
handler reads the event's fields, finds the ctilink call by callID (``csta_calls``),
updates the party the event is about, and publishes the model event of the same name,
with the party's CSTA local connection state after it: the stream a client gets is the
one the Asterisk adapter gives for the same call.

Duplicates. A switch sends an event to every monitor that covers it (the agent's device
and the ACD group, say), with only ``crossRefIdentifier`` differing. Each handler first
checks whether the event changes anything (a delivered to a party already alerting, a
connection cleared for a party already gone, a transfer whose transferring device already
left) and drops it if not, so each happening is published once.

How CSTA becomes the Asterisk adapter's stream (decisions a newcomer needs):

* A call whose first event is ``delivered`` arrives at the switch: the calling device is
  connected from the start and the first alerting device, when it is the called number, a
  route point or ACD group (configured ``routing_devices``), is a *routing* party: its
  ringing is not a person's, and a later ``queued``/``delivered`` that names it as
  ``lastRedirectionDevice`` releases it.
* ``queued`` puts the call at an ACD group (a routing party, ``position`` =
  ``callsInFront`` + 1); the agent that is then delivered the call is that queue's agent
  (``agent``/``queue`` on the party). ``diverted`` from a queue with cause ``distributed``
  only says the queue handed the call to an agent: it publishes nothing; any other
  ``diverted`` is published (a route point passing a call on publishes nothing).
* ``connection_cleared`` of the caller while the call waits in a queue unanswered is
  ``abandoned``. ``call_cleared`` first clears every party still in the call, then the
  call, as Asterisk's hangups do. When ``monitored`` is known (a live link) and a party
  leaves so that no monitored device remains in the call, the call has left ctilink's
  view: it is cleared then, with the cause of that last clearing.
* ``transferred`` / ``conferenced`` merge the secondary call into the older one, whose
  ``call_id`` survives; the switch's new callIDs become the survivor's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from ctilink.adapters import csta_values as values
from ctilink.adapters.csta_agents import AgentBook
from ctilink.adapters.csta_calls import CallBook, CstaCall, Party
from ctilink.ami.normalizer import LOGGED_FAILURES, new_call_id
from ctilink.model import events as ev
from ctilink.model.states import LocalConnectionState as LCS

log = logging.getLogger(__name__)

_TALKING: Final = (LCS.CONNECTED, LCS.HELD)
_MAINTENANCE: Final = frozenset({"outOfService", "backInService"})
Handler = Callable[[dict[str, Any]], None]


class CstaNormalizer:
    def __init__(
        self,
        switch: str,
        emit: Callable[[ev.Event], object],
        *,
        call_id_factory: Callable[[], str] = new_call_id,
        monitored: frozenset[str] | None = None,
        routing_devices: frozenset[str] | None = None,
    ) -> None:
        self.switch = switch
        self._emit = emit
        self.book = CallBook(call_id_factory)
        self.agents = AgentBook(switch, emit)
        self.monitored = monitored
        self.routing_devices = routing_devices
        self.now = 0.0
        self.ignored: Counter[str] = Counter()
        self.failures = 0
        self._table: dict[str, Handler] = {
            "serviceInitiated": self.service_initiated,
            "originated": self.originated,
            "delivered": self.delivered,
            "established": self.established,
            "queued": self.queued,
            "diverted": self.diverted,
            "held": self.held,
            "retrieved": self.retrieved,
            "failed": self.failed,
            "networkReached": self.network_reached,
            "connectionCleared": self.connection_cleared,
            "callCleared": self.call_cleared,
            "transferred": self.transferred,
            "conferenced": self.conferenced,
        }

    # -- dispatch --------------------------------------------------------------------------
    def handle(self, argument: dict[str, Any], time: float) -> None:
        """Apply one ``CSTAEventReportArgument`` reported at ``time`` (POSIX seconds)."""
        self.now = self.agents.now = time
        event_class, inner = argument["eventSpecificInfo"]
        name = inner[0] if isinstance(inner, tuple) else event_class
        try:
            if event_class == "callControlEvents" and name in self._table:
                self._table[name](inner[1])
            elif event_class == "logicalDeviceFeatureEvents" and isinstance(inner[1], dict):
                if not self.agents.handle(name, inner[1]):
                    self.ignored[name] += 1
            elif event_class == "deviceMaintenanceEvents" and name in _MAINTENANCE:
                self.agents.maintenance(name, inner[1])
            else:
                self.ignored[name] += 1
        except Exception:
            self.failures += 1
            if self.failures <= LOGGED_FAILURES or self.failures % 1000 == 0:
                log.error(
                    "switch %s: could not apply CSTA event %s (%d so far); the link continues",
                    self.switch,
                    name,
                    self.failures,
                    exc_info=self.failures <= LOGGED_FAILURES,
                )

    def emit(
        self,
        cls: type[ev.CallEvent],
        call: CstaCall,
        device: str | None,
        state: LCS | None,
        party: Party | None = None,
        **extra: Any,
    ) -> None:
        """Publish one call event; a party's own agent and queue win over the call's."""
        extra.setdefault("agent", (party.agent if party else None) or call.agent)
        extra.setdefault("queue", (party.queue if party else None) or call.queue)
        switch_id = call.switch_call_id
        self._emit(
            cls(
                switch=self.switch,
                time=self.now,
                call_id=call.call_id,
                device=device,
                calling_number=call.calling,
                called_number=call.called,
                connection_state=state,
                switch_call_id=values.call_id_text(switch_id) if switch_id else None,
                data=dict(call.data),
                **extra,
            )
        )

    # -- finding the call ------------------------------------------------------------------
    def _start(self, connection: Any, device: str | None = None) -> CstaCall | None:
        switch_id, _ = values.connection_parts(connection)
        return self.book.start(switch_id, device) if switch_id is not None else None

    def _known(self, connection: Any) -> CstaCall | None:
        return self.book.find(values.connection_parts(connection)[0])

    def _subject(
        self, value: dict[str, Any], connection_key: str, device_key: str, *, start: bool = True
    ) -> tuple[CstaCall, str, Any] | None:
        """(call, device, ConnectionID) an event is about: the call found (or, with ``start``,
        started) by the connection's callID, the device named (else the connection's)."""
        connection = value.get(connection_key)
        device = values.device_of(value.get(device_key)) or values.connection_parts(connection)[1]
        call = self._start(connection) if start else self._known(connection)
        if call is None or device is None:
            return None
        return call, device, connection

    def _arrive(self, call: CstaCall, value: dict[str, Any]) -> bool:
        """Take the call's numbers and data; True if this announces a call arriving."""
        call.data.update(values.user_data(value.get("userData")))
        if call.announced:
            return False
        call.announced = True
        call.calling = values.device_of(value.get("callingDevice"))
        call.called = values.device_of(value.get("calledDevice"))
        if call.calling is not None and call.calling not in call.parties:
            call.caller = call.calling
            call.parties[call.calling] = Party(call.calling, LCS.CONNECTED)
        return True

    def _is_routing(self, device: str, call: CstaCall, first: bool) -> bool:
        if self.routing_devices is not None:
            return device in self.routing_devices
        return first and device == call.called

    def _release_router(self, call: CstaCall, device: str | None) -> None:
        party = call.parties.get(device) if device is not None else None
        if party is not None and party.routing and party.state is LCS.ALERTING:
            del call.parties[party.device]

    def _reached_through_queue(self, call: CstaCall, party: Party) -> None:
        if call.queue is not None and party.device != call.caller and not party.routing:
            party.queue = call.queue
            party.agent = self.agents.agent_of(party.device)

    # -- a call starts ---------------------------------------------------------------------
    def service_initiated(self, value: dict[str, Any]) -> None:
        connection = value.get("initiatedConnection")
        device = values.device_of(value.get("initiatingDevice"))
        call = self._start(connection, device)
        if call is None or device is None:
            return
        party = call.parties.get(device)
        if party is not None and party.state is LCS.INITIATED:
            return
        if not call.announced:
            call.announced = True
            call.calling = call.caller = device
        call.data.update(values.user_data(value.get("userData")))
        call.parties[device] = party = Party(device, LCS.INITIATED, connection)
        self.emit(ev.ServiceInitiated, call, device, LCS.INITIATED, party)

    def originated(self, value: dict[str, Any]) -> None:
        connection = value.get("originatedConnection")
        device = values.device_of(value.get("callingDevice"))
        call = self._start(connection, device)
        if call is None or device is None:
            return
        party = call.parties.get(device)
        if call.originated and party is not None and party.state is LCS.CONNECTED:
            return
        if not call.announced:
            call.announced = True
            call.calling = call.caller = device
        call.originated = True
        call.called = values.device_of(value.get("calledDevice")) or call.called
        call.parties[device] = party = Party(device, LCS.CONNECTED, connection)
        self.emit(ev.Originated, call, device, LCS.CONNECTED, party)

    def delivered(self, value: dict[str, Any]) -> None:
        found = self._subject(value, "connection", "alertingDevice")
        if found is None:
            return
        call, device, connection = found
        first = self._arrive(call, value)
        party = call.parties.get(device)
        if party is not None and party.state is LCS.ALERTING:
            return
        party = Party(
            device, LCS.ALERTING, connection, routing=self._is_routing(device, call, first)
        )
        if party.routing:
            call.route_position = device
        else:
            self._reached_through_queue(call, party)
        redirected = values.device_of(value.get("lastRedirectionDevice"))
        last = None if first else redirected or call.route_position
        self._release_router(call, last)
        call.parties[device] = party
        self.emit(ev.Delivered, call, device, LCS.ALERTING, party, last_redirection_device=last)

    def queued(self, value: dict[str, Any]) -> None:
        found = self._subject(value, "queuedConnection", "queue")
        if found is None:
            return
        call, queue, connection = found
        self._arrive(call, value)
        party = call.parties.get(queue)
        if party is not None and party.state is LCS.QUEUED:
            return
        prior = values.device_of(value.get("lastRedirectionDevice")) or call.route_position
        for other in list(call.parties.values()):
            if other.state is LCS.QUEUED:  # one queue at a time
                del call.parties[other.device]
        self._release_router(call, prior)
        call.queue = call.route_position = queue
        call.parties[queue] = Party(queue, LCS.QUEUED, connection, routing=True)
        in_front = value.get("callsInFront")
        count = value.get("numberQueued")
        self.emit(
            ev.Queued,
            call,
            queue,
            LCS.QUEUED,
            position=in_front + 1 if isinstance(in_front, int) and in_front >= 0 else 1,
            queue_count=count if isinstance(count, int) else None,
            last_redirection_device=prior,
        )

    def established(self, value: dict[str, Any]) -> None:
        found = self._subject(value, "establishedConnection", "answeringDevice")
        if found is None:
            return
        call, device, connection = found
        self._arrive(call, value)
        party = call.parties.get(device)
        if party is not None and party.routing and self.routing_devices is not None:
            return  # an IVR or queue answering for the route point: not the call answered
        if party is not None and party.state is LCS.CONNECTED and not party.routing:
            return
        if party is None:
            party = call.parties[device] = Party(device, LCS.CONNECTED, connection)
            self._reached_through_queue(call, party)
        party.state, party.routing, party.connection = LCS.CONNECTED, False, connection
        call.answered = True
        call.route_position = None
        if party.agent is not None:
            call.agent = party.agent
        for other in list(call.parties.values()):
            if other.state is LCS.QUEUED:
                del call.parties[other.device]
        self.emit(ev.Established, call, device, LCS.CONNECTED, party)

    def failed(self, value: dict[str, Any]) -> None:
        found = self._subject(value, "failedConnection", "failingDevice")
        if found is None:
            return
        call, device, connection = found
        self._arrive(call, value)
        party = call.parties.get(device)
        if party is not None and party.state is LCS.FAIL:
            return
        name, _ = values.cause(value.get("cause"))
        call.parties[device] = party = Party(device, LCS.FAIL, connection)
        call.failure = call.failure or name
        self.emit(ev.Failed, call, device, LCS.FAIL, party, cause=name)

    def network_reached(self, value: dict[str, Any]) -> None:
        call = self._start(value.get("outboundConnection"))
        if call is None or call.network_reached:
            return
        self._arrive(call, value)
        call.network_reached = True
        trunk = values.device_of(value.get("networkInterfaceUsed"))
        self.emit(ev.NetworkReached, call, trunk, None)

    # -- parties change --------------------------------------------------------------------
    def held(self, value: dict[str, Any]) -> None:
        self._hold(value, "heldConnection", "holdingDevice", LCS.HELD, ev.Held)

    def retrieved(self, value: dict[str, Any]) -> None:
        self._hold(value, "retrievedConnection", "retrievingDevice", LCS.CONNECTED, ev.Retrieved)

    def _hold(
        self, value: dict[str, Any], conn: str, subject: str, state: LCS, cls: type[ev.CallEvent]
    ) -> None:
        found = self._subject(value, conn, subject, start=False)
        if found is None:
            return
        call, device, connection = found
        party = call.parties.get(device)
        if party is not None and party.state is state:
            return
        if party is None:
            party = call.parties[device] = Party(device, state, connection)
        party.state = state
        self.emit(cls, call, device, state, party)

    def diverted(self, value: dict[str, Any]) -> None:
        call = self._known(value.get("connection"))
        device = values.device_of(value.get("divertingDevice"))
        party = call.parties.get(device) if call is not None and device is not None else None
        if call is None or party is None:
            return
        name, _ = values.cause(value.get("cause"))
        if party.routing and party.state is LCS.QUEUED and name == "distributed":
            return  # handed to an agent; the queue's connection ends when it is answered
        del call.parties[party.device]
        if party.routing and party.state is LCS.ALERTING:
            return  # a route point passing the call on
        if call.route_position == party.device:
            call.route_position = None
        target = values.device_of(value.get("newDestination"))
        if party.routing and name is None:
            name = "queue_exit"
        self.emit(
            ev.Diverted, call, party.device, LCS.NULL, party, cause=name, new_destination=target
        )

    # -- parties leave ---------------------------------------------------------------------
    def connection_cleared(self, value: dict[str, Any]) -> None:
        found = self._subject(value, "droppedConnection", "releasingDevice", start=False)
        party = found[0].parties.get(found[1]) if found is not None else None
        if found is None or party is None:
            return
        call = found[0]
        call.data.update(values.user_data(value.get("userData")))
        name, code = values.cause(value.get("cause"))
        self.clear_party(call, party, name, code)
        if self.monitored is not None and not any(d in self.monitored for d in call.parties):
            self.end_call(call, name, code)

    def clear_party(self, call: CstaCall, party: Party, name: str | None, code: int | None) -> None:
        """``party`` left ``call``: published unless it was a routing position."""
        if call.parties.get(party.device) is party:
            del call.parties[party.device]
        if party.routing:
            if call.route_position == party.device:
                call.route_position = None
            return
        cause = name or "normal_clearing"
        waiting = any(other.state is LCS.QUEUED for other in call.parties.values())
        if party.device == call.caller and not call.answered and waiting:
            call.abandoned = True
        talking = party.state in _TALKING or party.device == call.caller
        if name is not None and talking and call.end_cause is None:
            call.end_cause = (name, code)
        if call.abandoned and party.device == call.caller:
            cause = "abandoned"
        self.emit(
            ev.ConnectionCleared, call, party.device, LCS.NULL, party, cause=cause, cause_code=code
        )

    def call_cleared(self, value: dict[str, Any]) -> None:
        call = self._known(value.get("clearedCall"))
        if call is None:
            return
        call.data.update(values.user_data(value.get("userData")))
        self.end_call(call, *values.cause(value.get("cause")))

    def end_call(self, call: CstaCall, name: str | None, code: int | None) -> None:
        """Clear the parties still in ``call``, then the call; forget it."""
        for party in call.people():
            self.clear_party(call, party, name, code)
        cause, cause_code = call.end_cause or (name or "normal_clearing", code)
        if call.abandoned:
            cause = "abandoned"
        elif not call.answered and call.failure and name != "resync":
            cause, cause_code = call.failure, None
        if name == "resync":
            cause, cause_code = "resync", None
        self.emit(ev.CallCleared, call, None, None, cause=cause, cause_code=cause_code)
        self.book.forget(call)

    # -- calls join ------------------------------------------------------------------------
    def _joined(self, value: dict[str, Any]) -> tuple[CstaCall, CstaCall | None] | None:
        """(survivor, merged) of a transfer or conference: the older call survives."""
        calls = {
            id(c): c
            for c in map(self._known, (value.get("primaryOldCall"), value.get("secondaryOldCall")))
            if c
        }
        if not calls:
            return None
        ordered = sorted(calls.values(), key=lambda call: call.born)
        return ordered[0], ordered[1] if len(ordered) > 1 else None

    def _reconnect(self, call: CstaCall, connections: Any) -> None:
        """Take the new ConnectionIDs of a ConnectionList (and the callIDs they name)."""
        fresh: list[bytes] = []
        for item in connections or ():
            new = item.get("newConnection")
            switch_id, device = values.connection_parts(new)
            device = values.device_of(item.get("endpoint")) or device
            if switch_id is not None:
                fresh.append(switch_id)
            if device is not None and device in call.parties and new is not None:
                call.parties[device].connection = new
        self.book.rekey(call, fresh)

    def transferred(self, value: dict[str, Any]) -> None:
        joined = self._joined(value)
        transferring = values.device_of(value.get("transferringDevice"))
        if joined is None or transferring is None:
            return
        survivor, merged = joined
        if merged is None and transferring not in survivor.parties:
            return
        party = survivor.parties.pop(transferring, None)
        if merged is not None:
            party = party or merged.parties.get(transferring)
            self.book.merge(merged, survivor, leaving=transferring)
        survivor.data.update(values.user_data(value.get("userData")))
        self._reconnect(survivor, value.get("transferredConnections"))
        self.emit(
            ev.Transferred,
            survivor,
            transferring,
            LCS.NULL,
            party,
            transferred_to=values.device_of(value.get("transferredToDevice")),
            cause="transfer",
            secondary_call_id=merged.call_id if merged is not None else None,
        )
        if merged is None:  # single step: the call rings at its new destination
            survivor.answered, survivor.agent, survivor.queue = False, None, None
            survivor.route_position = None

    def conferenced(self, value: dict[str, Any]) -> None:
        joined = self._joined(value)
        conferencing = values.device_of(value.get("conferencingDevice"))
        added = values.device_of(value.get("addedParty"))
        if joined is None or conferencing is None:
            return
        survivor, merged = joined
        if merged is None and (added is None or added in survivor.parties):
            return
        if merged is not None:
            self.book.merge(merged, survivor, leaving=None)
        for device in (conferencing, added):
            if device is not None:
                party = survivor.parties.setdefault(device, Party(device, LCS.CONNECTED))
                party.state = LCS.CONNECTED
        self._reconnect(survivor, value.get("conferenceConnections"))
        self.emit(
            ev.Conferenced,
            survivor,
            conferencing,
            LCS.CONNECTED,
            survivor.parties.get(conferencing),
            added_device=added,
            secondary_call_id=merged.call_id if merged is not None else None,
        )
