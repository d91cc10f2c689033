"""``lintas produce|forward|simulate|worker|db``: events in, the worker that processes them, its schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.common import UsageError, settings_of
from streams.settings import Settings, load_settings


def _cmd_produce(args: argparse.Namespace) -> int:
    from streams.post.producer import Forwarder, ProduceReport, accept_lines, read_lines
    from streams.post.spool import Spool
    from streams.posts import load_registry

    settings = settings_of(args)
    spool = Spool(args.spool or settings.spool_dir / "outbox.sqlite")
    report = ProduceReport()

    def on_bad(line: int, errors: list) -> None:
        for err in errors:
            print(f"line {line}: {err.field or '(record)'}: {err.reason} [{err.code}]", file=sys.stderr)

    accept_lines(read_lines(args.file), args.type, spool, report, load_registry(settings), on_bad=on_bad,
                 post_id=settings.post_id)
    forwarder = Forwarder(settings, spool)
    forwarder.pump(timeout_s=args.wait)
    forwarder.close()
    report.delivered, report.dead_lettered, report.pending = forwarder.delivered, forwarder.dead_lettered, \
        spool.pending()
    print(report.summary())
    if report.pending:
        print(f"{report.pending} events wait in {spool.path}; `lintas forward` sends them when Kafka is reachable")
    return 1 if report.bad else 0


def _cmd_forward(args: argparse.Namespace) -> int:
    from streams.post.producer import Forwarder
    from streams.post.spool import Spool

    settings = settings_of(args)
    spool = Spool(args.spool or settings.spool_dir / "outbox.sqlite")
    forwarder = Forwarder(settings, spool)
    done = forwarder.pump(timeout_s=args.wait)
    forwarder.close()
    print(f"{forwarder.delivered} delivered, {spool.pending()} waiting in {spool.path}")
    return 0 if done else 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    from streams.sim.faces import face_model
    from streams.sim.files import write_files, write_truth
    from streams.sim.simulator import Simulator

    settings = settings_of(args)
    if args.duration is not None:
        if not args.rate:
            raise UsageError("--duration needs --rate")
        args.events = int(args.rate * args.duration)
    end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC)
    sim = Simulator(seed=args.seed, dim=args.dim, days=args.days, end=end, population=args.population,
                    faces=face_model(args.faces, args.dim), returning_share=args.returning)
    if args.out:
        paths = write_files(sim, args.events, args.out, landings=args.landings)
        print(f"wrote {sim.truth.crossings} crossings, {sim.truth.landings} landings: "
              + ", ".join(str(p) for p in paths.values()))
        return 0
    t0 = time.monotonic()
    delivered, pending = send_simulation(settings, sim, args.events, args.landings, args.rate, args.wait,
                                          args.spool or settings.spool_dir / "simulator.sqlite")
    truth_dir = args.truth_dir or settings.state_dir / "simulations" / f"seed-{args.seed}"
    write_truth(sim.truth, truth_dir)
    print(f"simulated {sim.truth.crossings} crossings and {sim.truth.landings} landings in "
          f"{time.monotonic() - t0:.1f}s; {delivered} delivered, {pending} waiting; ground truth in {truth_dir}")
    return 0 if pending == 0 else 1


def send_simulation(settings: Settings, sim: Any, events: int, landings: int, rate: float | None, wait: float,
                     spool_path: Path) -> tuple[int, int]:
    """Stream a simulation through the spool to Kafka, paced at ``rate`` events/s; (delivered, pending)."""
    import time

    from streams.post.producer import Forwarder, accept_records
    from streams.post.spool import Spool

    spool = Spool(spool_path)
    forwarder = Forwarder(settings, spool)
    t0, sent = time.monotonic(), 0
    chunk: dict[str, list[Any]] = {"crossing": [], "landing": []}
    step = max(1, int(rate // 10)) if rate else 5000
    for kind, record in sim.events(events, landings):
        chunk[kind].append(record)
        sent += 1
        if sent % step == 0:
            for k, records in chunk.items():
                accept_records(records, k, spool)
                records.clear()
            forwarder.pump(timeout_s=0, idle_stop=False)
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    for k, records in chunk.items():
        accept_records(records, k, spool)
    forwarder.pump(timeout_s=wait)
    forwarder.close()
    return forwarder.delivered, spool.pending()


def migrate_now(settings: Settings) -> list[str]:
    """Create the database if missing and apply pending migrations, as the migration user; the names applied.

    The only place the pipeline's commands change the schema: everything else runs as the pipeline's user,
    which cannot.
    """
    from streams.clients import clickhouse_client
    from streams.ops.migrate import migrate

    with clickhouse_client(settings, migrate=True, database="default") as client:
        client.command(f"CREATE DATABASE IF NOT EXISTS {settings.clickhouse_database}")
    with clickhouse_client(settings, migrate=True) as client:
        return migrate(client)


def _cmd_db(args: argparse.Namespace) -> int:
    applied = migrate_now(settings_of(args))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if not args.once:  # the supervisor: N worker processes, each restarted when it crashes; SIGTERM passed on
        import logging
        import os

        from streams.worker.supervise import supervise_all

        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
        n = args.processes or settings.worker_processes or os.cpu_count() or 1
        applied = migrate_now(settings)  # once, before the processes start (each would race the others)
        if applied:
            print("applied migrations: " + ", ".join(applied))
        command = [sys.executable, "-m", "streams.cli", "worker", "--once", "--loglevel", args.loglevel]
        logging.getLogger("lintas.supervise").info("starting %d worker process(es)", n)
        # each process's BLAS (the exact 1:N search) on its share of the cores, not all of them: N processes of
        # cores threads each would oversubscribe the machine (a thread count already set is kept)
        share = str(max(1, (os.cpu_count() or 1) // n))
        threads = {v: os.environ.get(v, share) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        return supervise_all([(command, {**os.environ, **threads, "LINTAS_WORKER_MEMBER": str(member)})
                              for member in range(n)])
    applied = migrate_now(settings)
    if applied:
        print("applied migrations: " + ", ".join(applied))
    from streams.worker.app import app, start

    start(settings)  # keyring, key store, rules, stay rules, model and thresholds: a bad one fails here, in one line
    (settings.state_dir / "worker-data").mkdir(parents=True, exist_ok=True)  # faust makes only its own folder
    sys.argv = ["lintas-worker", "worker", "--without-web", "--loglevel", args.loglevel]
    app.main()
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``lintas`` parser."""
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
    sim.add_argument("--dim", type=int, default=load_settings().dedup_dimension,
                     help="template dimension (default: the dedup setting)")
    sim.add_argument("--population", type=int, default=5000, help="returning travellers")
    sim.add_argument("--faces", choices=["clustered", "moderate", "hard"], default="clustered",
                     help="template model of the captures (streams/sim/faces.py)")
    sim.add_argument("--returning", type=float, default=None,
                     help="share of trips by someone of the population (default: every trip)")
    sim.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    sim.add_argument("--duration", type=float, default=None, help="seconds to run at --rate (sets --events)")
    sim.add_argument("--out", type=Path, default=None, help="write JSONL files here instead of sending to Kafka")
    sim.add_argument("--spool", type=Path, default=None)
    sim.add_argument("--truth-dir", type=Path, default=None)
    sim.add_argument("--wait", type=float, default=300.0)
    sim.set_defaults(func=_cmd_simulate)
    worker = sub.add_parser("worker", help="run the Faust pipeline worker (applies migrations first)")
    worker.add_argument("--loglevel", default="info")
    worker.add_argument("--once", action="store_true",
                        help="run one worker in this process, without the supervisor that restarts it on a crash")
    worker.add_argument("--processes", type=int, default=None, metavar="N",
                        help="worker processes, each a member of every agent's consumer group (default: "
                             "LINTAS_WORKER_PROCESSES, else one per core)")
    worker.set_defaults(func=_cmd_worker)
    db = sub.add_parser("db", help="ClickHouse schema")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(func=_cmd_db)
