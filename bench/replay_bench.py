"""Replay throughput: the whole inbound path against the AMI codec alone, in one run.

    python bench/replay_bench.py [--trace PATH] [--calls N] [--rounds R]

The trace's calls are multiplied: N copies of each session are interleaved record by record,
each copy with its own Asterisk ids (Uniqueid, Linkedid, Local channel numbers), so N
calls are alive at once, as on a busy switch. Two measurements on exactly the same bytes:

* codec: ``AmiCodec`` framing and parsing only (bytes → AmiMessage);
* replay: ``ReplayAdapter.run_to_end`` (codec → normalizer → hub → state tracker), with
  one consumer serializing every event to JSON as the event socket does.

Printed: AMI messages/s and MB/s for the codec, AMI messages/s and model events/s for the
full path, the ratio of the two, latency per received chunk (p50/p99, full path), and the
peak Python memory of the full path (tracemalloc, measured in a separate round).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctilink.adapters.replay import ReplayAdapter
from ctilink.ami.codec import AmiCodec
from ctilink.hub import Hub
from ctilink.model.wire import event_json
from ctilink.traces import Trace, TraceRecord, TraceSession, read_trace

DEFAULT = Path(__file__).resolve().parents[1] / "tests/fixtures/pbx-traces/inbound-answered.jsonl"
_IDS = re.compile(rb"(\d{10})\.(\d+)")
_LOCAL = re.compile(rb"-([0-9a-f]{8});")


def multiply(trace: Trace, copies: int) -> Trace:
    """``copies`` interleaved copies of each session, each with distinct Asterisk ids."""
    sessions = []
    for session in trace.sessions:
        records: list[TraceRecord] = []
        first = True
        for record in session.records:
            if record.direction != "rx":
                continue
            if first:  # the banner is sent once per connection
                records.append(record)
                first = False
                continue
            for copy in range(copies):
                data = _IDS.sub(
                    lambda m, c=copy: m[1] + b"." + str(int(m[2]) + 100 * c).encode(), record.data
                )
                data = _LOCAL.sub(lambda m, c=copy: b"-%08x;" % (int(m[1], 16) + 16 * c), data)
                records.append(TraceRecord(record.t, "rx", data, record.position))
        sessions.append(TraceSession(session.index, tuple(records), session.start_time, None))
    return Trace(trace.path, tuple(sessions))


def bench_codec(trace: Trace) -> tuple[float, int, int]:
    chunks = [r.data for s in trace.sessions for r in s.records]
    started = time.perf_counter()
    codec = AmiCodec()
    for chunk in chunks:
        codec.receive_data(chunk)
        for _ in codec.events():
            pass
    return time.perf_counter() - started, codec.messages_received, sum(map(len, chunks))


def bench_replay(trace: Trace, *, latencies: list[float] | None = None) -> tuple[float, int, int]:
    hub = Hub()
    out: list[str] = []
    hub.subscribe(lambda event: out.append(event_json(event)))
    adapter = ReplayAdapter("bench", [trace], hub.publish, start_time=0.0)
    if latencies is not None:
        feed = adapter.inbound.data_received

        def timed(data: bytes, at: float) -> None:
            t0 = time.perf_counter()
            feed(data, at)
            latencies.append(time.perf_counter() - t0)

        adapter.inbound.data_received = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    adapter.run_to_end()
    elapsed = time.perf_counter() - started
    return elapsed, adapter.inbound.codec.messages_received, len(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT)
    parser.add_argument("--calls", type=int, default=200, help="concurrent copies of each call")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    trace = multiply(read_trace(args.trace), args.calls)
    codec_runs = [bench_codec(trace) for _ in range(args.rounds)]
    replay_runs = [bench_replay(trace) for _ in range(args.rounds)]
    latencies: list[float] = []
    bench_replay(trace, latencies=latencies)
    tracemalloc.start()
    bench_replay(trace)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    codec_time = statistics.median(run[0] for run in codec_runs)
    _, messages, size = codec_runs[0]
    replay_time = statistics.median(run[0] for run in replay_runs)
    _, replay_messages, events = replay_runs[0]
    assert replay_messages == messages, (replay_messages, messages)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]

    print(f"trace: {args.trace.name} x {args.calls} concurrent calls, median of {args.rounds}")
    print(f"  AMI messages: {messages}   bytes: {size}   model events: {events}")
    print(
        f"codec alone : {messages / codec_time:12,.0f} AMI messages/s "
        f"{size / codec_time / 1e6:8.1f} MB/s"
    )
    print(
        f"full replay : {messages / replay_time:12,.0f} AMI messages/s "
        f"{events / replay_time:10,.0f} model events/s"
    )
    print(
        f"ratio       : full replay runs at {codec_time / replay_time:.2f}x the codec's rate "
        f"({replay_time / codec_time:.1f}x the time)"
    )
    print(f"latency per received chunk (full path): p50 {p50 * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us")
    print(f"peak Python memory during full replay: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
