"""Building a switch adapter from its ``[[switch]]`` table: one factory per kind.

``build_adapter`` is what the daemon calls for each configured switch. A factory gets the
switch's configuration, the hub (its ``publish`` is where model events go), the reactor,
and ``routes``: the daemon's router in force and default route (``ctilink.routing.Routes``),
for links that answer the switch's route requests. Building reads what must be read
before anything listens (a trace that cannot be read fails here, not later).

A replay plays AMI or CSTA traces: ``resolve_replay`` says which (``protocol = "auto"``:
CSTA when every trace is a CSTA hex JSON Lines trace) and the switch's port inside
captures (the protocol's usual one when none is given); ``ctilink replay`` resolves its
``--protocol`` and ``--port`` the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ctilink.adapters.base import SwitchAdapter
from ctilink.adapters.csta_replay import CSTA_PORT, CstaReplayAdapter, load_csta_replay
from ctilink.adapters.csta_trace import is_hex_jsonl
from ctilink.adapters.replay import ReplayAdapter, load_replay
from ctilink.config import SwitchConfig
from ctilink.hub import Hub
from ctilink.model import events as ev
from ctilink.routing import Routes

AdapterFactory = Callable[[SwitchConfig, Hub, Any, Routes], SwitchAdapter]

AMI_PORT = 5038


def resolve_replay(
    protocol: str, traces: Sequence[str | os.PathLike[str]], port: int | None = None
) -> tuple[str, int]:
    """The protocol (``"ami"`` or ``"csta"``) and capture port of a replay.

    ``protocol`` is ``"ami"``, ``"csta"`` or ``"auto"``: CSTA when there are traces and
    every one is CSTA hex JSON Lines (a CSTA capture needs ``"csta"`` said), else AMI.
    ``port`` None is the protocol's usual port: 5038 (AMI), 2555 (CSTA).
    """
    if protocol == "auto":
        csta = bool(traces) and all(is_hex_jsonl(path) for path in traces)
        protocol = "csta" if csta else "ami"
    if port is None:
        port = CSTA_PORT if protocol == "csta" else AMI_PORT
    return protocol, port


def replay_adapter(
    name: str,
    traces: Sequence[str | os.PathLike[str]],
    publish: Callable[[ev.Event], object],
    *,
    protocol: str = "auto",
    port: int | None = None,
    **options: Any,
) -> ReplayAdapter:
    """A replay of ``traces`` as switch ``name``: AMI or CSTA (``resolve_replay``), the
    traces read and checked now. ``options`` go to the adapter (``clock``, ``speed``,
    ``loop``, ``start_time``, ``tenant``)."""
    protocol, port = resolve_replay(protocol, traces, port)
    if protocol == "csta":
        return CstaReplayAdapter(name, load_csta_replay(traces, port=port), publish, **options)
    return ReplayAdapter(name, load_replay(traces, port=port), publish, **options)


def _replay_adapter(switch: SwitchConfig, hub: Hub, reactor: Any, routes: Routes) -> SwitchAdapter:
    options = switch.replay
    assert options is not None
    return replay_adapter(
        switch.name,
        options.traces,
        hub.publish,
        protocol=options.protocol,
        port=options.port,
        clock=reactor,
        speed=options.speed,
        loop=options.loop,
        tenant=switch.tenant,
    )


def _asterisk_adapter(
    switch: SwitchConfig, hub: Hub, reactor: Any, routes: Routes
) -> SwitchAdapter:
    from ctilink.adapters.asterisk import AsteriskAdapter

    assert switch.asterisk is not None
    return AsteriskAdapter(switch.name, switch.asterisk, hub.publish, reactor, tenant=switch.tenant)


def _csta_adapter(switch: SwitchConfig, hub: Hub, reactor: Any, routes: Routes) -> SwitchAdapter:
    """Kinds "csta" and "csta-xml" (``switch.csta.xml`` says which encoding). Its routeing
    reads the default route from ``routes`` when it answers, so a reload's new one is used."""
    from ctilink.adapters.csta import CstaAdapter
    from ctilink.csta import asn1

    assert switch.csta is not None
    # The ASN.1 modules take about a second to parse and compile: now, before the reactor
    # runs, not on the reactor thread when the link first connects.
    if switch.csta.xml:
        asn1.parsed_modules()
    else:
        asn1.specification()
    return CstaAdapter(
        switch.name,
        switch.csta,
        hub.publish,
        reactor,
        tenant=switch.tenant,
        router=routes,
        fallback=routes.fallback,
    )


ADAPTERS: dict[str, AdapterFactory] = {
    "replay": _replay_adapter,
    "asterisk": _asterisk_adapter,
    "csta": _csta_adapter,
    "csta-xml": _csta_adapter,
}


def build_adapter(switch: SwitchConfig, hub: Hub, reactor: Any, routes: Routes) -> SwitchAdapter:
    """The adapter of ``switch``'s kind (the configuration has checked the kind)."""
    return ADAPTERS[switch.kind](switch, hub, reactor, routes)
