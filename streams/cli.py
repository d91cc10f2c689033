"""The ``lintas`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from streams.errors import LintasError
from streams.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    brokers = getattr(args, "brokers", None)
    if brokers is not None:
        settings = settings.model_copy(update={"kafka_brokers": brokers})
    return settings


def _print_status(rows: list) -> None:
    print(f"{'server':<12} {'pid':>8} {'ports':<12} {'health':<9} {'rss MB':>8}")
    for r in rows:
        health = "healthy" if r.healthy else ("DOWN" if r.pid is None else "UNHEALTHY")
        rss = r.rss_mb if r.rss_mb is not None else "-"
        print(f"{r.name:<12} {r.pid or '-':>8} {','.join(map(str, r.ports)):<12} {health:<9} {rss:>8}")


def _cmd_stack(args: argparse.Namespace) -> int:
    from infra.stack import Stack

    stack = Stack(_settings(args))
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    elif args.action == "reset":
        stack.reset()
    elif args.action == "logs":
        print(stack.logs(args.server, args.lines))
    else:
        rows = stack.status()
        _print_status(rows)
        return 0 if all(r.healthy for r in rows) else 3
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from infra.stack import Stack

    settings = _settings(args)
    stack = Stack(settings)
    stack.up()
    print()
    _print_status(stack.status())
    print(f"""
The local stack is up. Try:
  .venv/bin/lintas kafka topics --list
  kcat -b {settings.kafka_bootstrap} -L
  curl -s {settings.schema_registry_url}/subjects
  .venv/bin/lintas stack logs clickhouse
