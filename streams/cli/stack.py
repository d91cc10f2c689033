"""``lintas stack|demo|kafka``: the local stack, the main job on it, and Kafka's own tools against it.

The one place outside ``infra/`` that imports it: production commands never do.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from streams.cli.analysis import train_anomaly_model
from streams.cli.common import settings_of
from streams.cli.events import send_simulation
from streams.cli.posts import post_arguments, post_of
from streams.settings import Settings


def _print_status(rows: list) -> None:
    print(f"{'server':<12} {'pid':>8} {'ports':<12} {'health':<9} {'rss MB':>8}")
    for r in rows:
        health = "healthy" if r.healthy else ("DOWN" if r.pid is None else "UNHEALTHY")
        rss = r.rss_mb if r.rss_mb is not None else "-"
        print(f"{r.name:<12} {r.pid or '-':>8} {','.join(map(str, r.ports)):<12} {health:<9} {rss:>8}")


def _cmd_stack(args: argparse.Namespace) -> int:
    from infra.stack import Stack

    stack = Stack(settings_of(args))
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    elif args.action == "reset":
        stack.reset()
    elif args.action == "rotate":
        stack.rotate(admin=args.admin)
    elif args.action == "add-post":
        stack.add_post(post_of(args))
    elif args.action == "logs":
        print(stack.logs(args.server, args.lines))
    else:
        rows = stack.status()
        _print_status(rows)
        return 0 if all(r.healthy for r in rows) else 1
    return 0


QUERY_HINT = "SELECT post_id, count() FROM crossings FINAL GROUP BY post_id ORDER BY 2 DESC FORMAT PrettyCompact"


def _cmd_demo(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    from infra.kafka import write_kcat_config
    from infra.stack import Stack
    from streams.clients import clickhouse_client
    from streams.ops.summary import regional_summary
    from streams.sim.files import write_truth
    from streams.sim.simulator import Simulator

    settings = settings_of(args)
    stack = Stack(settings)
    stack.up()
    if not settings.anomaly_model_path.exists():  # the trafficking rules' anomaly score needs a trained model
        train_anomaly_model(settings, 30_000, 3.0, 15_000, 1, settings.anomaly_model_path)
    stack.start_worker()
    sim = Simulator(seed=args.seed, end=datetime.now(UTC))
    _demo_watchlist(settings, sim, args.seed)
    events = int(args.rate * args.duration)
    print(f"\nsimulating one day of regional traffic: {events:,} crossings at {args.rate:.0f} events/s "
          f"for {args.duration:.0f}s, plus {args.landings} boat landings ...")
    delivered, pending = send_simulation(settings, sim, events, args.landings, args.rate, 300,
                                          settings.spool_dir / "demo.sqlite")
    write_truth(sim.truth, settings.state_dir / "simulations" / f"demo-seed-{args.seed}")
    client = clickhouse_client(settings, readonly=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        rows = client.query("SELECT count() FROM crossings FINAL WHERE ingested_at > now() - INTERVAL 1 DAY")
        if rows.result_rows[0][0] >= sim.truth.crossings:
            break
        time.sleep(1)
    print(f"{delivered:,} events delivered to Kafka ({pending} waiting)\n")
    print(regional_summary(client))
    kcat = (f"kcat -F {write_kcat_config(settings)} -L   # as the ops principal" if settings.secure
            else f"kcat -b {settings.kafka_bootstrap} -L")
    print(f"""
Everything above was read from ClickHouse with the read-only dashboard user.
Query more:
  curl -s --cacert {settings.tls_ca_file} \\
       -u {settings.clickhouse_readonly_user}:$(cat {settings.secrets_dir / 'clickhouse_readonly_password'}) \\
       '{settings.clickhouse_url}/?database={settings.clickhouse_database}' \\
       --data-binary '{QUERY_HINT}'
  .venv/bin/lintas kafka consumer-groups --describe --all-groups   # each agent's lag per partition
  {kcat}
  .venv/bin/lintas dashboards render --screenshot   # the analysts' Grafana panels, drawn locally
  .venv/bin/lintas review list         # cases for officers' review, the most severe and oldest first
  .venv/bin/lintas officers add NAME --role supervisor --posts ID-BTH && .venv/bin/lintas console
  .venv/bin/lintas stack status        # servers and the worker
  .venv/bin/lintas stack logs worker
