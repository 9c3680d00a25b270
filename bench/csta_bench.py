"""CSTA throughput: event reports through codec + adapter + state tracker, against asn1tools'
bare decoding of the same PDUs, in one run.

    python bench/csta_bench.py [--trace PATH] [--calls N] [--rounds R]

The trace's event reports (``tests/fixtures/csta/inbound-answered.jsonl``: the switch
simulator's inbound ACD call, each event reported once per monitor that covers it, as
switches do) are multiplied: N copies interleaved report by report, each copy with its own
callIDs, so N calls are alive at once. Two measurements on exactly the same PDUs:

* asn1tools bare: the compiled ROS type's decode and then the compiled
  ``CSTAEventReportArgument``'s decode of its argument (the two stages every CSTA decoder
  on asn1tools needs), nothing else;
* full path: the framed bytes into a live ``CstaAdapter`` (``received``: its frame tap,
  ``CstaConnection`` framing, ROSE and invokeID handling, the normalizer with its duplicate
  suppression) → hub → state tracker, with one consumer serializing every model event to
  JSON as the event socket does.

Printed: event reports/s for both and their ratio, model events/s, latency per PDU (p50/p99,
full path), and the peak Python memory of the full path (tracemalloc, a separate round).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet.task import Clock

from ctilink.adapters.csta import CstaAdapter, CstaSettings
from ctilink.adapters.csta_trace import read_csta_trace
from ctilink.csta import CstaMessage, acse, asn1, rose
from ctilink.hub import Hub
from ctilink.model.wire import event_json

DEFAULT = Path(__file__).resolve().parents[1] / "tests/fixtures/csta/inbound-answered.jsonl"


def _rekey(value: Any, ids: dict[bytes, bytes]) -> Any:
    if isinstance(value, bytes):
        return ids.get(value, value)
    if isinstance(value, dict):
        return {key: _rekey(item, ids) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_rekey(item, ids) for item in value)
    if isinstance(value, list):
        return [_rekey(item, ids) for item in value]
    return value


def event_reports(trace_path: Path, copies: int) -> list[bytes]:
    """The trace's event report PDUs, ``copies`` interleaved copies with their own callIDs."""
    reports = []
    for record in read_csta_trace(trace_path, port=0).sessions[0].records:
        pdu = record.data[2:]
        if record.direction == "rx" and rose.is_rose(pdu):
            message = rose.decode(pdu)
            if message.operation == "cSTAEventReport":
                reports.append(message)
    call_ids = {value for m in reports for value in _bytes_in(m.argument["eventSpecificInfo"])} - {
        b""
    }
    out = []
    for index, message in enumerate(reports):
        for copy in range(copies):
            ids = {cid: b"%s-%d" % (cid, copy) for cid in call_ids}
            argument = {**message.argument, "eventSpecificInfo": _rekey(
                message.argument["eventSpecificInfo"], ids)}  # fmt: skip
            out.append(rose.encode(CstaMessage("invoke", 1 + (index * copies + copy) % 32000,
                                               "cSTAEventReport", argument)))  # fmt: skip
    return out


def _bytes_in(value: Any) -> list[bytes]:
    """The callIDs of an event (every ``callID`` component)."""
    found: list[bytes] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "callID" and isinstance(item, bytes):
                found.append(item)
            else:
                found.extend(_bytes_in(item))
    elif isinstance(value, tuple | list):
        for item in value:
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "callID":
                found.append(item[1])
            else:
                found.extend(_bytes_in(item))
    return found


def bench_bare(pdus: list[bytes]) -> float:
    ros = asn1.type_("Remote-Operations-Generic-ROS-PDUs", "ROS")
    report = asn1.type_("CSTA-event-report-definitions", "CSTAEventReportArgument")
    started = time.perf_counter()
    for pdu in pdus:
        _, invoke = ros.decode(pdu)
        report.decode(invoke["argument"])
    return time.perf_counter() - started


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def abortConnection(self) -> None:
        pass


class _Protocol:
    transport = _Transport()

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


def bench_full(pdus: list[bytes], *, latencies: list[float] | None = None) -> tuple[float, int]:
    hub = Hub()
    out: list[str] = []
    hub.subscribe(lambda event: out.append(event_json(event)))
    settings = CstaSettings(host="bench", port=1, heartbeat_interval=3600, heartbeat_timeout=7200)
    adapter = CstaAdapter("bench", settings, hub.publish, Clock())
    protocol: Any = _Protocol()
    adapter.connected(protocol)
    adapter.received(protocol, _framed(acse.encode(acse.AssociateResponse())))
    frames = [_framed(pdu) for pdu in pdus]
    started = time.perf_counter()
    if latencies is None:
        for frame in frames:
            adapter.received(protocol, frame)
    else:
        for frame in frames:
            t0 = time.perf_counter()
            adapter.received(protocol, frame)
            latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    assert adapter.normalizer.failures == 0 and adapter.up
    return elapsed, sum(1 for line in out if '"call_id"' in line or '"agent"' in line)


def _framed(pdu: bytes) -> bytes:
    return len(pdu).to_bytes(2, "big") + pdu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT)
    parser.add_argument("--calls", type=int, default=200, help="concurrent copies of each call")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    pdus = event_reports(args.trace, args.calls)
    size = sum(map(len, pdus))
    bare_runs = [bench_bare(pdus) for _ in range(args.rounds)]
    full_runs = [bench_full(pdus) for _ in range(args.rounds)]
    latencies: list[float] = []
    bench_full(pdus, latencies=latencies)
    tracemalloc.start()
    bench_full(pdus)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    bare = statistics.median(bare_runs)
    full = statistics.median(run[0] for run in full_runs)
    events = full_runs[0][1]
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]

    print(f"trace: {args.trace.name} x {args.calls} concurrent calls, median of {args.rounds}")
    print(f"  event report PDUs: {len(pdus)}   bytes: {size}   model events: {events}")
    print(f"asn1tools bare : {len(pdus) / bare:12,.0f} event reports/s")
    print(
        f"full path      : {len(pdus) / full:12,.0f} event reports/s "
        f"{events / full:10,.0f} model events/s"
    )
    print(
        f"ratio          : the full path runs at {bare / full:.2f}x asn1tools' bare decode "
        f"rate ({full / bare:.2f}x the time)"
    )
    print(f"latency per PDU (full path): p50 {p50 * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us")
    print(f"peak Python memory during the full path: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
