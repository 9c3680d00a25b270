"""The interface every switch adapter offers, whatever protocol it speaks.

Nothing above the adapters knows which kind of switch it talks to: the command API calls
these methods; the adapter turns them into its protocol's requests and its switch's
answers into model events. Each method returns a Deferred that fires with the result or
fails with a ``CommandError`` saying clearly why (``code``: ``unsupported``, ``not_allowed``,
``invalid``, ``not_found``, ``link_down``, ``timeout``, ``error``). The base class refuses
everything with ``unsupported``, so an adapter states what it supports by overriding, and a
client always gets an answer. Names follow the CSTA services (ECMA-269).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from ctilink.errors import CommandError

__all__ = ["AGENT_STATES", "CommandError", "SwitchAdapter", "Tap"]

# What set_agent_state accepts (CSTA agent states a client may ask for).
AGENT_STATES = ("logged_on", "logged_off", "ready", "not_ready", "working_after_call")


# A tap sees every whole protocol message crossing the link: (time, "rx"/"tx", exact bytes).
Tap = Callable[[float, str, bytes], None]


class SwitchAdapter:
    """Base of all adapters: a named link to one switch."""

    kind = "abstract"

    def __init__(self, name: str, tenant: str = "default") -> None:
        self.name = name
        self.tenant = tenant
        # ``ctilink record`` adds taps; adapters that can be recorded feed them.
        self.taps: list[Tap] = []

    def first_bytes(self) -> bytes:
        """What the switch sent first on the current connection (the AMI banner), so a
        recording that starts mid-connection still replays; empty if not known."""
        return b""

    def start(self) -> None:
        """Begin talking to the switch (connect, or start replaying)."""

    def stop(self) -> Deferred[None]:
        """Stop cleanly; the Deferred fires when the link is closed."""
        return succeed(None)

    def _unsupported(self, command: str) -> Deferred[Any]:
        return fail(
            CommandError(
                "unsupported",
                f"switch {self.name!r} ({self.kind}) does not support {command}",
            )
        )

    # -- call control ----------------------------------------------------------------------
    def make_call(
        self, calling_device: str, called_number: str, data: Mapping[str, str] | None = None
    ) -> Deferred[str]:
        """Ring ``calling_device``, then call ``called_number`` from it; fires with the
        ctilink call id the call's events will carry (known before the first event)."""
        return self._unsupported("make_call")

    def answer_call(self, call_id: str, device: str) -> Deferred[None]:
        return self._unsupported("answer_call")

    def clear_connection(self, call_id: str, device: str) -> Deferred[None]:
        return self._unsupported("clear_connection")

    def clear_call(self, call_id: str) -> Deferred[None]:
        return self._unsupported("clear_call")

    def hold_call(self, call_id: str, device: str) -> Deferred[None]:
        return self._unsupported("hold_call")

    def retrieve_call(self, call_id: str, device: str) -> Deferred[None]:
        return self._unsupported("retrieve_call")

    def deflect_call(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        """Send a call at ``device`` (alerting or connected) elsewhere (redirect)."""
        return self._unsupported("deflect_call")

    def single_step_transfer(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        """Blind transfer: ``device`` hands its party to ``destination`` and leaves."""
        return self._unsupported("single_step_transfer")

    def consultation_call(self, call_id: str, device: str, destination: str) -> Deferred[None]:
        return self._unsupported("consultation_call")

    def transfer_call(self, held_call_id: str, active_call_id: str, device: str) -> Deferred[None]:
        return self._unsupported("transfer_call")

    def conference_call(
        self, held_call_id: str, active_call_id: str, device: str
    ) -> Deferred[None]:
        return self._unsupported("conference_call")

    def alternate_call(self, held_call_id: str, active_call_id: str, device: str) -> Deferred[None]:
        """Put the active call on hold and retrieve the held one (CSTA AlternateCall)."""
        return self._unsupported("alternate_call")

    def reconnect_call(self, held_call_id: str, active_call_id: str, device: str) -> Deferred[None]:
        """Clear the active call and retrieve the held one (CSTA ReconnectCall)."""
        return self._unsupported("reconnect_call")

    def set_agent_state(
        self, agent: str, state: str, queue: str | None = None, reason: str | None = None
    ) -> Deferred[None]:
        """``state`` is one of ``AGENT_STATES``; ``queue`` None means every queue."""
        return self._unsupported("set_agent_state")
