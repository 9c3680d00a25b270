"""The live Asterisk link against the fake Asterisk (real AMI bytes over loopback TCP).

    python bench/ami_link_bench.py [--channels 1000] [--members 200] [--rounds 5]
                                   [--ping-interval 5] [--ping-timeout 5] [--calls 200]

Prints:
* reconnect → ``link_resynced`` with ``--channels`` channels live on the switch (half of
  them in two-party bridges) and ``--members`` queue members: TCP connect, banner, MD5
  login, CoreShowChannels and QueueStatus lists, reconciliation, events published;
  p50 and max over ``--rounds`` reconnects (the fake drops the link between rounds);
* silent peer → ``link_down`` with the given ping settings (the defaults are the shipped
  configuration's: 5 s + 5 s, so this takes about ten seconds);
* live event throughput: ``--calls`` concurrent copies of the inbound-answered call sent
  by the fake in one burst, AMI messages/s until the last ``call_cleared``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctilink.reactor import install_asyncio_reactor  # noqa: E402

reactor = install_asyncio_reactor()

from twisted.internet.defer import Deferred  # noqa: E402

from bench.replay_bench import multiply  # noqa: E402
from ctilink.adapters.asterisk import AsteriskAdapter  # noqa: E402
from ctilink.config import AsteriskOptions, Secret  # noqa: E402
from ctilink.hub import Hub  # noqa: E402
from ctilink.traces import read_trace  # noqa: E402
from tests.fakeami import FakeAsterisk  # noqa: E402

TRACE = ROOT / "tests/fixtures/pbx-traces/inbound-answered.jsonl"


def options(port: int, ping_interval: float, ping_timeout: float) -> AsteriskOptions:
    return AsteriskOptions(
        host="127.0.0.1", port=port, username="ctilink", secret=Secret("bench-secret"),
        auth="md5", events=("call", "agent", "user", "system", "dialplan"),
        call_data_variables=(), ping_interval=ping_interval, ping_timeout=ping_timeout,
        action_timeout=10.0, connect_timeout=5.0, reconnect_max_delay=1.0,
        originate_contexts=(), device_channel="PJSIP/{device}", fastagi=None,
        wrapup_seconds=0.0,
    )  # fmt: skip


async def wait_for(hub_events: list[Any], kind: str, count: int, timeout: float = 120) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sum(1 for event in hub_events if kind == event.TYPE) < count:
        if loop.time() > deadline:
            raise TimeoutError(f"no {kind} #{count} within {timeout} s")
        await asyncio.sleep(0.001)
    return time.perf_counter()


def populate(fake: FakeAsterisk, channels: int, members: int) -> None:
    for index in range(channels // 2):
        trunk = fake.add_channel(
            f"PJSIP/trunk-{index:08x}",
            caller_num=f"555{index:07d}",
            exten="800",
            uniqueid=f"1795400000.{2 * index}",
        )
        agent = fake.add_channel(
            f"PJSIP/{6000 + index % 1000}-{index:08x}",
            uniqueid=f"1795400000.{2 * index + 1}",
            linkedid=f"1795400000.{2 * index}",
        )
        fake.add_bridge(trunk, agent)
    for index in range(members):
        fake.add_member("support", f"PJSIP/{6000 + index}", name=f"Agent {index}")


async def main(args: argparse.Namespace) -> None:
    fake = FakeAsterisk(reactor, secret="bench-secret")
    fake.listen()
    populate(fake, args.channels, args.members)
    events: list[Any] = []
    hub = Hub()
    hub.subscribe(events.append)
    adapter = AsteriskAdapter(
        "bench",
        options(fake.port, args.ping_interval, args.ping_timeout),
        hub.publish,
        reactor,
        retry_policy=lambda attempt: 0.01,
    )
    resyncs: list[float] = []
    adapter.start()
    for round_ in range(1, args.rounds + 1):
        connections = adapter.connections
        while adapter.connections == connections and round_ > 1:
            await asyncio.sleep(0.0005)
        started = time.perf_counter()
        done = await wait_for(events, "link_resynced", round_)
        resyncs.append(done - started)
        fake.drop()
        await wait_for(events, "link_down", round_)
    await wait_for(events, "link_resynced", args.rounds + 1)

    first = next(i for i, e in enumerate(events) if e.TYPE == "link_resynced")
    calls = sum(1 for e in events[:first] if e.TYPE == "delivered")
    warm = resyncs[1:]
    print(f"resync: {args.channels} channels ({calls} calls), {args.members} queue members")
    print(
        f"  connect -> link_resynced, ctilink knowing nothing (every call announced): "
        f"{resyncs[0] * 1000:.0f} ms"
    )
    print(
        f"  reconnect -> link_resynced, nothing changed meanwhile: p50 "
        f"{statistics.median(warm) * 1000:.0f} ms, max {max(warm) * 1000:.0f} ms "
        f"over {len(warm)} reconnects"
    )

    # Live throughput: many concurrent copies of a real call, sent in one burst.
    trace = multiply(read_trace(TRACE), args.calls)
    stream = b"".join(r.data for s in trace.sessions for r in s.records[1:])  # no banner
    messages = stream.count(b"\r\n\r\n")
    cleared_before = sum(1 for e in events if e.TYPE == "call_cleared")
    t0 = time.perf_counter()
    await Deferred.fromCoroutine(_emit(fake, stream)).asFuture(asyncio.get_running_loop())
    t1 = await wait_for(events, "call_cleared", cleared_before + args.calls)
    print(
        f"live stream: {messages} AMI messages ({args.calls} concurrent calls) in "
        f"{(t1 - t0) * 1000:.0f} ms = {messages / (t1 - t0):,.0f} AMI messages/s"
    )

    # Silent peer.
    fake.go_silent()
    silent_at = time.perf_counter()
    downs = sum(1 for e in events if e.TYPE == "link_down")
    down_at = await wait_for(events, "link_down", downs + 1, timeout=60)
    print(
        f"silent peer -> link_down: {down_at - silent_at:.2f} s "
        f"(ping_interval {args.ping_interval:g} s + ping_timeout {args.ping_timeout:g} s)"
    )
    await adapter.stop().asFuture(asyncio.get_running_loop())
    await fake.stop().asFuture(asyncio.get_running_loop())


async def _emit(fake: FakeAsterisk, stream: bytes) -> None:
    await fake.emit_raw(stream)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--ping-interval", type=float, default=5.0)
    parser.add_argument("--ping-timeout", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    outcome: list[BaseException] = []

    def done(result: Any) -> None:
        if isinstance(result, BaseException):
            outcome.append(result)
        reactor.stop()

    def go() -> None:
        d = Deferred.fromFuture(asyncio.ensure_future(main(args)))
        d.addErrback(lambda failure: failure.value).addBoth(done)

    reactor.callWhenRunning(go)
    reactor.run()
    if outcome:
        raise outcome[0]


if __name__ == "__main__":
    run()
