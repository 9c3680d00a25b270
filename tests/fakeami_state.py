"""The fake Asterisk's calls, queues and bridges, and the actions that list or act on them.

``FakeState`` is a mixin of ``tests.fakeami.FakeAsterisk`` (the server, its sessions and
logins); it holds what a switch knows about calls, as plain state that tests edit directly or
through the builders:

* ``channels``: Uniqueid -> the CoreShowChannel headers after ActionID (``add_channel``,
  ``remove_channel``, ``find_channel``);
* ``bridges``: BridgeUniqueid -> member Uniqueids (``add_bridge``);
* ``queues``: name -> ``FakeQueue``, its params, members and waiting callers (``add_queue``,
  ``add_member``, ``add_entry``);
* ``originate_ids``: ChannelId -> the Originate that asked for it.

Its action handlers (``FakeAsterisk`` dispatches to them) are worded as ``main/manager.c``,
``main/manager_bridges.c`` and ``apps/app_queue.c`` word them. The list actions
(CoreShowChannels, QueueStatus, QueueSummary, BridgeList, BridgeInfo) report that state.
Actions that act on calls (Originate, Hangup, Redirect, transfers) only check and answer: a
test scripts the call's events with ``emit()``. Queue member actions (QueueAdd, QueueRemove,
QueuePause) update ``queues`` and append the member events to ``_after``, which the server
sends after the response, as app_queue does. ``restart()`` forgets calls
(``_forget_calls``); queue members are config and stay.

``response`` (every answer, both modules use it) and ``originate_response`` are here so that
this module needs nothing from ``tests.fakeami`` at run time; tests import them from there.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from twisted.internet.interfaces import IReactorTime

from ctilink.ami.message import AmiMessage

if TYPE_CHECKING:
    from tests.fakeami import FakeConnection

Headers = list[tuple[str, str]]

_TRUE: Final = frozenset({"yes", "true", "y", "t", "1", "on"})  # ast_true
_FALSE: Final = frozenset({"no", "false", "n", "f", "0", "off"})  # ast_false
# fmt: off
_STATE_DESC: Final = ("Down", "Rsrvd", "OffHook", "Dialing", "Ring", "Ringing", "Up", "Busy",
                      "Dialing Offhook", "Pre-ring")
_CORESHOW_ONLY: Final = ("Application", "ApplicationData", "Duration", "BridgeId")
_PARAMS: Final = (
    ("Max", "0"), ("Strategy", "ringall"), ("Calls", "0"), ("Holdtime", "0"), ("TalkTime", "0"),
    ("Completed", "0"), ("Abandoned", "0"), ("ServiceLevel", "0"), ("ServicelevelPerf", "0.0"),
    ("ServicelevelPerf2", "0.0"), ("Weight", "0"),
)
# fmt: on
_BLOB_NAMES: Final = {"Name": "MemberName", "Location": "Interface"}  # QueueMember -> events
_C_INT = re.compile(r"\s*[+-]?\d+")


def response(
    action: AmiMessage, status: str = "Success", message: str | None = None, *extra: tuple[str, str]
) -> AmiMessage:
    """``astman_send_response_full``: Response, ActionID when the action had one, Message."""
    text = [("Message", message)] if message is not None else []
    return AmiMessage([("Response", status), *_action_id(action), *text, *extra])


def originate_response(
    originate: AmiMessage,
    *,
    uniqueid: str,
    channel: str = "",
    status: str = "Success",
    reason: int = 4,
) -> AmiMessage:
    """The OriginateResponse an Async Originate ends with (``fast_originate``; 4 = answered)."""
    name, number = _caller_id(originate.get("CallerID", ""))
    target = ("Application", "Data") if originate.get("Application") else ("Context", "Exten")
    return AmiMessage([
        ("Event", "OriginateResponse"), ("Privilege", "call,all"), *_action_id(originate),
        ("Response", status), ("Channel", channel or originate.get("Channel", "")),
        *[(key, originate.get(key, "")) for key in target], ("Reason", str(reason)),
        ("Uniqueid", uniqueid), ("CallerIDNum", number or "<unknown>"),
        ("CallerIDName", name or "<unknown>"),
    ])  # fmt: skip


@dataclass
class FakeQueue:
    """One queue as QueueStatus lists it; ``Calls`` in params is always the live entry count."""

    params: Headers  # QueueParams after Queue
    members: list[Headers] = field(default_factory=list)  # QueueMember after Queue (+Ringinuse)
    entries: list[Headers] = field(default_factory=list)  # QueueEntry after Queue and Position


class FakeState:
    """Calls, queues and bridges of a fake Asterisk; the builders and the actions on them."""

    # Provided by the host (FakeAsterisk): its clock, boot time (the Uniqueid prefix), random
    # source, and the events the action being processed raised (sent after its response).
    clock: IReactorTime
    _boot: float
    _random: random.Random
    _after: list[AmiMessage]

    def __init__(self) -> None:
        self.channels: dict[str, Headers] = {}
        self.bridges: dict[str, list[str]] = {}
        self.queues: dict[str, FakeQueue] = {}
        self.originate_ids: dict[str, AmiMessage] = {}  # ChannelId -> its Originate
        self._next_uid = 0

    def _forget_calls(self) -> None:
        """What a restart loses: channels, bridges, originations, queue callers."""
        self.channels.clear()
        self.bridges.clear()
        self.originate_ids.clear()
        for queue in self.queues.values():
            queue.entries.clear()

    # -- state builders ------------------------------------------------------------------
    def add_channel(
        self,
        channel: str,
        *,
        uniqueid: str | None = None,
        linkedid: str | None = None,
        state: int = 6,
        caller_num: str = "<unknown>",
        caller_name: str = "<unknown>",
        connected_num: str = "<unknown>",
        connected_name: str = "<unknown>",
        language: str = "en",
        account_code: str = "",
        context: str = "default",
        exten: str = "s",
        priority: int = 1,
        application: str = "",
        application_data: str = "",
        duration: str = "00:00:00",
        bridge_id: str = "",
    ) -> str:
        """A channel as CoreShowChannel lists it (an answered one by default); its Uniqueid."""
        if uniqueid is None:
            self._next_uid += 1
            uniqueid = f"{int(self._boot)}.{self._next_uid}"
        desc = _STATE_DESC[state] if 0 <= state < len(_STATE_DESC) else f"Unknown ({state})"
        self.channels[uniqueid] = [
            ("Channel", channel), ("ChannelState", str(state)), ("ChannelStateDesc", desc),
            ("CallerIDNum", caller_num), ("CallerIDName", caller_name),
            ("ConnectedLineNum", connected_num), ("ConnectedLineName", connected_name),
            ("Language", language), ("AccountCode", account_code), ("Context", context),
            ("Exten", exten), ("Priority", str(priority)), ("Uniqueid", uniqueid),
            ("Linkedid", linkedid or uniqueid), ("Application", application),
            ("ApplicationData", application_data), ("Duration", duration), ("BridgeId", bridge_id),
        ]  # fmt: skip
        if bridge_id:
            self.bridges.setdefault(bridge_id, []).append(uniqueid)
        return uniqueid

    def remove_channel(self, uniqueid: str) -> None:
        """Forget a channel, its bridge membership and its queue entries."""
        self.channels.pop(uniqueid, None)
        for members in self.bridges.values():
            if uniqueid in members:
                members.remove(uniqueid)
        for queue in self.queues.values():
            queue.entries = [e for e in queue.entries if _get(e, "Uniqueid") != uniqueid]

    def add_bridge(self, *uniqueids: str, bridge_id: str | None = None) -> str:
        """A basic bridge holding ``uniqueids`` (their BridgeId follows); returns its id."""
        bridge_id = bridge_id or str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        self.bridges[bridge_id] = list(uniqueids)
        for uid in uniqueids:
            if uid in self.channels:
                self.channels[uid] = _replace(self.channels[uid], "BridgeId", bridge_id)
        return bridge_id

    def add_queue(self, name: str, **params: str | int) -> FakeQueue:
        """A queue; QueueParams (Strategy, Holdtime...) default to an idle ringall queue."""
        values = {key: str(value) for key, value in params.items()}
        ordered = [(key, values.pop(key, default)) for key, default in _PARAMS]
        self.queues[name] = FakeQueue([*ordered, *values.items()])
        return self.queues[name]

    def add_member(
        self,
        queue: str,
        interface: str,
        *,
        name: str | None = None,
        state_interface: str | None = None,
        membership: str = "static",
        penalty: int = 0,
        status: int = 1,
        paused: bool = False,
        paused_reason: str = "",
        in_call: bool = False,
        calls_taken: int = 0,
        last_call: int = 0,
        last_pause: int = 0,
        login_time: int | None = None,
        wrapuptime: int = 0,
        ringinuse: bool = False,
    ) -> Headers:
        """A queue member (and the queue if new); returns its QueueMember headers."""
        login = int(self.clock.seconds()) if login_time is None else login_time
        member: Headers = [
            ("Name", name or interface), ("Location", interface),
            ("StateInterface", state_interface or interface), ("Membership", membership),
            ("Penalty", str(penalty)), ("CallsTaken", str(calls_taken)),
            ("LastCall", str(last_call)), ("LastPause", str(last_pause)),
            ("LoginTime", str(login)), ("InCall", str(int(in_call))), ("Status", str(status)),
            ("Paused", str(int(paused))), ("PausedReason", paused_reason),
            ("Wrapuptime", str(wrapuptime)), ("Ringinuse", str(int(ringinuse))),
        ]  # fmt: skip
        (self.queues.get(queue) or self.add_queue(queue)).members.append(member)
        return member

    def add_entry(self, queue: str, uniqueid: str, *, wait: int = 0, priority: int = 0) -> Headers:
        """A caller waiting in ``queue``: channel and caller id from ``channels[uniqueid]``."""
        block = self.channels.get(uniqueid, [])
        ids = [(key, _get(block, key)) for key in ("CallerIDNum", "CallerIDName")]
        ids += [(key, _get(block, key)) for key in ("ConnectedLineNum", "ConnectedLineName")]
        entry = [("Channel", _get(block, "Channel")), ("Uniqueid", uniqueid)]
        entry += [(key, "unknown" if v in ("", "<unknown>") else v) for key, v in ids]
        entry += [("Wait", str(wait)), ("Priority", str(priority))]
        (self.queues.get(queue) or self.add_queue(queue)).entries.append(entry)
        return entry

    def find_channel(self, name: str) -> str | None:
        """The Uniqueid of channel ``name`` (as ast_channel_get_by_name: name or Uniqueid)."""
        for uid, block in self.channels.items():
            if _get(block, "Channel").lower() == name.lower() or uid == name:
                return uid
        return None

    # -- actions ---------------------------------------------------------------------------
    def _originate(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        channel, priority, timeout = (action.get(k, "") for k in ("Channel", "Priority", "Timeout"))
        sync = action.get("Async", "").lower() not in _TRUE
        error = _first_error(
            (not channel, "Channel not specified"),
            (bool(priority) and not _C_INT.match(priority), "Invalid priority"),
            (bool(timeout) and not _C_INT.match(timeout), "Invalid timeout"),
            ("/" not in channel, "Invalid channel"),
            (sync and not action.get("Application") and not priority,
             "Originate with 'Exten' requires 'Context' and 'Priority'"),
        )  # fmt: skip
        if not error and (channel_id := action.get("ChannelId")):
            self.originate_ids[channel_id] = action
        return _answer(action, error, "Originate successfully queued")

    def _hangup(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name = action.get("Channel", "")
        error = _first_error(
            (not name, "No channel specified"), (self.find_channel(name) is None, "No such channel")
        )
        return _answer(action, error, "Channel Hungup")

    def _redirect(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name, extra = action.get("Channel", ""), action.get("ExtraChannel", "")
        keys = ("Channel", "Context", "Exten", "Priority")
        error = _first_error(
            *[(not action.get(key), f"{key} not specified") for key in keys],
            (_int(action.get("Priority", "")) < 1, "Priority is invalid"),
            (self.find_channel(name) is None, f"Channel does not exist: {name}"),
            (bool(extra) and self.find_channel(extra) is None,
             f"ExtraChannel does not exist: {extra}"),
        )  # fmt: skip
        return _answer(
            action, error, "Dual Redirect successful" if extra else "Redirect successful"
        )

    def _transfer_error(self, action: AmiMessage) -> str | None:
        """BlindTransfer's and Atxfer's checks, in their order."""
        name = action.get("Channel", "")
        return _first_error(
            (not name, "No channel specified"), (not action.get("Exten"), "No extension specified"),
            (self.find_channel(name) is None, "Channel specified does not exist"),
        )  # fmt: skip

    def _blind_transfer(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        uid = self.find_channel(action.get("Channel", ""))
        bridged = any(uid in members for members in self.bridges.values())
        error = self._transfer_error(action) or (None if bridged else "Transfer invalid")
        return _answer(action, error, "Transfer succeeded")

    def _atxfer(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        return _answer(action, self._transfer_error(action), "Atxfer successfully queued")

    def _queue(self, name: str) -> tuple[str, FakeQueue] | tuple[None, None]:
        """Queue names match case-insensitively, as in app_queue."""
        found = [(n, q) for n, q in self.queues.items() if n.lower() == name.lower()]
        return found[0] if found else (None, None)

    def _member_event(self, event: str, queue: str, member: Headers) -> AmiMessage:
        """The queue member blob (queue_member_blob_create) from QueueMember headers."""
        blob = [
            (_BLOB_NAMES.get(k, k), v) for k, v in member if k not in ("Ringinuse", "Wrapuptime")
        ]
        ring, wrap = (_get(member, key) or "0" for key in ("Ringinuse", "Wrapuptime"))
        return AmiMessage([("Event", event), ("Privilege", "agent,all"), ("Queue", queue), *blob,
                           ("Ringinuse", ring), ("Wrapuptime", wrap)])  # fmt: skip

    def _queue_add(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name, interface = action.get("Queue", ""), action.get("Interface", "")
        queue_name, queue = self._queue(name)
        error = _first_error(
            (not name, "'Queue' not specified."), (not interface, "'Interface' not specified."),
            (queue is None, "Unable to add interface to queue: No such queue"),
            (queue is not None and _member(queue, interface) is not None,
             "Unable to add interface: Already there"),
        )  # fmt: skip
        if error or queue_name is None:
            return _answer(action, error, "")
        paused = action.get("Paused", "").lower() in _TRUE
        member = self.add_member(
            queue_name, interface, name=action.get("MemberName") or None,
            state_interface=action.get("StateInterface") or None, membership="dynamic",
            penalty=max(_int(action.get("Penalty", "")), 0), paused=paused,
            paused_reason=action.get("Reason", "") if paused else "",
            wrapuptime=max(_int(action.get("Wrapuptime", "")), 0),
        )  # fmt: skip
        self._after.append(self._member_event("QueueMemberAdded", queue_name, member))
        return _answer(action, None, "Added interface to queue")

    def _queue_remove(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        name, interface = action.get("Queue", ""), action.get("Interface", "")
        queue_name, queue = self._queue(name)
        member = _member(queue, interface) if queue is not None else None
        error = _first_error(
            (not name or not interface, "Need 'Queue' and 'Interface' parameters."),
            (queue is None, "Unable to remove interface from queue: No such queue"),
            (member is None, "Unable to remove interface: Not there"),
            (member is not None and _get(member, "Membership") != "dynamic", "Member not dynamic"),
        )  # fmt: skip
        if not error and queue_name and queue and member:
            queue.members.remove(member)
            self._after.append(self._member_event("QueueMemberRemoved", queue_name, member))
        return _answer(action, error, "Removed interface from queue")

    def _queue_pause(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        interface, paused_text = action.get("Interface", ""), action.get("Paused", "")
        if not interface or not paused_text:
            return _answer(action, "Need 'Interface' and 'Paused' parameters.", "")
        paused, wanted = paused_text.lower() in _TRUE, action.get("Queue", "").lower()
        hits = 0
        for name, queue in self.queues.items():
            member = _member(queue, interface)
            if member is None or wanted not in ("", name.lower()):
                continue
            hits += 1
            updated = _replace(member, "Paused", str(int(paused)))
            updated = _replace(updated, "PausedReason", action.get("Reason", "") if paused else "")
            if paused:
                updated = _replace(updated, "LastPause", str(int(self.clock.seconds())))
            queue.members[queue.members.index(member)] = updated
            self._after.append(self._member_event("QueueMemberPause", name, updated))
        error = None if hits else "Interface not found"
        return _answer(action, error, f"Interface {'' if paused else 'un'}paused successfully")

    def _core_show_channels(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        items = [_item("CoreShowChannel", action, block) for block in self.channels.values()]
        return _listing(action, "Channels will follow", items, "CoreShowChannelsComplete")

    def _queue_status(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        wanted, who = action.get("Queue", "").lower(), action.get("Member", "")
        items: list[AmiMessage] = []
        for name, queue in self.queues.items():
            if wanted and name.lower() != wanted:
                continue
            params = [(k, str(len(queue.entries)) if k == "Calls" else v) for k, v in queue.params]
            items.append(_item("QueueParams", action, [("Queue", name), *params], id_last=True))
            for member in queue.members:
                if not who or who in (_get(member, "Location"), _get(member, "Name")):
                    shown = [("Queue", name), *[(k, v) for k, v in member if k != "Ringinuse"]]
                    items.append(_item("QueueMember", action, shown, id_last=True))
            for position, entry in enumerate(queue.entries, 1):
                shown = [("Queue", name), ("Position", str(position)), *entry]
                items.append(_item("QueueEntry", action, shown, id_last=True))
        return _listing(action, "Queue status will follow", items, "QueueStatusComplete")

    def _queue_summary(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        wanted = action.get("Queue", "").lower()
        items: list[AmiMessage] = []
        for name, queue in self.queues.items():
            if wanted and name.lower() != wanted:
                continue
            logged_in = [m for m in queue.members if _get(m, "Status") not in ("4", "5")]
            free = [
                m for m in logged_in if _get(m, "Status") in ("0", "1") and _get(m, "Paused") == "0"
            ]
            longest = max((_int(_get(e, "Wait")) for e in queue.entries), default=0)
            items.append(_item("QueueSummary", action, [
                ("Queue", name), ("LoggedIn", str(len(logged_in))), ("Available", str(len(free))),
                ("Callers", str(len(queue.entries))), ("HoldTime", _get(queue.params, "Holdtime")),
                ("TalkTime", _get(queue.params, "TalkTime")), ("LongestHoldTime", str(longest)),
            ], id_last=True))  # fmt: skip
        return _listing(action, "Queue summary will follow", items, "QueueSummaryComplete")

    def _bridge_block(self, bridge_id: str) -> Headers:
        return [
            ("BridgeUniqueid", bridge_id), ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"), ("BridgeNumChannels", str(len(self.bridges[bridge_id]))),
            ("BridgeVideoSourceMode", "none"),
        ]  # fmt: skip

    def _bridge_list(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        wanted = action.get("BridgeType", "")  # compared with the bridge technology
        bridges = [b for b in self.bridges if wanted in ("", "simple_bridge")]
        items = [_item("BridgeListItem", action, self._bridge_block(b)) for b in bridges]
        return _listing(action, "Bridge listing will follow", items, "BridgeListComplete")

    def _bridge_info(self, conn: FakeConnection, action: AmiMessage) -> list[AmiMessage]:
        bridge_id = action.get("BridgeUniqueid", "")
        error = _first_error(
            (not bridge_id, "BridgeUniqueid must be provided"),
            (bridge_id not in self.bridges, "Specified BridgeUniqueid not found"),
        )
        if error:
            return [response(action, "Error", error)]
        blocks = [self.channels[uid] for uid in self.bridges[bridge_id] if uid in self.channels]
        items = [
            _item("BridgeInfoChannel", action, [h for h in b if h[0] not in _CORESHOW_ONLY])
            for b in blocks
        ]
        listing = _listing(
            action, "Bridge channel listing will follow", items, "BridgeInfoComplete"
        )
        listing[-1] = AmiMessage([*listing[-1].headers, *self._bridge_block(bridge_id)])
        return listing


# -- message helpers -----------------------------------------------------------------------
def _action_id(action: AmiMessage) -> Headers:
    """The ActionID header to echo: none when the action had none or an empty one."""
    action_id = action.get("ActionID")
    return [("ActionID", action_id)] if action_id else []


def _first_error(*checks: tuple[bool, str]) -> str | None:
    return next((text for failed, text in checks if failed), None)


def _answer(action: AmiMessage, error: str | None, success: str) -> list[AmiMessage]:
    """astman_send_error with ``error``, else astman_send_ack with ``success``."""
    return [response(action, "Error", error) if error else response(action, "Success", success)]


def _get(headers: Headers, key: str) -> str:
    return next((v for k, v in headers if k == key), "")


def _replace(headers: Headers, key: str, value: str) -> Headers:
    return [(k, value if k == key else v) for k, v in headers]


def _int(text: str) -> int:
    """sscanf("%d"): the leading integer, 0 when there is none."""
    match = _C_INT.match(text)
    return int(match.group()) if match else 0


def _member(queue: FakeQueue, interface: str) -> Headers | None:
    return next(
        (m for m in queue.members if _get(m, "Location").lower() == interface.lower()), None
    )


def _item(event: str, action: AmiMessage, headers: Headers, *, id_last: bool = False) -> AmiMessage:
    """A list item: ActionID right after Event, or last as app_queue puts it."""
    if id_last:
        return AmiMessage([("Event", event), *headers, *_action_id(action)])
    return AmiMessage([("Event", event), *_action_id(action), *headers])


def _listing(action: AmiMessage, text: str, items: list[AmiMessage], done: str) -> list[AmiMessage]:
    """astman_send_listack, the items, astman_send_list_complete."""
    action_id = _action_id(action)
    start = [("Response", "Success"), *action_id, ("EventList", "start"), ("Message", text)]
    end = [("Event", done), *action_id, ("EventList", "Complete"), ("ListItems", str(len(items)))]
    return [AmiMessage(start), *items, AmiMessage(end)]


def _caller_id(text: str) -> tuple[str, str]:
    """(name, number) of ``"Name" <number>``, ``Name <number>`` or a bare number."""
    if match := re.match(r'\s*"?([^"<]*?)"?\s*<([^>]*)>', text):
        return match.group(1).strip(), match.group(2).strip()
    text = text.strip()
    return ("", text) if re.fullmatch(r"[0-9+*#()\-. ]*", text) else (text, "")
