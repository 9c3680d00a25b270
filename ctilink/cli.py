"""The ``ctilink`` command.

    ctilink demo                    embedded demo: SQLite, a bundled trace as the switch
    ctilink run -c FILE             the daemon
    ctilink replay TRACE...         print the events a trace replays to (JSON Lines)
    ctilink record --switch NAME --out FILE   record a running daemon's link
    ctilink simulate csta --listen PORT [--xml]   a CSTA switch simulator on TCP
    ctilink check-config FILE       validate a configuration file
    ctilink db upgrade -c FILE      migrate the database to the current schema

Exit status: 0 success, 1 runtime failure, 2 bad input (usage, configuration, trace).
Only ``run`` and ``demo`` (and ``replay --speed``) start a reactor; the asyncio reactor is
installed first, before anything imports ``twisted.internet.reactor``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ctilink import __version__
from ctilink.errors import ConfigError, TraceError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _posix(text: str) -> float:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if stamp.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. Z): {text!r}")
    return stamp.timestamp()


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (as fast as possible) or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctilink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"ctilink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the embedded demo (SQLite, bundled trace)")
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("ctilink-demo"),
        help="working directory for the demo database (default ./ctilink-demo)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    demo.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="replay speed: 1 real time (default), 0 as fast as possible",
    )
    demo.add_argument("--log-level", default="info")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, type=Path)

    replay = sub.add_parser("replay", help="replay traces and print the normalized events")
    replay.add_argument("traces", nargs="+", type=Path, metavar="TRACE")
    replay.add_argument(
        "--emit",
        choices=("jsonl", "none"),
        default="jsonl",
        help="jsonl: one JSON event per line on stdout (default)",
    )
    replay.add_argument(
        "--speed",
        type=_speed,
        default=0.0,
        help="0 as fast as possible (default), 1 real time, 2 twice as fast",
    )
    replay.add_argument("--switch", default="replay", help="switch name in the events")
    replay.add_argument(
        "--protocol",
        choices=("auto", "ami", "csta"),
        default="auto",
        help="the switch protocol in the traces; auto: CSTA for hex JSON Lines, else AMI",
    )
    replay.add_argument(
        "--port",
        type=int,
        default=None,
        help="the switch's TCP port inside pcap captures (default 5038 AMI, 2555 CSTA)",
    )
    replay.add_argument(
        "--start-time",
        type=_posix,
        default=None,
        help="ISO 8601 time of the first session (default: capture time or now)",
    )

    rec = sub.add_parser("record", help="record a running daemon's link into trace files")
    rec.add_argument("--switch", required=True, help="the switch (link) to record")
    rec.add_argument("--out", required=True, type=Path, help="the trace file to write")
    rec.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path("/etc/ctilink/ctilink.toml"),
        help="the daemon's configuration (for its state directory)",
    )
    rec.add_argument(
        "--max-bytes",
        type=int,
        default=100_000_000,
        help="rotate when a file reaches this size (default 100 MB)",
    )
    rec.add_argument("--keep", type=int, default=5, help="rotated files kept (default 5)")
    rec.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C)",
    )

    simulate = sub.add_parser(
        "simulate",
        help="run a switch simulator speaking real protocol bytes",
        description="ctilink simulate csta --listen PORT [--xml]: see 'ctilink simulate csta -h'",
    )
    simulate.add_argument("kind", choices=("csta",), help="the switch protocol")
    simulate.add_argument("options", nargs=argparse.REMAINDER, help="the simulator's options")

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="migrate the database to the current schema")
    upgrade.add_argument("-c", "--config", required=True, type=Path)
    from ctilink.routing import commands as routing_commands

    routing_commands.add_arguments(sub, db_sub)

    token = sub.add_parser("token", help="issue event socket / API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    new = token_sub.add_parser(
        "new",
        help="make a token: prints the secret once and its [[token]] entry",
        description="Make a bearer token. The secret is printed once on stdout; only its"
        " SHA-256 goes into the token file ([event_socket] tokens_file), which the daemon"
        " reads again on SIGHUP.",
    )
    new.add_argument("--id", required=True, help="the token's name in logs (unique)")
    new.add_argument("--tenant", required=True, help="the tenant whose events it sees")
    new.add_argument("--scope", choices=("read", "control"), default="read")
    for limit in ("agents", "queues", "devices"):
        new.add_argument(
            f"--{limit}",
            type=_names,
            default=None,
            help=f"limit it to these {limit} (comma-separated)",
        )
    new.add_argument(
        "--expires", type=_posix, default=None, help="ISO 8601 expiry (default: never)"
    )
    new.add_argument(
        "--file", type=Path, default=None, help="append the entry to this token file (mode 600)"
    )
    return parser


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "routing_command", None) is not None:
        from ctilink.routing import commands as routing_commands

        return routing_commands.run(args)
    command = {
        "demo": _demo,
        "run": _run,
        "replay": _replay,
        "record": _record,
        "simulate": _simulate,
        "check-config": _check_config,
        "db": _db,
        "token": _token,
    }[args.command]
    try:
        return command(args)
    except (ConfigError, TraceError) as exc:
        print(f"ctilink {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from ctilink.adapters.factories import replay_adapter
    from ctilink.hub import Hub
    from ctilink.model.events import Event
    from ctilink.model.wire import event_json

    hub = Hub()
    adapter = replay_adapter(
        args.switch,
        args.traces,
        hub.publish,
        protocol=args.protocol,
        port=args.port,
        speed=args.speed,
        start_time=args.start_time,
    )
    if args.emit == "jsonl":
        live = args.speed > 0

        def emit(event: Event) -> None:
            try:
                sys.stdout.write(event_json(event) + "\n")
                if live:
                    sys.stdout.flush()
            except BrokenPipeError:
                # The reader went away (``| head``): stop quietly, as Unix tools do.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                adapter.stop()

        hub.subscribe(emit)
    if args.speed == 0:
        adapter.run_to_end()
    else:
        from ctilink.reactor import install_asyncio_reactor

        reactor = install_asyncio_reactor()
        adapter.use_clock(reactor)
        reactor.callWhenRunning(adapter.start)
        reactor.callWhenRunning(lambda: adapter.finished().addBoth(lambda _: reactor.stop()))
        reactor.run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    from ctilink.csta.simulator import main as simulate_csta

    return simulate_csta(args.options)


def _record(args: argparse.Namespace) -> int:
    from ctilink.config import load_config
    from ctilink.daemon import CONTROL_SOCKET
    from ctilink.record import RecordError, record, report

    config = load_config(args.config)
    try:
        recording = record(
            config.daemon.state_dir / CONTROL_SOCKET,
            args.switch,
            args.out,
            max_bytes=args.max_bytes,
            keep=args.keep,
            duration=args.duration,
        )
    except RecordError as exc:
        print(f"ctilink record: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    report(recording)
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    from ctilink.config import load_config

    config = load_config(args.config)
    kinds = ", ".join(f"{s.name} ({s.kind})" for s in config.switches) or "none"
    print(f"{args.config}: OK; switches: {kinds}; event socket: {config.event_socket.listen}")
    if config.event_socket.auth == "none":
        print(
            f'{args.config}: warning: [event_socket] auth = "none": anyone who can reach'
            f" {config.event_socket.listen} sees every event",
            file=sys.stderr,
        )
    return EXIT_OK


def _db(args: argparse.Namespace) -> int:
    from ctilink import db
    from ctilink.config import load_config

    config = load_config(args.config)
    db.upgrade(config.database.connect_url())
    print(f"database {db.masked(config.database.connect_url())} is at the current schema")
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    from ctilink.screenpop.auth import TokenStore, new_token

    secret, token = new_token(
        args.id,
        args.tenant,
        args.scope,
        agents=args.agents,
        queues=args.queues,
        devices=args.devices,
        expires=args.expires,
    )
    entry = token.to_toml()
    if args.file is not None:
        existing = TokenStore.load(args.file) if args.file.exists() else TokenStore()
        try:  # a duplicate id is refused before anything is written
            TokenStore([*existing, token])
        except ValueError as exc:
            raise ConfigError(f"{args.file}: {exc}") from None
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(("\n" if existing else "") + entry)
        print(f"ctilink token: entry {args.id!r} added to {args.file}", file=sys.stderr)
    else:
        print(entry, file=sys.stderr)
    print(secret)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from ctilink.config import load_config
    from ctilink.runner import run_daemon

    return run_daemon(load_config(args.config))


def _demo(args: argparse.Namespace) -> int:
    from ctilink.daemon import demo_config
    from ctilink.runner import run_daemon

    config, token = demo_config(
        args.dir, host=args.host, port=args.port, speed=args.speed, log_level=args.log_level
    )
    return run_daemon(config, demo_token=token)


if __name__ == "__main__":
    raise SystemExit(main())