Stop it with:  .venv/bin/lintas stack down""")
    return 0


def _cmd_kafka(args: argparse.Namespace) -> int:
    from infra.kafka import KafkaCluster

    settings = _settings(args)
    tool_args = list(args.args)
    if tool_args and tool_args[0] == "--":
        tool_args = tool_args[1:]
    if args.tool != "storage" and not any(a.startswith("--bootstrap-server") for a in tool_args):
        tool_args = ["--bootstrap-server", settings.kafka_bootstrap, *tool_args]
    cmd = KafkaCluster(settings).cli_command(args.tool, tool_args)
    os.execvp(cmd[0], cmd)  # noqa: S606 - replaces this process with Kafka's own tool
    return 0  # pragma: no cover


def _cmd_produce(args: argparse.Namespace) -> int:
    from streams.producer import Forwarder, ProduceReport, accept_lines, read_lines
    from streams.spool import Spool

    settings = _settings(args)
    spool = Spool(args.spool or settings.spool_dir / "outbox.sqlite")
    report = ProduceReport()

    def on_bad(line: int, errors: list) -> None:
        for err in errors:
            print(f"line {line}: {err.field or '(record)'}: {err.reason} [{err.code}]", file=sys.stderr)

    accept_lines(read_lines(args.file), args.type, spool, report, on_bad=on_bad)
    forwarder = Forwarder(settings, spool)
    forwarder.pump(timeout_s=args.wait)
    forwarder.close()
    report.delivered, report.pending = forwarder.delivered, spool.pending()
    print(report.summary())
    if report.pending:
        print(f"{report.pending} events wait in {spool.path}; `lintas forward` sends them when Kafka is reachable")
    return 1 if report.bad else 0


def _cmd_forward(args: argparse.Namespace) -> int:
    from streams.producer import Forwarder
    from streams.spool import Spool

    settings = _settings(args)
    spool = Spool(args.spool or settings.spool_dir / "outbox.sqlite")
    forwarder = Forwarder(settings, spool)
    done = forwarder.pump(timeout_s=args.wait)
    forwarder.close()
    print(f"{forwarder.delivered} delivered, {spool.pending()} waiting in {spool.path}")
    return 0 if done else 3


def _cmd_simulate(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    from streams.producer import Forwarder, accept_records
    from streams.simulator import Simulator, write_files, write_truth
    from streams.spool import Spool

    settings = _settings(args)
    if args.duration is not None:
        if not args.rate:
            print("lintas: --duration needs --rate", file=sys.stderr)
            return 2
        args.events = int(args.rate * args.duration)
    end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC)
    sim = Simulator(seed=args.seed, dim=args.dim, days=args.days, end=end, population=args.population)
    if args.out:
        paths = write_files(sim, args.events, args.out, landings=args.landings)
        print(f"wrote {sim.truth.crossings} crossings, {sim.truth.landings} landings: "
              + ", ".join(str(p) for p in paths.values()))
        return 0
    spool = Spool(args.spool or settings.spool_dir / "simulator.sqlite")
    forwarder = Forwarder(settings, spool)
    t0, sent = time.monotonic(), 0
    chunk: dict[str, list] = {"crossing": [], "landing": []}
    step = max(1, int(args.rate // 10)) if args.rate else 5000
    for kind, record in sim.events(args.events, args.landings):
        chunk[kind].append(record)
        sent += 1
        if sent % step == 0:
            for k, records in chunk.items():
                accept_records(records, k, spool)
                records.clear()
            forwarder.pump(timeout_s=0, idle_stop=False)
            if args.rate:
                ahead = sent / args.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    for k, records in chunk.items():
        accept_records(records, k, spool)
    done = forwarder.pump(timeout_s=args.wait)
    forwarder.close()
    truth_dir = args.truth_dir or settings.state_dir / "simulations" / f"seed-{args.seed}"
    write_truth(sim.truth, truth_dir)
    print(f"simulated {sim.truth.crossings} crossings and {sim.truth.landings} landings in "
          f"{time.monotonic() - t0:.1f}s; {forwarder.delivered} delivered, {spool.pending()} waiting; "
          f"ground truth in {truth_dir}")
    return 0 if done else 3


def _migrate(settings: Settings) -> list[str]:
    from infra.clickhouse import admin_client
    from streams.migrate import migrate

    with admin_client(settings, database="default") as client:
        client.command(f"CREATE DATABASE IF NOT EXISTS {settings.clickhouse_database}")
    with admin_client(settings) as client:
        return migrate(client)


def _cmd_db(args: argparse.Namespace) -> int:
    applied = _migrate(_settings(args))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    applied = _migrate(settings)
    if applied:
        print("applied migrations: " + ", ".join(applied))
    from streams.app import app

    sys.argv = ["lintas-worker", "worker", "--without-web", "--loglevel", args.loglevel]
    app.main()
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from schemas.contracts import EVENT_CONTRACTS, history
    from schemas.evolution import freeze_all, history_problems, pending_change

    if args.action == "freeze":
        for path in freeze_all():
            print(f"froze {path}")
        return 0
    bad = 0
    for name, contract in EVENT_CONTRACTS.items():
        problems = history_problems(history(name))
        state = "changed, not frozen" if pending_change(contract) else "frozen"
        print(f"{name}: {len(history(name))} version(s), {state}" + (f"; {problems}" if problems else ""))
        bad += bool(problems)
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``lintas`` subcommand."""
    parser = argparse.ArgumentParser(prog="lintas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="local Kafka, schema registry and ClickHouse")
    stack_sub = stack.add_subparsers(dest="action", required=True)
    up = stack_sub.add_parser("up", help="install what is missing, start every server, create topics")
    up.add_argument("--brokers", type=int, choices=[1, 3], default=None, help="Kafka brokers (default 1)")
    stack_sub.add_parser("down", help="stop every server")
    stack_sub.add_parser("status", help="servers, PIDs, ports, health and memory")
    stack_sub.add_parser("reset", help="stop and delete all server state (keeps installed jars)")
    logs = stack_sub.add_parser("logs", help="the last lines of the servers' logs")
    logs.add_argument("server", nargs="?", help="e.g. kafka-1, registry, clickhouse")
    logs.add_argument("-n", "--lines", type=int, default=40)
    stack.set_defaults(func=_cmd_stack)

    produce = sub.add_parser("produce", help="validate a JSONL file and send it to Kafka (store and forward)")
    produce.add_argument("file", help="JSON lines, one event per line (- for standard input)")
    produce.add_argument("--type", required=True, choices=["crossing", "landing"])
    produce.add_argument("--spool", type=Path, default=None, help="outbox file (default: <spool_dir>/outbox.sqlite)")
    produce.add_argument("--wait", type=float, default=120.0, help="seconds to wait for Kafka before leaving "
                         "the rest in the spool (default 120)")
    produce.set_defaults(func=_cmd_produce)

    forward = sub.add_parser("forward", help="send what waits in the spool")
    forward.add_argument("--spool", type=Path, default=None)
    forward.add_argument("--wait", type=float, default=None, help="give up after this many seconds")
    forward.set_defaults(func=_cmd_forward)

    sim = sub.add_parser("simulate", help="synthetic regional traffic with planted patterns and ground truth")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--events", type=int, default=10_000, help="crossing events (default 10,000)")
    sim.add_argument("--landings", type=int, default=3)
    sim.add_argument("--days", type=float, default=1.0, help="simulated days of traffic, ending at --end")
    sim.add_argument("--end", default=None, help="ISO time the simulated window ends (default: now)")
    sim.add_argument("--dim", type=int, default=512, help="template dimension")
    sim.add_argument("--population", type=int, default=5000, help="returning travellers")
    sim.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    sim.add_argument("--duration", type=float, default=None, help="seconds to run at --rate (sets --events)")
    sim.add_argument("--out", type=Path, default=None, help="write JSONL files here instead of sending to Kafka")
    sim.add_argument("--spool", type=Path, default=None)
    sim.add_argument("--truth-dir", type=Path, default=None)
    sim.add_argument("--wait", type=float, default=300.0)
    sim.set_defaults(func=_cmd_simulate)

    worker = sub.add_parser("worker", help="run the Faust pipeline worker (applies migrations first)")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(func=_cmd_worker)

    db = sub.add_parser("db", help="ClickHouse schema")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(func=_cmd_db)

    schemas = sub.add_parser("schemas", help="event contracts: check or freeze versions")
    schemas.add_argument("action", choices=["check", "freeze"])
    schemas.set_defaults(func=_cmd_schemas)

    demo = sub.add_parser("demo", help="the main job on the local stack")
    demo.set_defaults(func=_cmd_demo)

    from infra.kafka import CLI_TOOLS

    kafka = sub.add_parser(
        "kafka", help="run one of Kafka's own CLI tools against the local cluster",
        description="e.g. `lintas kafka topics --list`, `lintas kafka consumer-groups --describe --all-groups`",
    )
    kafka.add_argument("tool", choices=sorted(CLI_TOOLS))
    kafka.add_argument("args", nargs=argparse.REMAINDER)
    kafka.set_defaults(func=_cmd_kafka)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lintas`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LintasError as exc:
        print(f"lintas: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
