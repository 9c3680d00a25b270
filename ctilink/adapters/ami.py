"""The Asterisk adapter's inbound path: AMI bytes → codec → normalizer → model events.

``AmiInbound`` is what a live AMI connection and a replayed trace both feed, so a trace
replays through exactly the code a live link runs. It owns the codec for one connection
(``reset`` on every new connection) and the normalizer for the switch (which outlives
connections). Each message is first offered to ``claim`` (the live link's pending actions:
responses and the items of lists it asked for); what is not claimed goes to the
normalizer if it is an event, and is dropped otherwise (a replay's responses to the
capturing client's own actions).
"""

from __future__ import annotations

from collections.abc import Callable

from ctilink.adapters.base import Tap
from ctilink.ami.codec import AmiBanner, AmiCodec
from ctilink.ami.message import AmiMessage
from ctilink.ami.normalizer import AmiNormalizer


class AmiInbound:
    def __init__(
        self,
        normalizer: AmiNormalizer,
        claim: Callable[[AmiMessage], bool] | None = None,
    ) -> None:
        self.normalizer = normalizer
        self._claim = claim
        self.codec = AmiCodec()
        self.banner: AmiBanner | None = None
        self.banner_line = b""
        self.taps: list[Tap] = []

    def reset(self, mid_stream: bool = False) -> None:
        """A new connection: fresh framing state, expect a banner again (unless the stream
        is joined mid-connection, as a capture that began late)."""
        self.codec = AmiCodec(mid_stream=mid_stream)
        self.banner = None
        self.banner_line = b""

    def data_received(self, data: bytes, at: float) -> None:
        """Feed bytes received at ``at``; raises RemoteProtocolError on a broken stream."""
        self.codec.receive_data(data)
        for item in self.codec.events():
            for tap in self.taps:
                tap(at, "rx", self.codec.last_frame)
            if isinstance(item, AmiBanner):
                self.banner = item
                self.banner_line = self.codec.last_frame
            elif self._claim is not None and self._claim(item):
                continue
            elif item.kind == "event":
                self.normalizer.handle(item, at)
