"""FastAGI routing throughput and latency over real loopback TCP.

    python bench/fastagi_bench.py [--sessions N] [--concurrency C]

The server is ``FastAgiFactory`` with a ``StaticRouter`` publishing into a real ``Hub``
(state tracker included), on Twisted's asyncio reactor as in the daemon. The clients play
Asterisk on the same reactor: each connects, sends the environment of the real Asterisk 22
capture (``fastagi-route.jsonl``, with its own uniqueid), answers every command with
``200 result=1`` and waits for the server to close. ``C`` sessions run at once, ``N`` in all.

Printed: sessions/s over the whole run; client-side latency p50/p99 from sending the
environment to the first command (the answer) and to the server closing (session done);
the server's own latency (environment complete → last reply) and its fallback count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctilink.reactor import install_asyncio_reactor

reactor = install_asyncio_reactor()

from twisted.internet.protocol import ClientFactory, Protocol  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from ctilink.agi.server import FastAgiFactory  # noqa: E402
from ctilink.hub import Hub  # noqa: E402
from ctilink.routing import RouteDecision, StaticRouter  # noqa: E402
from ctilink.traces import read_trace  # noqa: E402

TRACE = Path(__file__).resolve().parents[1] / "tests/fixtures/pbx-traces/fastagi-route.jsonl"
UNIQUEID = b"1795355841.103"


class FakeAsterisk(Protocol):
    def __init__(self, run: Run, env: bytes) -> None:
        self.run, self.env = run, env
        self.buffer = b""
        self.sent = 0.0
        self.answered: float | None = None

    def connectionMade(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.env)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\n", 1)
            if self.answered is None:
                self.answered = time.perf_counter()
            self.transport.write(b"200 result=1\n")  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.run.done(self)


class Run(ClientFactory):
    def __init__(self, port: int, env: bytes, sessions: int, concurrency: int) -> None:
        self.port, self.env, self.total, self.concurrency = port, env, sessions, concurrency
        self.started = self.finished = 0
        self.answer: list[float] = []
        self.complete: list[float] = []
        self.failed = 0
        self.t0 = self.t1 = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        for _ in range(min(self.concurrency, self.total)):
            self.next()

    def next(self) -> None:
        self.started += 1
        reactor.connectTCP("127.0.0.1", self.port, self)

    def buildProtocol(self, addr: object) -> FakeAsterisk:
        uniqueid = b"1795355841.%d" % (1000 + self.started)
        return FakeAsterisk(self, self.env.replace(UNIQUEID, uniqueid))

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.failed += 1
        self.finish_one()

    def done(self, client: FakeAsterisk) -> None:
        end = time.perf_counter()
        if client.answered is None:
            self.failed += 1
        else:
            self.answer.append(client.answered - client.sent)
            self.complete.append(end - client.sent)
        self.finish_one()

    def finish_one(self) -> None:
        self.finished += 1
        if self.started < self.total:
            self.next()
        elif self.finished == self.total:
            self.t1 = time.perf_counter()
            reactor.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", "-n", type=int, default=2000)
    parser.add_argument("--concurrency", "-c", type=int, default=50)
    args = parser.parse_args()

    env = read_trace(TRACE).sessions[0].records[0].data
    hub = Hub()
    factory = FastAgiFactory(
        "bench",
        StaticRouter(default_queue="sales", default_priority=10),
        hub.publish,
        lambda uniqueid, channel: f"call-{uniqueid}",
        reactor,
        fallback=RouteDecision("support", None, 0, "fallback"),
    )
    listening = reactor.listenTCP(
        0, factory, backlog=max(50, args.concurrency * 2), interface="127.0.0.1"
    )
    run = Run(listening.getHost().port, env, args.sessions, args.concurrency)
    reactor.callWhenRunning(run.start)
    reactor.run()

    elapsed = run.t1 - run.t0
    ms = 1e3
    server = list(factory.latencies)
    print(f"FastAGI: {args.sessions} sessions, {args.concurrency} concurrent, loopback TCP")
    print(f"  throughput      : {args.sessions / elapsed:10,.0f} sessions/s ({elapsed:.2f} s)")
    print(
        f"  env -> answer   : p50 {percentile(run.answer, 0.5) * ms:6.2f} ms"
        f"   p99 {percentile(run.answer, 0.99) * ms:6.2f} ms   (client side, first command)"
    )
    print(
        f"  env -> closed   : p50 {percentile(run.complete, 0.5) * ms:6.2f} ms"
        f"   p99 {percentile(run.complete, 0.99) * ms:6.2f} ms   (client side, all commands)"
    )
    print(
        f"  server latency  : p50 {percentile(server, 0.5) * ms:6.2f} ms"
        f"   p99 {percentile(server, 0.99) * ms:6.2f} ms   (environment -> last reply)"
    )
    print(
        f"  answered {factory.answered}, failed {run.failed}, fallbacks {factory.fallbacks},"
        f" events published {hub.last_seq}"
    )


if __name__ == "__main__":
    main()
