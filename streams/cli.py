"""The ``lintas`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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
