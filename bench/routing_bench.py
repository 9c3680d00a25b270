"""Routing decisions against 1,000,000 customers in PostgreSQL; import; fallback times.

    python bench/routing_bench.py [--customers N] [--rate R] [--seconds S] [--keep]
    python bench/routing_bench.py --reuse DATABASE     (decisions and fallback only)

Needs the PostgreSQL server at 127.0.0.1:5432 (user postgres, trust, maintenance database
``test``); a fresh database is created (and dropped at the end unless ``--keep``).

1. **Import**: writes a CSV of N customers (10% with two phones, 10% with two accounts,
   1% VIP), imports it with ``ctilink.routing.importer.import_customers`` in a child
   process, and prints the time, rows/s and that process's peak RSS (against the RSS of
   the same process before importing). Then seeds the demo's agents and queues and 200,000
   past interactions (so last-agent lookups have history to search).
2. **Decisions**: the routing runtime (``start_routing``: the routing service, its audit
   writer, the interaction recorder, the screen popper) on Twisted's asyncio reactor as in
   the daemon, with a state tracker holding 40 ready agents. Route requests for random
   callers (80% known numbers, 10% known accounts typed into the IVR, 10% unknown numbers;
   over a million customers the cache hardly ever helps) are fired at R per second for S
   seconds, then one after the other as fast as possible, then 10 at a time. Latency is
   from ``route()`` to the decision (the Deferred firing), audit included. For scale, the
   "floor" is the same caller lookup as one bare psycopg statement at the same pace on the
   same loop: the machine's wake-up and round-trip cost before any ctilink code.
3. **Fallback**: the same service with its database stopped (a port refusing connections)
   and hung (a port accepting connections and never answering): the first request (which
   finds the outage) and the following ones (answered without waiting), against the 300 ms
   routing budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctilink.reactor import install_asyncio_reactor

reactor = install_asyncio_reactor()

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from ctilink import db  # noqa: E402
from ctilink.config import Config, default_config  # noqa: E402
from ctilink.hub import Hub  # noqa: E402
from ctilink.model.records import AgentRecord, Membership  # noqa: E402
from ctilink.model.states import AgentState  # noqa: E402
from ctilink.routing.admin import seed_demo  # noqa: E402
from ctilink.routing.runtime import RoutingRuntime, start_routing  # noqa: E402
from ctilink.routing.static import RouteQuery  # noqa: E402
from ctilink.state import StateTracker  # noqa: E402

MAINTENANCE = "host=127.0.0.1 port=5432 user=postgres dbname=test"
SWITCH = "bench"
BUDGET = 0.3
MS = 1000.0


def phone(i: int) -> str:
    return f"{2010000000 + i}"  # national US numbers: +12010000000 ...


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * MS:6.2f} ms   p99 {percentile(values, 0.99) * MS:6.2f} ms"
        f"   max {max(values) * MS:6.2f} ms   mean {statistics.fmean(values) * MS:6.2f} ms"
    )


# -- 1. the directory ------------------------------------------------------------------------
def write_csv(path: Path, count: int) -> None:
    rng = random.Random(1)
    with open(path, "w", encoding="utf-8") as out:
        out.write("tenant,account,name,tier,language,phones,preferred_agent,notes\n")
        for i in range(count):
            accounts = f"C{i:07d}" + (f";X{i:07d}" if i % 10 == 1 else "")
            phones = phone(i) + (f";+1 (303) 555-{i % 10000:04d}" if i % 10 == 2 else "")
            tier = "VIP" if i % 100 == 7 else rng.choice(("standard", "gold", ""))
            out.write(
                f"default,{accounts},Customer {i},{tier},en,{phones},,"
                f'"Notes for customer {i}, created by the bench"\n'
            )


IMPORTER = """
import json, resource, sys, time
from ctilink.routing.importer import import_customers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
report = import_customers(sys.argv[1], sys.argv[2], batch_size=5000)
print(json.dumps({"seconds": time.monotonic() - started, "imported": report.imported,
    "errors": report.error_count, "rss_before_kib": before,
    "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def import_directory(url: str, count: int, work: Path) -> None:
    path = work / "customers.csv"
    started = time.monotonic()
    write_csv(path, count)
    size = path.stat().st_size / 2**20
    took = time.monotonic() - started
    print(f"  CSV written      : {count:,} rows, {size:,.0f} MiB in {took:.1f} s")
    done = subprocess.run(
        [sys.executable, "-c", IMPORTER, url, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result = json.loads(done.stdout)
    assert result["imported"] == count and result["errors"] == 0, result
    seconds = result["seconds"]
    print(
        f"  import           : {count:,} customers in {seconds:.1f} s"
        f" ({count / seconds:,.0f} rows/s), one transaction"
    )
    print(
        f"  import memory    : peak RSS {result['rss_peak_kib'] / 1024:,.0f} MiB"
        f" (process before importing: {result['rss_before_kib'] / 1024:,.0f} MiB)"
    )
    seed_demo(url)
    with psycopg.connect(url) as conn:
        rng = random.Random(2)
        now = time.time()
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY interactions (call_id, switch, tenant, customer_id, direction, started,"
                " answered, ended, calling_number, queue, agent, outcome, data) FROM STDIN"
            ) as copy,
        ):
            for n in range(200_000):
                customer = rng.randint(1, count)
                started = now - rng.uniform(0, 60) * 86400
                agent = rng.choice(("6001", "6002", "6003", "6004"))
                copy.write_row(
                    (f"past-{n}", SWITCH, "default", customer, "inbound", started, started + 5,
                     started + 200, phone(customer - 1), "support", agent, "answered", "{}")
                )  # fmt: skip
        conn.commit()
    print("  history          : 200,000 past interactions; demo agents and queues")
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum would soon do, done before measuring
    print(f"  vacuum analyze   : {time.monotonic() - started:.1f} s")


# -- 2. decisions ----------------------------------------------------------------------------
def tracker_with_agents() -> StateTracker:
    tracker = StateTracker()
    now = time.time()
    for n in range(40):
        agent = str(6001 + n)
        record = AgentRecord(SWITCH, agent, now - 10 * n, AgentState.READY, device=agent)
        record.queues = {q: Membership(q) for q in ("support", "sales")}
        tracker.agents[(SWITCH, agent)] = record
    return tracker


def make_query(rng: random.Random, count: int, n: int) -> RouteQuery:
    roll = rng.random()
    customer = rng.randrange(count)
    data: dict[str, str] = {}
    if roll < 0.8:
        caller = phone(customer)
    elif roll < 0.9:
        caller, data = phone(count + customer), {"CUSTOMER_ACCOUNT": f"C{customer:07d}"}
    else:
        caller = phone(count + customer)  # nobody's
    return RouteQuery(SWITCH, f"bench-{n}", caller, "800", "800", data)


async def timed(runtime: RoutingRuntime, query: RouteQuery) -> float:
    started = time.perf_counter()
    await runtime.router.route(query)
    return time.perf_counter() - started


async def paced(
    runtime: RoutingRuntime, queries: Callable[[int], RouteQuery], rate: float, seconds: float
) -> list[float]:
    latencies: list[float] = []
    total = int(rate * seconds)
    started = time.perf_counter()
    pending: list[Deferred[None]] = []
    for n in range(total):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await deferLater(reactor, delay, lambda: None)
        pending.append(Deferred.fromCoroutine(_record(runtime, queries(n), latencies)))
    for waiting in pending:
        await waiting
    return latencies


async def _record(runtime: RoutingRuntime, query: RouteQuery, into: list[float]) -> None:
    into.append(await timed(runtime, query))


async def sequential(
    runtime: RoutingRuntime, queries: Callable[[int], RouteQuery], seconds: float
) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        latencies.append(await timed(runtime, queries(n)))
        n += 1
    return latencies, n / (time.perf_counter() - started)


async def concurrent(
    runtime: RoutingRuntime, queries: Callable[[int], RouteQuery], total: int, width: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for n in counter:
            latencies.append(await timed(runtime, queries(n)))

    started = time.perf_counter()
    workers = [Deferred.fromCoroutine(worker()) for _ in range(width)]
    for each in workers:
        await each
    return latencies, total / (time.perf_counter() - started)


async def decisions(url: str, count: int, rate: float, seconds: float, work: Path) -> None:
    config = bench_config(work)
    hub = Hub(tracker_with_agents())
    runtime = await start_routing(config, url, hub, hub.tracker, reactor, work / "state")
    rng = random.Random(3)
    ids = iter(range(10**9))

    def queries(_: int) -> RouteQuery:
        return make_query(rng, count, next(ids))

    await sequential(runtime, queries, 3.0)  # warm-up: connections, statements, caches
    floor = await raw_floor(url, count, rate, min(seconds, 10.0))
    print(f"  floor: one psycopg query at {rate:g}/s (no ctilink): {figures(floor)}")
    rules_before = dict(runtime.router.rules)
    latencies = await paced(runtime, queries, rate, seconds)
    rules = {k: v - rules_before.get(k, 0) for k, v in runtime.router.rules.items()}
    print(f"  at {rate:g}/s for {seconds:g} s : {len(latencies)} decisions, {figures(latencies)}")
    print(f"  rules            : {dict(sorted(rules.items(), key=lambda kv: -kv[1]))}")
    fast, per_second = await sequential(runtime, queries, 5.0)
    print(f"  one at a time    : {per_second:,.0f} decisions/s, {figures(fast)}")
    wide, per_second = await concurrent(runtime, queries, 4000, 10)
    print(f"  10 at a time     : {per_second:,.0f} decisions/s, {figures(wide)}")
    directory = runtime.directory
    print(
        f"  caller cache     : {directory.hits:,} hits, {directory.misses:,} misses;"
        f" audit rows written {runtime.audit.written:,}, fallbacks {runtime.router.fallbacks}"
    )
    await runtime.close()


def bench_config(work: Path) -> Config:
    """Defaults (budget 300 ms, lookups 150 ms), default queue "support", switch "bench"."""
    config = default_config(work)
    return replace(config, routing=replace(config.routing, default_queue="support"))


async def raw_floor(url: str, count: int, rate: float, seconds: float) -> list[float]:
    """The same caller lookup as one plain psycopg statement at the same pace: what this
    machine's loop wake-ups and round trips cost before any ctilink code runs."""
    from sqlalchemy.dialects import postgresql

    from ctilink.routing.directory import _identify_query

    compiled = _identify_query("postgresql", False, True, 10).compile(
        dialect=postgresql.psycopg.dialect()  # type: ignore[attr-defined]
    )
    text = str(compiled)
    rng = random.Random(5)
    latencies: list[float] = []
    connection = await Deferred.fromFuture(
        asyncio.ensure_future(psycopg.AsyncConnection.connect(url, autocommit=True))
    )

    async def one() -> None:
        params = {**compiled.params, "tenant": "default", "account": None}
        params["number"] = "+1" + phone(rng.randrange(count))
        started = time.perf_counter()
        cursor = await connection.execute(text, params)
        await cursor.fetchone()
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await deferLater(reactor, delay, lambda: None)
        await Deferred.fromFuture(asyncio.ensure_future(one()))
    await Deferred.fromFuture(asyncio.ensure_future(connection.close()))
    return latencies


# -- 3. fallback -----------------------------------------------------------------------------
class _Silent(Protocol):
    def connectionMade(self) -> None:
        self.factory.open.append(self)  # type: ignore[attr-defined]


async def fallback(database: str, work: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
    silent = Factory.forProtocol(_Silent)
    silent.open = []  # type: ignore[attr-defined]
    port = reactor.listenTCP(0, silent, interface="127.0.0.1")
    hung = port.getHost().port  # type: ignore[attr-defined]
    config = bench_config(work)

    logging.getLogger("ctilink").setLevel(logging.CRITICAL)  # the outage is the point here
    for what, number in (("stopped (refused)", refused), ("hung (no answer)", hung)):
        url = f"postgresql://postgres@127.0.0.1:{number}/{database}"
        hub = Hub(tracker_with_agents())
        runtime = await start_routing(config, url, hub, hub.tracker, reactor, work / "fb")
        rng = random.Random(4)
        first = await timed(runtime, make_query(rng, 1000, 0))
        rest = [await timed(runtime, make_query(rng, 1000, n)) for n in range(1, 2001)]
        within = sum(1 for v in [first, *rest] if v < BUDGET)
        print(
            f"  database {what:<17}: first request {first * MS:7.2f} ms, then {figures(rest)};"
            f" {within}/{len(rest) + 1} within the {BUDGET * MS:.0f} ms budget,"
            f" {runtime.router.fallbacks} default routes"
        )
        runtime.recorder.max_buffer = 0
        runtime.audit.max_buffer = 0
        await runtime.close()
    for protocol in silent.open:  # type: ignore[attr-defined]
        protocol.transport.abortConnection()
    await port.stopListening()


# -- main ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--reuse", metavar="DATABASE", help="a database kept by --keep: skip the import"
    )
    args = parser.parse_args()

    database = args.reuse or f"ctilink_bench_{secrets.token_hex(4)}"
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    if not args.reuse:
        with psycopg.connect(MAINTENANCE, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        db.upgrade(url)
    print(f"routing bench: PostgreSQL database {database}")
    status = [0]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if not args.reuse:
                import_directory(url, args.customers, work)

            async def run() -> None:
                try:
                    await decisions(url, args.customers, args.rate, args.seconds, work)
                    await fallback(database, work)
                except BaseException:
                    status[0] = 1
                    raise
                finally:
                    reactor.stop()

            reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()).addErrback(print))
            reactor.run()
    finally:
        if not (args.keep or args.reuse):
            with psycopg.connect(MAINTENANCE, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
    sys.exit(status[0])


if __name__ == "__main__":
    main()
