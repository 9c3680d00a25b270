"""The embedded demo: real Asterisk 22 traces (copied unchanged from the shared captures)
replayed in a loop as the switch. ``TRACES`` lists them in the order they play."""

from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).parent / "traces"

TRACES: tuple[Path, ...] = tuple(
    _DIR / f"{name}.jsonl"
    for name in (
        "agent-login",
        "inbound-answered",
        "click-to-dial",
        "inbound-abandoned",
        "routed-fastagi",
    )
)