Stop everything:  .venv/bin/lintas stack down""")
    return 0


def _demo_watchlist(settings: Settings, sim: Any, seed: int) -> None:
    """A lost/stolen list of 1 in 500 simulated travellers' documents, loaded (whole) before the traffic."""
    import random

    from streams.ops.watchlist import load

    people = random.Random(seed).sample(sim.people, max(1, len(sim.people) // 500))  # noqa: S311 (simulation)
    path = settings.state_dir / "simulations" / f"demo-seed-{seed}" / "watchlist_lost_stolen.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("issuing_state,number,reason,valid_from,valid_until,source\n" + "".join(
        f"{p.identities[0].issuing_state},{p.identities[0].number},STOLEN,,,INTERPOL-SLTD\n" for p in people))
    done = load(settings, path, "lost_stolen", replace=True)
    print(f"watchlist lost_stolen: {done.published} synthetic documents listed, {done.removed} older entries "
          f"removed ({path})")


def _cmd_kafka(args: argparse.Namespace) -> int:
    from infra.kafka import KafkaCluster
    from streams.topics import Role

    settings = settings_of(args)
    tool_args = list(args.args)
    if tool_args and tool_args[0] == "--":
        tool_args = tool_args[1:]
    if args.tool != "storage" and not any(a.startswith("--bootstrap-server") for a in tool_args):
        tool_args = ["--bootstrap-server", settings.kafka_bootstrap, *tool_args]
    cmd = KafkaCluster(settings).cli_command(args.tool, tool_args, role=Role(args.role))
    os.execvp(cmd[0], cmd)  # noqa: S606 - replaces this process with Kafka's own tool
    return 0  # pragma: no cover


def register(sub: Any) -> None:
    """Add this group's commands to the ``lintas`` parser."""
    stack = sub.add_parser("stack", help="local Kafka, schema registry and ClickHouse")
    stack_sub = stack.add_subparsers(dest="action", required=True)
    up = stack_sub.add_parser("up", help="install what is missing, start every server, create topics")
    up.add_argument("--brokers", type=int, choices=[1, 3], default=None, help="Kafka brokers (default 1)")
    stack_sub.add_parser("down", help="stop every server")
    stack_sub.add_parser("status", help="servers, PIDs, ports, health and memory")
    stack_sub.add_parser("reset", help="stop and delete all server state (keeps installed jars)")
    rotate = stack_sub.add_parser("rotate", help="new passwords for every local principal and user (secrets/)")
    rotate.add_argument("--admin", action="store_true", help="the Kafka admin's too (restarts the brokers)")
    add_post = stack_sub.add_parser("add-post", help="register a post, make its signing key, and give it its Kafka "
                                    "principal (post-<id>) and ACLs")
    post_arguments(add_post)
    logs = stack_sub.add_parser("logs", help="the last lines of the servers' logs")
    logs.add_argument("server", nargs="?", help="e.g. kafka-1, registry, clickhouse")
    logs.add_argument("-n", "--lines", type=int, default=40)
    stack.set_defaults(func=_cmd_stack)
    demo = sub.add_parser("demo", help="the main job: stack, worker, simulated traffic, regional summary")
    demo.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    demo.add_argument("--duration", type=float, default=120.0, help="seconds of traffic (default 120)")
    demo.add_argument("--landings", type=int, default=4)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_demo)
    from infra.kafka import CLI_TOOLS
    from streams.topics import Role
    kafka = sub.add_parser(
        "kafka", help="run one of Kafka's own CLI tools against the local cluster",
        description="e.g. `lintas kafka topics --list`, `lintas kafka consumer-groups --describe --all-groups`",
    )
    kafka.add_argument("--as", dest="role", choices=[Role.OPS.value, Role.ADMIN.value], default=Role.OPS.value,
                       help="the principal to connect as: ops (read-mostly, the default) or admin")
    kafka.add_argument("tool", choices=sorted(CLI_TOOLS))
    kafka.add_argument("args", nargs=argparse.REMAINDER)
    kafka.set_defaults(func=_cmd_kafka)
