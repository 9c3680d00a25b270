"""The Asterisk adapter's inbound path: AMI bytes → codec → normalizer → model events.

``AmiInbound`` is what a live AMI connection and a replayed trace both feed, so a trace
replays through exactly the code a live link runs. It owns the codec for one connection
(``reset`` on every new connection) and the normalizer for the switch (which outlives
connections). Events go to the normalizer; responses to the ``on_response`` callback
(action correlation for call control).
"""

from __future__ import annotations

from collections.abc import Callable

from ctilink.ami.codec import AmiBanner, AmiCodec
from ctilink.ami.message import AmiMessage
from ctilink.ami.normalizer import AmiNormalizer


class AmiInbound:
    def __init__(
        self,
        normalizer: AmiNormalizer,
        on_response: Callable[[AmiMessage], None] | None = None,
    ) -> None:
        self.normalizer = normalizer
        self._on_response = on_response
        self.codec = AmiCodec()
        self.banner: AmiBanner | None = None

    def reset(self) -> None:
        """A new connection: fresh framing state, expect a banner again."""
        self.codec = AmiCodec()
        self.banner = None

    def data_received(self, data: bytes, at: float) -> None:
        """Feed bytes received at ``at``; raises RemoteProtocolError on a broken stream."""
        self.codec.receive_data(data)
        for item in self.codec.events():
            if isinstance(item, AmiBanner):
                self.banner = item
            elif item.kind == "event":
                self.normalizer.handle(item, at)
            elif item.kind == "response" and self._on_response is not None:
                self._on_response(item)
