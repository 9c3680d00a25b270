"""Command-line helpers: ``ctilink db import|seed-demo`` and ``ctilink route explain|simulate``.

``ctilink/cli.py`` plugs them in (``add_arguments`` in its parser, ``run`` in ``main``).
``add_arguments`` adds ``import`` and ``seed-demo`` under ``db`` and a ``route`` command
with ``explain`` and ``simulate``; each parser sets ``routing_command``, which ``run``
calls. ``run`` prints its own errors (prefixed ``ctilink <command>:``) and returns the exit
status: 0 success, 1 runtime failure (database unreachable, nothing found), 2 bad input
(usage, configuration, trace, an unreadable or rejected import file).

    ctilink db import FILE [--on-error reject|skip] [--batch-size N] -c CONFIG
    ctilink db load-directory FILE -c CONFIG
    ctilink db seed-demo -c CONFIG
    ctilink route explain CALL_ID -c CONFIG
    ctilink route simulate TRACE... -c CONFIG [--switch NAME] [--port N] [--explain]

``db import`` and ``db seed-demo`` migrate the database first (like ``db upgrade``);
``route`` commands write nothing and want a database at the current schema. The
functions behind them take explicit parameters and return reports, for other callers:
``ctilink.routing.importer.import_customers``, ``ctilink.routing.admin.seed_demo``,
``ctilink.routing.audit.decisions_for``/``format_decision``,
``ctilink.routing.simulate.arrivals``/``simulate``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ctilink import db
from ctilink.config import Config, load_config
from ctilink.errors import ConfigError, TraceError
from ctilink.model.wire import iso_time

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
IMPORT_FORMAT = """\
Import customers from a CSV file (UTF-8, comma-separated, a header line naming the
columns in any order). Required: account (account numbers, ;-separated; the first is the
customer's key: importing it again updates the customer), name. Optional: tenant
(default "default"), tier (e.g. VIP), language (e.g. en, fr-CA), phones (;-separated, as
dialled in [routing] default_region; stored in E.164), preferred_agent (agent id),
notes. The import is one transaction: with --on-error reject (the default) a bad row
(reported with its line number) leaves the database unchanged; with skip, bad rows are
reported and left out."""


def add_arguments(
    subparsers: argparse._SubParsersAction[Any], db_subparsers: argparse._SubParsersAction[Any]
) -> None:
    """Add ``db import``, ``db seed-demo`` and ``route explain|simulate`` (see above)."""
    add_db_arguments(db_subparsers)
    add_route_arguments(subparsers)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, type=Path, help="configuration file")


def add_db_arguments(db_subparsers: argparse._SubParsersAction[Any]) -> None:
    imp = db_subparsers.add_parser(
        "import",
        help="import customers from a CSV file",
        description=IMPORT_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--on-error",
        choices=("reject", "skip"),
        default="reject",
        help="a bad row rejects the whole import (default) or is skipped",
    )
    imp.add_argument("--batch-size", type=int, default=2000, help=argparse.SUPPRESS)
    _config_option(imp)
    imp.set_defaults(routing_command=import_command)

    directory = db_subparsers.add_parser(
        "load-directory",
        help="add or replace agents and queues from a TOML file",
        description="Add or replace agents (skills) and queues (numbers, skills, hours,"
        " holidays, overflow) from a TOML file of [[agent]] and [[queue]] tables (see"
        " contrib/directory.example.toml). The file is checked whole and written in one"
        " transaction; a running daemon picks it up within [routing] refresh_seconds.",
    )
    directory.add_argument("file", type=Path, metavar="FILE")
    _config_option(directory)
    directory.set_defaults(routing_command=directory_command)

    seed = db_subparsers.add_parser("seed-demo", help="add the demo's customers, agents and queues")
    _config_option(seed)
    seed.set_defaults(routing_command=seed_command)


def add_route_arguments(subparsers: argparse._SubParsersAction[Any]) -> None:
    route = subparsers.add_parser("route", help="explain or simulate routing decisions")
    actions = route.add_subparsers(dest="route_command", required=True, metavar="ACTION")
    explain = actions.add_parser("explain", help="print the stored decision(s) for a call")
    explain.add_argument("call_id", metavar="CALL_ID")
    _config_option(explain)
    explain.set_defaults(routing_command=explain_command)

    simulate = actions.add_parser(
        "simulate", help="what routing would decide now for the calls of traces (writes nothing)"
    )
    simulate.add_argument("traces", nargs="+", type=Path, metavar="TRACE")
    _config_option(simulate)
    simulate.add_argument("--switch", default="replay", help="switch name (picks its tenant)")
    simulate.add_argument(
        "--port",
        type=int,
        default=None,
        help="the switch's port inside pcap captures (default 5038 AMI, 2555 CSTA)",
    )
    simulate.add_argument("--explain", action="store_true", help="print steps and candidates")
    simulate.set_defaults(routing_command=simulate_command)


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` was parsed for; returns the exit status."""
    command: Callable[[argparse.Namespace], int] = args.routing_command
    name = args.command + (f" {args.db_command}" if args.command == "db" else "")
    try:
        return command(args)
    except (ConfigError, TraceError) as exc:
        _error(name, str(exc))
        return EXIT_BAD_INPUT
    except sa.exc.SQLAlchemyError as exc:
        _error(name, f"database error: {_one_line(exc)}")
        return EXIT_FAILURE
    except OSError as exc:
        _error(name, str(exc))
        return EXIT_FAILURE


def _error(name: str, message: str) -> None:
    print(f"ctilink {name}: {message}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _prepared(args: argparse.Namespace, *, migrate: bool = True) -> tuple[Config, sa.URL]:
    """The configuration and its database URL; the database migrated (``migrate``) or
    checked to be at the current schema (else a ConfigError naming ``db upgrade``)."""
    config = load_config(args.config)
    url = config.database.connect_url()
    if migrate:
        db.upgrade(url)
        return config, url
    if db.current_revision(url) != db.head_revision():
        raise ConfigError(
            f"database {db.masked(url)} is not at the current schema: run"
            f" `ctilink db upgrade -c {args.config}` first"
        )
    return config, url


# -- the commands --------------------------------------------------------------------------
def import_command(args: argparse.Namespace) -> int:
    from ctilink.routing.importer import ImportFileError, import_customers

    config, url = _prepared(args)
    try:
        report = import_customers(
            url,
            args.file,
            on_error=args.on_error,
            default_region=config.routing.default_region,
            trunk_prefix=config.routing.trunk_prefix,
            batch_size=args.batch_size,
        )
    except ImportFileError as exc:
        _error("db import", str(exc))
        return EXIT_BAD_INPUT
    for error in report.errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    if report.error_count > len(report.errors):
        more = report.error_count - len(report.errors)
        print(f"{args.file}: ... and {more} more bad row(s)", file=sys.stderr)
    print(report.summary(), file=sys.stderr if report.rejected else sys.stdout)
    return EXIT_BAD_INPUT if report.rejected else EXIT_OK


def directory_command(args: argparse.Namespace) -> int:
    from ctilink.routing.directory_file import load_directory

    _, url = _prepared(args)
    found = load_directory(url, args.file)
    print(
        f"database {db.masked(url)}: {len(found.agents)} agent(s) and {len(found.queues)}"
        f" queue(s) from {args.file} in place"
    )
    return EXIT_OK


def seed_command(args: argparse.Namespace) -> int:
    from ctilink.routing.admin import seed_demo

    config, url = _prepared(args)
    report = seed_demo(url, default_region=config.routing.default_region)
    print(
        f"database {db.masked(url)}: demo directory in place ({report.customers} customers,"
        f" {report.agents} agents, {report.queues} queues)"
    )
    return EXIT_OK


def explain_command(args: argparse.Namespace) -> int:
    from ctilink.routing.audit import decisions_for, format_decision

    _, url = _prepared(args, migrate=False)
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            rows = decisions_for(connection, args.call_id)
    finally:
        engine.dispose()
    if not rows:
        _error("route explain", f"no routing decision stored for call {args.call_id}")
        return EXIT_FAILURE
    print("\n\n".join(format_decision(row) for row in rows))
    return EXIT_OK


def simulate_command(args: argparse.Namespace) -> int:
    from ctilink.routing.audit import describe_decision
    from ctilink.routing.simulate import arrivals, describe, simulate

    config, url = _prepared(args, migrate=False)
    found = arrivals(args.traces, switch=args.switch, port=args.port)
    tenants = {switch.name: switch.tenant for switch in config.switches}
    results = asyncio.run(simulate(url, found, config.routing, tenants=tenants))
    for result in results:
        item = describe(result)
        print(
            f"{iso_time(item['time'])} call {item['call_id']} from"
            f" {item['calling_number'] or 'unknown'} to {item['called_number'] or '?'}:"
            f" {describe_decision(item['decision'])} (rule {item['rule']})"
        )
        if args.explain:
            for step in item["steps"]:
                print(f"    {step['strategy']:<16} {step['outcome']:<11} {step['detail']}")
            for c in item["candidates"]:
                print(
                    f"    candidate {c['strategy']}: {c['agent']} score {c['score']}"
                    f" ({'available' if c['available'] else 'unavailable'}: {c['why']})"
                )
    print(f"{len(results)} arriving call(s) simulated; nothing was written", file=sys.stderr)
    return EXIT_OK
