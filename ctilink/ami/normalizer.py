"""AMI events → model events, for one switch.

The normalizer is the inbound table of the Asterisk adapter: it maps each AMI event name
to the handler that understands it (``ctilink.ami.call_events`` for channels, dialling,
bridges, transfers and queue callers; ``ctilink.ami.agents`` for queue members). Events
without a handler (Newexten floods aside, there are many: DeviceStateChange, AGIExec...)
are counted in ``ignored`` and otherwise dropped.

A handler that raises on a malformed or unexpected event must not stop the link: the
error is logged with the event name and the link goes on with the next event. Handlers
run synchronously and emit through ``emit`` in the order the switch reported things.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable

from ctilink.ami.agents import AgentBook
from ctilink.ami.call_events import CallEvents
from ctilink.ami.calls import Call, CallBook
from ctilink.ami.connections import Connections
from ctilink.ami.message import AmiMessage
from ctilink.model.events import Event

log = logging.getLogger(__name__)

LOGGED_FAILURES = 10


def new_call_id() -> str:
    return str(uuid.uuid4())


class AmiNormalizer:
    def __init__(
        self,
        switch: str,
        emit: Callable[[Event], object],
        *,
        call_id_factory: Callable[[], str] = new_call_id,
        call_data_variables: frozenset[str] = frozenset(),
    ) -> None:
        self.switch = switch
        self.calls = CallBook(call_id_factory, call_data_variables)
        self.connections = Connections(switch, emit, self.calls)
        self.agents = AgentBook(switch, emit)
        self._table: dict[str, Callable[[AmiMessage], None]] = {
            **CallEvents(self.calls, self.connections).table(),
            **self.agents.table(),
        }
        self.ignored: Counter[str] = Counter()
        self.failures = 0

    def register(self, name: str, handler: Callable[[AmiMessage], None]) -> None:
        """Handle AMI event ``name`` with ``handler`` (replacing any built-in handler)."""
        self._table[name] = handler

    def handle(self, message: AmiMessage, time: float) -> None:
        """Apply one AMI event reported at ``time`` (POSIX seconds)."""
        handler = self._table.get(message.name)
        if handler is None:
            self.ignored[message.name] += 1
            return
        self.connections.now = self.agents.now = time
        try:
            handler(message)
        except Exception:
            self.failures += 1
            # The first few with a traceback, then one line per thousand: a switch sending
            # something we cannot handle must not flood the log.
            if self.failures <= LOGGED_FAILURES or self.failures % 1000 == 0:
                log.error(
                    "switch %s: could not apply AMI event %s (%d so far); the link continues",
                    self.switch,
                    message.name,
                    self.failures,
                    exc_info=self.failures <= LOGGED_FAILURES,
                )

    @property
    def live_channels(self) -> int:
        return len(self.calls.by_uid)

    # -- for the live adapter --------------------------------------------------------------
    def expect_call(self, uniqueid: str, call_id: str, called: str | None = None) -> None:
        """Channel ``uniqueid`` (an Originate's ChannelId) will start call ``call_id``."""
        self.calls.expect(uniqueid, call_id, called)

    def call_id_for(self, uniqueid: str) -> str:
        """The call id for a channel (known or not yet seen), e.g. for a FastAGI request."""
        return self.calls.call_id_for(uniqueid)

    def find_call(self, call_id: str) -> Call | None:
        return self.calls.calls.get(call_id)
