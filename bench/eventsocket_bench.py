"""Event socket fan-out: switch event → client receive latency and messages/s delivered.

    python bench/eventsocket_bench.py [--rate 2000] [--clients 100] [--seconds 10]
                                      [--processes N] [--limited 0] [--no-pinning]

The server is this process: a ``Hub`` (state tracker included) and the ``EventSocket``
with token authentication on, behind the twisted.web site of ``make_site``, on Twisted's
asyncio reactor as in the daemon. A timer publishes model events (an inbound call story:
delivered, queued, delivered to an agent, established, connection cleared, call cleared;
~250-byte messages with call data) at ``--rate`` events/s, evenly spread: what an adapter
hands the hub once it has decoded the switch's bytes (the AMI path before that is
measured by replay_bench).

The clients run in ``--processes`` subprocesses, so they share neither the server's event
loop nor its GIL. Each opens its share of ``--clients`` WebSocket connections over
loopback TCP (a minimal RFC 6455 client on asyncio: handshake with the token, server
frames parsed, pings answered) and stamps every read with CLOCK_MONOTONIC as the bytes
reach it. ``--limited K`` gives K of the clients a token limited to one agent (filtered
views). With two CPUs or more the server is pinned to the first and the clients to the
others (``--no-pinning``: let the OS place them); the clients' CPU is printed, since on
a small machine they compete with the server.

Printed: latency p50/p99/max from ``hub.publish`` to the client reading the message, over
every message of every client after a 1 s warm-up; messages/s delivered (all clients)
while publishing; the server's CPU while publishing and the clients' CPU in all.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

END = b'"detail":"bench end"'


# -- the client side (subprocesses) ----------------------------------------------------
class Client(asyncio.Protocol):
    def __init__(self, port: int, token: str, done: asyncio.Future[None]) -> None:
        self.port, self.token, self.done = port, token, done
        self.buffer = bytearray()
        self.open = False
        # One record per read: the seq of its first message, how many messages it
        # completed, and when it arrived. A client that sees every event gets consecutive
        # seqs, so the parent knows each message's seq; a filtered one records one
        # message per record.
        self.seqs = array("q")
        self.counts = array("q")
        self.times = array("q")
        self.every, self.token = token.startswith("all:"), token.split(":", 1)[1]
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /events?access_token={self.token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self.buffer
        buffer += data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"handshake refused: {bytes(buffer[:200])!r}")
            del buffer[: end + 4]
            self.open = True
        pos, size, first_seen, count = 0, len(buffer), 0, 0
        while size - pos >= 2:
            opcode, length = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                length, start = int.from_bytes(buffer[pos + 2 : pos + 4]), pos + 4
            elif length == 127:
                length, start = int.from_bytes(buffer[pos + 2 : pos + 10]), pos + 10
            if size < start + length:
                break
            if opcode == 1 and buffer[start + 2 : start + 5] == b"seq":
                if not count or not self.every:
                    first = int(buffer[start + 7 : buffer.index(b",", start + 7)])
                    if count:
                        self._record(first_seen, count, now)
                    first_seen, count = first, 0
                count += 1
            elif opcode == 9:  # ping: answer with a masked pong
                self._send(0xA, bytes(buffer[start : start + length]))
            pos = start + length
        if count:
            self._record(first_seen, count, now)
            if buffer.find(END, 0, pos) >= 0:
                self.done.set_result(None)
        del buffer[:pos]

    def _record(self, seq: int, count: int, now: int) -> None:
        self.seqs.append(seq)
        self.counts.append(count)
        self.times.append(now)

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)


async def run_clients(port: int, tokens: list[str], out: Path) -> None:
    loop = asyncio.get_running_loop()
    clients = []
    for token in tokens:
        done: asyncio.Future[None] = loop.create_future()
        _, client = await loop.create_connection(
            lambda t=token, d=done: Client(port, t, d), "127.0.0.1", port
        )
        clients.append(client)
    print("connected", flush=True)
    await asyncio.gather(*(c.done for c in clients))
    with out.open("wb") as f:
        for client in clients:
            array("q", [len(client.seqs)]).tofile(f)
            client.seqs.tofile(f)
            client.counts.tofile(f)
            client.times.tofile(f)


def client_main(argv: list[str]) -> None:
    port, cpus, out, tokens = int(argv[0]), argv[1], Path(argv[2]), argv[3:]
    if cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})
    asyncio.run(run_clients(port, tokens, out))


# -- the server side -------------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def server_main(args: argparse.Namespace) -> None:
    from ctilink.reactor import install_asyncio_reactor

    reactor = install_asyncio_reactor()
    from twisted.internet.task import LoopingCall

    from ctilink.hub import Hub
    from ctilink.model import events as ev
    from ctilink.model.states import AgentState
    from ctilink.model.states import LocalConnectionState as LCS
    from ctilink.screenpop.auth import TokenStore, new_token
    from ctilink.screenpop.eventsocket import EventSocket
    from ctilink.screenpop.web import make_site

    hub = Hub()
    issued = [new_token("bench", "acme")] + [
        new_token(f"agent-{n}", "acme", agents=[f"{6000 + n % 20}"]) for n in range(args.limited)
    ]
    socket = EventSocket(
        hub, reactor, tokens=TokenStore(t for _, t in issued), tenants={"pbx": "acme"}
    )
    port = reactor.listenTCP(0, make_site(socket), backlog=512, interface="127.0.0.1")
    secrets = [f"all:{issued[0][0]}"] * (args.clients - args.limited)
    secrets += [f"one:{secret}" for secret, _ in issued[1:]]
    cores = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpus = "", ""
    if len(cores) >= 2 and not args.no_pinning:  # the server alone on one core
        server_cpu, client_cpus = str(cores[0]), ",".join(map(str, cores[1:]))
        os.sched_setaffinity(0, {cores[0]})
    if args.processes is None:  # one client process per CPU the clients have
        args.processes = max(1, len(cores) - 1 if client_cpus else len(cores))

    workdir = Path(tempfile.mkdtemp(prefix="ctilink-bench-"))
    children = []
    for index in range(args.processes):
        share = secrets[index :: args.processes]
        out = workdir / f"client-{index}.bin"
        command = [sys.executable, __file__, "--client", str(port.getHost().port), client_cpus]
        command.append(str(out))
        children.append((subprocess.Popen([*command, *share], stdout=subprocess.PIPE), out))

    sent = array("q", [0])  # sent[seq]: when seq was published (CLOCK_MONOTONIC, ns)
    state = {"count": 0, "t0": 0.0, "t1": 0.0, "cpu0": 0.0, "cpu1": 0.0}
    total = int(args.rate * args.seconds)
    data = {"CUSTOMER_ACCOUNT": "ACME-001", "IVR_CHOICE": "billing", "LANG": "en"}

    def story(n: int) -> ev.Event:
        """Event ``n``: six events a call (an inbound call answered by one of 20 agents)."""
        agent, step = f"{6000 + (n // 6) % 20}", n % 6
        at_queue = {"queue": "support", "agent": agent}
        cls, device, state, extra = (
            (ev.Delivered, "800", LCS.ALERTING, {}),
            (ev.Queued, "support", LCS.QUEUED,
             {"queue": "support", "position": 1, "last_redirection_device": "800"}),
            (ev.Delivered, agent, LCS.ALERTING,
             {**at_queue, "last_redirection_device": "support"}),
            (ev.Established, agent, LCS.CONNECTED, at_queue),
            (ev.ConnectionCleared, agent, LCS.NULL, at_queue),
            (ev.CallCleared, None, None, {**at_queue, "cause": "normal_clearing"}),
        )[step]  # fmt: skip
        return cls(  # type: ignore[no-any-return]
            switch="pbx", time=time.time(), call_id=f"call-{n // 6}", device=device,
            connection_state=state, calling_number="5551234567", called_number="800",
            data=data, **extra,
        )  # fmt: skip

    def tick() -> None:
        due = min(total, int((time.monotonic() - state["t0"]) * args.rate))
        while state["count"] < due:
            event = story(state["count"])
            sent.append(time.monotonic_ns())
            hub.publish(event)
            state["count"] += 1
        if state["count"] >= total:
            publisher.stop()
            state["t1"] = time.monotonic()
            state["cpu1"] = time.process_time()
            reactor.callLater(1.0, finish)

    def finish() -> None:
        sent.append(time.monotonic_ns())
        hub.publish(ev.LinkResynced(switch="pbx", time=time.time(), detail="bench end"))
        reactor.callLater(0.2, wait_children)

    def wait_children() -> None:
        if any(child.poll() is None for child, _ in children):
            reactor.callLater(0.1, wait_children)
        else:
            reactor.stop()

    publisher = LoopingCall(tick)

    def start() -> None:
        if len(socket.clients) < args.clients:
            reactor.callLater(0.05, start)
            return
        sent.append(time.monotonic_ns())  # seq 1, not measured; events are seq 2..total+1
        hub.publish(ev.AgentReady(switch="pbx", time=time.time(), agent="6000",
                                  state=AgentState.READY))  # fmt: skip
        state["t0"] = time.monotonic()
        state["cpu0"] = time.process_time()
        publisher.start(0.001)

    reactor.callWhenRunning(start)
    reactor.run()

    latencies: list[float] = []
    delivered = 0
    first, last = 2, total + 1
    warm = first + int(args.rate)  # the first second is warm-up
    for child, out in children:
        child.wait()
        with out.open("rb") as f:
            raw = array("q")
            raw.frombytes(f.read())
        pos = 0
        while pos < len(raw):
            records = raw[pos]
            seqs = raw[pos + 1 : pos + 1 + records]
            counts = raw[pos + 1 + records : pos + 1 + 2 * records]
            times = raw[pos + 1 + 2 * records : pos + 1 + 3 * records]
            pos += 1 + 3 * records
            for seq0, count, t in zip(seqs, counts, times, strict=True):
                for seq in range(seq0, seq0 + count):
                    if first <= seq <= last:
                        delivered += 1
                        if seq >= warm:
                            latencies.append((t - sent[seq]) / 1e6)
    shutil.rmtree(workdir, ignore_errors=True)
    children_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = state["t1"] - state["t0"]
    placement = (
        f"server on CPU {server_cpu}, clients on CPU {client_cpus}"
        if server_cpu
        else "server and clients sharing every CPU"
    )
    print(
        f"Event socket: {args.clients} WebSocket clients ({args.limited} with agent-limited "
        f"tokens) in {args.processes} processes, {args.rate:,.0f} events/s for "
        f"{args.seconds:g} s, loopback TCP; {placement}"
    )
    print(
        f"  latency publish -> client : p50 {percentile(latencies, 0.5):6.2f} ms   "
        f"p99 {percentile(latencies, 0.99):6.2f} ms   max {max(latencies, default=0):6.2f} ms"
        f"   ({len(latencies):,} messages after 1 s warm-up)"
    )
    print(
        f"  delivered                 : {delivered / elapsed:12,.0f} messages/s "
        f"({delivered:,} in {elapsed:.2f} s; server counted {socket.events_sent:,})"
    )
    print(
        f"  CPU                       : server {(state['cpu1'] - state['cpu0']) / elapsed:5.0%} "
        f"of a core while publishing; clients {children_cpu.ru_utime + children_cpu.ru_stime:.1f} s"
        f" in all"
    )
    print(f"  slow clients closed       : {socket.slow_clients_closed}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s published")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="client processes (default: one per CPU left to the clients; two processes"
        " on one CPU measure their contention, not the server)",
    )
    parser.add_argument("--limited", type=int, default=0, help="clients with agent tokens")
    parser.add_argument(
        "--no-pinning", action="store_true", help="let the OS place server and clients"
    )
    server_main(parser.parse_args())


if __name__ == "__main__":
    main()
