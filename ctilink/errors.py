"""Error kinds shared by every codec and the daemon.

Following h11: a ``LocalProtocolError`` means ctilink misused a protocol (a bug or a bad
request from a client that we refused to put on the wire); a ``RemoteProtocolError`` means
the peer sent bytes that break the protocol. Codecs raise the remote kind only from
``receive_data``/``next_event`` and the local kind only from ``send``/``serialize``.
"""

from __future__ import annotations


class CtilinkError(Exception):
    """Base of ctilink's own errors."""


class ProtocolError(CtilinkError):
    """A protocol was broken; the message says how and where."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol cannot carry."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class ConfigError(CtilinkError):
    """A configuration file is unreadable or has a bad value (exit status 2)."""


class TraceError(CtilinkError):
    """A trace file cannot be read; the message names the file and the position."""


class CommandError(CtilinkError):
    """A call-control command failed; ``code`` is a stable machine-readable reason
    (``unsupported``, ``not_allowed``, ``invalid``, ``not_found``, ``link_down``,
    ``timeout``, ``error`` when the switch refused it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
