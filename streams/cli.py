"""The ``lintas`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

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


QUERY_HINT = "SELECT post_id, count() FROM crossings FINAL GROUP BY post_id ORDER BY 2 DESC FORMAT PrettyCompact"


def _cmd_dashboards(args: argparse.Namespace) -> int:
    from dashboards.render import JSON_DIR, build, render, stale
    from dashboards.shapes import ALL_SUPPRESSED

    if args.action == "build":
        if args.check:
            out_of_date = stale()
            if out_of_date:
                print(f"out of date, run `lintas dashboards build`: {', '.join(out_of_date)}", file=sys.stderr)
                return 1
            print(f"the dashboards in {JSON_DIR} match their definitions")
            return 0
        for path in build():
            print(f"wrote {path}")
        return 0
    from datetime import UTC, datetime

    from infra.clickhouse import readonly_client

    settings = _settings(args)
    out = args.out or settings.state_dir / "dashboards"
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC) if args.start else None
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC) if args.end else None
    drawn = render(readonly_client(settings), out, start, end)
    width = max(len(d.panel) for d in drawn)
    for d in drawn:
        print(f"{d.dashboard:28} {d.panel:{width}} {d.kind:10} {d.rows:6} rows  {'; '.join(d.errors) or 'ok'}")
    page = out / "index.html"
    print(f"preview: {page}")
    if args.screenshot:
        from dashboards.browser import screenshot

        print(f"screenshot: {screenshot(page, out / 'preview.png')}")
    return 1 if any(e != ALL_SUPPRESSED for d in drawn for e in d.errors) else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    from infra.clickhouse import readonly_client
    from infra.stack import Stack
    from streams.simulator import Simulator, write_truth
    from streams.summary import regional_summary

    settings = _settings(args)
    stack = Stack(settings)
    stack.up()
    if not settings.anomaly_model_path.exists():  # the trafficking rules' anomaly score needs a trained model
        _train_anomaly_model(settings, 30_000, 3.0, 15_000, 1, settings.anomaly_model_path)
    stack.start_worker()
    sim = Simulator(seed=args.seed, end=datetime.now(UTC))
    _demo_watchlist(settings, sim, args.seed)
    events = int(args.rate * args.duration)
    print(f"\nsimulating one day of regional traffic: {events:,} crossings at {args.rate:.0f} events/s "
          f"for {args.duration:.0f}s, plus {args.landings} boat landings ...")
    delivered, pending = _send_simulation(settings, sim, events, args.landings, args.rate, 300,
                                          settings.spool_dir / "demo.sqlite")
    write_truth(sim.truth, settings.state_dir / "simulations" / f"demo-seed-{args.seed}")
    client = readonly_client(settings)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        rows = client.query("SELECT count() FROM crossings FINAL WHERE ingested_at > now() - INTERVAL 1 DAY")
        if rows.result_rows[0][0] >= sim.truth.crossings:
            break
        time.sleep(1)
    print(f"{delivered:,} events delivered to Kafka ({pending} waiting)\n")
    print(regional_summary(client))
    print(f"""
Everything above was read from ClickHouse with the read-only dashboard user.
Query more:
  curl -s -u {settings.clickhouse_readonly_user}:$(cat {settings.secrets_dir / 'clickhouse_readonly_password'}) \\
       '{settings.clickhouse_url}/?database={settings.clickhouse_database}' \\
       --data-binary '{QUERY_HINT}'
  .venv/bin/lintas kafka consumer-groups --describe --group lintas-pipeline
  kcat -b {settings.kafka_bootstrap} -L
  .venv/bin/lintas dashboards render --screenshot   # the analysts' Grafana panels, drawn locally
  .venv/bin/lintas stack status        # servers and the worker
  .venv/bin/lintas stack logs worker
Stop everything:  .venv/bin/lintas stack down""")
    return 0


def _demo_watchlist(settings: Settings, sim: Any, seed: int) -> None:
    """A lost/stolen list of 1 in 500 simulated travellers' documents, loaded (whole) before the traffic."""
    import random

    from streams.watchlist import load

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

    from streams.faces import face_model
    from streams.simulator import Simulator, write_files, write_truth

    settings = _settings(args)
    if args.duration is not None:
        if not args.rate:
            print("lintas: --duration needs --rate", file=sys.stderr)
            return 2
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
    delivered, pending = _send_simulation(settings, sim, args.events, args.landings, args.rate, args.wait,
                                          args.spool or settings.spool_dir / "simulator.sqlite")
    truth_dir = args.truth_dir or settings.state_dir / "simulations" / f"seed-{args.seed}"
    write_truth(sim.truth, truth_dir)
    print(f"simulated {sim.truth.crossings} crossings and {sim.truth.landings} landings in "
          f"{time.monotonic() - t0:.1f}s; {delivered} delivered, {pending} waiting; ground truth in {truth_dir}")
    return 0 if pending == 0 else 3


def _send_simulation(settings: Settings, sim: Any, events: int, landings: int, rate: float | None, wait: float,
                     spool_path: Path) -> tuple[int, int]:
    """Stream a simulation through the spool to Kafka, paced at ``rate`` events/s; (delivered, pending)."""
    import time

    from streams.producer import Forwarder, accept_records
    from streams.spool import Spool

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
    if not args.once:  # the supervisor: restarts the worker when it crashes, passes SIGTERM on
        import logging

        from streams.supervise import supervise

        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
        return supervise([sys.executable, "-m", "streams.cli", "worker", "--once", "--loglevel", args.loglevel])
    settings = _settings(args)
    applied = _migrate(settings)
    if applied:
        print("applied migrations: " + ", ".join(applied))
    from streams.app import app

    sys.argv = ["lintas-worker", "worker", "--without-web", "--loglevel", args.loglevel]
    app.main()
    return 0


def _cmd_dedup(args: argparse.Namespace) -> int:
    from agents.calibration import Targets
    from streams import dedup_ops

    settings = _settings(args)
    if args.action == "thresholds":
        thresholds = dedup_ops.current(settings)
        source = settings.dedup_thresholds_path if settings.dedup_thresholds_path.is_file() else "packaged defaults"
        print(f"dedup thresholds {thresholds.version} ({source})")
        _thresholds_table([thresholds.default, *thresholds.models.values()])
        return 0
    if args.action == "calibrate":
        targets = Targets(fpir=args.fpir, fmr=args.fmr, another_face_rate=args.another_face_rate)
        thresholds, notes = dedup_ops.calibrate_gallery(settings, targets, args.model or None, args.gallery_size)
        print(f"wrote dedup thresholds {thresholds.version} to {settings.dedup_thresholds_path}; running workers "
              "take them up at their next batch")
        _thresholds_table(list(thresholds.models.values()))
        for note in notes:
            print(note)
        return 0
    rows = dedup_ops.monitor(settings, args.days)
    if not rows:
        print(f"no dedup decisions in the last {args.days:g} days")
        return 0
    print(f"{'model':<40} {'returns':>8} {'median':>7} {'est FNIR':>9} {'subjects':>8} {'est FPIR':>9}  thresholds")
    drifted = 0
    for model, t, seen, reasons in rows:
        print(f"{model:<40} {seen.returns:>8,} {seen.genuine_median:>7.3f} {seen.below_yellow:>9.4f} "
              f"{seen.searches:>8,} {seen.above_yellow:>9.4f}  {t.version}")
        for reason in reasons:
            print(f"  DRIFT: {reason}")
        drifted += bool(reasons)
    return 1 if drifted else 0


def _thresholds_table(models: list[Any]) -> None:
    print(f"{'model':<40} {'verify':>7} {'mismatch':>8} {'yellow':>7} {'red':>7} {'floor':>7} {'gallery':>9}")
    for t in models:
        print(f"{t.model:<40} {t.verify:>7.3f} {t.mismatch:>8.3f} {t.yellow:>7.3f} {t.red:>7.3f} "
              f"{t.pair_floor:>7.3f} {t.gallery_size:>9,}")


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


def _cmd_trafficking(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _train_anomaly_model(settings, args.crossings, args.days, args.population, args.seed,
                         args.out or settings.anomaly_model_path)
    return 0


def _train_anomaly_model(settings: Settings, crossings: int, days: float, population: int, seed: int,
                         out: Path) -> None:
    import secrets
    from datetime import UTC, datetime

    from agents.anomaly import FEATURES, save, train, training_rows
    from agents.pseudonymise import Tokeniser
    from agents.trafficking import load_rules
    from streams.simulator import Simulator, simulated_facts

    rules = load_rules(settings.trafficking_rules)
    # Tokens only need to be consistent within the training run: a throwaway key, never the pipeline's.
    tok = Tokeniser(secrets.token_bytes(32), "training")
    sim = Simulator(seed=seed, dim=8, days=days, population=population,
                    end=datetime.now(UTC).replace(minute=0, second=0))
    x = training_rows(simulated_facts(sim, crossings, 10, tok), rules)
    model = train(x, float(rules.rule("anomaly_score")["alert_rate"]), seed=seed)
    path = save(model, out)
    print(f"trained anomaly model {model.version} on {len(x):,} document windows ({len(FEATURES)} features, "
          f"{crossings:,} simulated crossings); alerts below score {model.threshold:.4f}; saved {path}")


def _cmd_export(args: argparse.Namespace) -> int:
    from streams.privacy_ops import regional_export

    settings = _settings(args)
    out = args.out or settings.state_dir / "exports" / f"regional-{args.destination}-{args.start}-{args.end}.json"
    manifest = regional_export(settings, args.destination, args.consent_basis, args.start, args.end, out)["manifest"]
    print(f"regional export to {manifest['destination']} (basis: {manifest['basis']}; policy "
          f"{manifest['policy_version']}, k={manifest['k']}): " + ", ".join(
              f"{name} {n} cells ({manifest['suppressed'][name]} suppressed)" for name, n in manifest["cells"].items())
          + f"; written {out}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from agents.keys import FileKeyring

    settings = _settings(args)
    ring = FileKeyring(settings.keyring_path)
    if args.action == "rotate":
        if not args.purpose:
            raise SystemExit("lintas keys rotate: --purpose is required")
        print(f"{args.purpose}: new active key {ring.rotate(args.purpose)}; workers switch at their next batch")
    elif args.action == "retire":
        if not args.key_id:
            raise SystemExit("lintas keys retire: --key-id is required")
        ring.retire(args.key_id)
        print(f"retired {args.key_id}: tokens it made can no longer be recomputed")
    for key in ring.describe():
        print(f"{key['id']:<16} {key['purpose']:<11} {key['state']:<9} created {key['created']}")
    return 0


def _cmd_erase(args: argparse.Namespace) -> int:
    import sys

    from streams.erasure import erase

    person = sys.stdin.readline().strip() if args.person == "-" else args.person
    proof = erase(_settings(args), person, args.basis, args.proof_dir)
    where = (args.proof_dir or _settings(args).state_dir / "erasures") / f"{proof['erasure_id']}.json"
    rows = sum(proof["clickhouse_rows_before"].values())
    remaining = proof["remaining_until_retention"]
    print(f"erased {proof['person_reference_sha256'][:12]}…: {sum(proof['keys_destroyed'].values())} key(s) "
          f"destroyed, {proof['biometric_subjects']} biometric subject(s), {rows} ClickHouse row(s) deleted or "
          f"anonymised, verified {proof['verified']}; {remaining['messages']} raw message(s) on "
          f"{remaining['topic']} until {remaining['deleted_by']}; proof {where}")
    return 0


def _cmd_identity(args: argparse.Namespace) -> int:
    import json

    from streams.privacy_ops import resolve_identity

    print(json.dumps(resolve_identity(_settings(args), args.token, args.case), indent=2, sort_keys=True))
    return 0


def _cmd_breach_report(args: argparse.Namespace) -> int:
    import json

    from streams.breach import breach_report, render

    report = breach_report(_settings(args), args.start, args.end)
    print(render(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written {args.out}")
    return 0


def _cmd_watchlist(args: argparse.Namespace) -> int:
    from agents.watchlist import ListFileError
    from streams import watchlist

    settings = _settings(args)
    if args.action != "show" and not args.list:
        raise SystemExit(f"lintas watchlist {args.action}: --list is required")
    try:
        if args.action == "load":
            if args.file is None:
                raise SystemExit("lintas watchlist load: FILE is required")
            done = watchlist.load(settings, args.file, args.list, replace=args.replace)
        elif args.action == "remove":
            if (args.file is None) == (args.document is None):
                raise SystemExit("lintas watchlist remove: give FILE or --document STATE:NUMBER (one of them)")
            document = sys.stdin.readline().strip() if args.document == "-" else args.document
            done = watchlist.remove(settings, args.list, watchlist.removal_rows(args.file, document, args.list))
        else:
            replica = watchlist.Replica(settings)
            replica.start()
            replica.wait(timeout_s=300)
            replica.stop()
            for name, n in replica.sizes().items():
                print(f"{name:<16} {n:>9} entries")
            return 0
    except ListFileError as err:
        print(f"lintas: {args.list}: {len(err.errors)} bad row(s); nothing was published", file=sys.stderr)
        for line, column, reason in err.errors:
            print(f"  line {line}: {column}: {reason}", file=sys.stderr)
        return 2
    print(f"{done.list}: {done.published} entr{'y' if done.published == 1 else 'ies'} published, {done.removed} "
          f"removed, in one transaction ({args.action} {done.load_id}, operations key {done.key_id}); workers "
          "apply it within seconds")
    return 0


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
    sim.add_argument("--dim", type=int, default=load_settings().dedup_dimension,
                     help="template dimension (default: the dedup setting)")
    sim.add_argument("--population", type=int, default=5000, help="returning travellers")
    sim.add_argument("--faces", choices=["clustered", "moderate", "hard"], default="clustered",
                     help="template model of the captures (streams/faces.py)")
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
                        help="run the worker in this process, without the supervisor that restarts it on a crash")
    worker.set_defaults(func=_cmd_worker)

    db = sub.add_parser("db", help="ClickHouse schema")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(func=_cmd_db)

    schemas = sub.add_parser("schemas", help="event contracts: check or freeze versions")
    schemas.add_argument("action", choices=["check", "freeze"])
    schemas.set_defaults(func=_cmd_schemas)

    traffic = sub.add_parser("trafficking", help="trafficking rules: train the anomaly model")
    traffic.add_argument("action", choices=["train"])
    traffic.add_argument("--crossings", type=int, default=100_000, help="simulated crossings to train on")
    traffic.add_argument("--days", type=float, default=7.0)
    traffic.add_argument("--population", type=int, default=40_000)
    traffic.add_argument("--seed", type=int, default=1)
    traffic.add_argument("--out", type=Path, default=None, help="model file (default: the worker's model path)")
    traffic.set_defaults(func=_cmd_trafficking)

    export = sub.add_parser("export", help="regional aggregates for a partner state (k-suppressed, adequacy-checked)")
    export.add_argument("--destination", required=True, help="ISO 3166-1 alpha-3 code of the receiving state")
    export.add_argument("--consent-basis", default=None,
                        help="reference of the recorded consent or binding safeguards (needed off the adequacy list)")
    export.add_argument("--from", dest="start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    export.add_argument("--to", dest="end", type=date.fromisoformat, required=True, help="last day, YYYY-MM-DD")
    export.add_argument("--out", type=Path, default=None)
    export.set_defaults(func=_cmd_export)

    keys = sub.add_parser("keys", help="pseudonymisation keys per purpose: list, rotate, retire")
    keys.add_argument("action", choices=["list", "rotate", "retire"])
    keys.add_argument("--purpose", choices=["operations", "analytics", "regional"])
    keys.add_argument("--key-id", default=None)
    keys.set_defaults(func=_cmd_keys)

    erase = sub.add_parser("erase", help="erase one person: destroy their keys, delete or blank their rows, prove it")
    erase.add_argument("person", help="STATE:NUMBER of their document, name:GIVEN/SURNAME without one, or - to read "
                                      "it from stdin (keeps it out of shell history and ps)")
    erase.add_argument("--basis", default=None,
                       help="legal basis, required when the person is the subject of an alert (a possible case)")
    erase.add_argument("--proof-dir", type=Path, default=None, help="default <state_dir>/erasures/")
    erase.set_defaults(func=_cmd_erase)

    identity = sub.add_parser("identity", help="operations: the identity behind a person token (audited disclosure)")
    identity.add_argument("token", help="operations person token, e.g. an alert's key_token or subject")
    identity.add_argument("--case", required=True, help="the alert or case it is for (recorded in the audit)")
    identity.set_defaults(func=_cmd_identity)

    breach = sub.add_parser("breach-report", help="data classes and people affected by a breach in a time window")
    breach.add_argument("--from", dest="start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    breach.add_argument("--to", dest="end", type=date.fromisoformat, required=True, help="last day, YYYY-MM-DD")
    breach.add_argument("--out", type=Path, default=None, help="also write the report as JSON")
    breach.set_defaults(func=_cmd_breach_report)

    dashboards = sub.add_parser("dashboards", help="Grafana dashboards: build their JSON, or render a local preview")
    dashboards.add_argument("action", choices=["build", "render"])
    dashboards.add_argument("--check", action="store_true", help="build: fail if the JSON differs from the code")
    dashboards.add_argument("--out", type=Path, default=None, help="render: directory (default: state dir)")
    dashboards.add_argument("--from", dest="start", default=None, help="render: ISO start (default: 7 days ago)")
    dashboards.add_argument("--to", dest="end", default=None, help="render: ISO end (default: now)")
    dashboards.add_argument("--screenshot", action="store_true", help="render: also a PNG of the page (Chromium)")
    dashboards.set_defaults(func=_cmd_dashboards)

    demo = sub.add_parser("demo", help="the main job: stack, worker, simulated traffic, regional summary")
    demo.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    demo.add_argument("--duration", type=float, default=120.0, help="seconds of traffic (default 120)")
    demo.add_argument("--landings", type=int, default=4)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_demo)

    wl = sub.add_parser("watchlist", help="lost/stolen documents, notices, national alerts: load, remove, show",
                        description="A list file is CSV with the header issuing_state,number,reason,valid_from,"
                                    "valid_until,source (removal: issuing_state,number). The whole file is checked "
                                    "first; one bad row and nothing is published.")
    wl.add_argument("action", choices=["load", "remove", "show"])
    wl.add_argument("file", nargs="?", type=Path, default=None)
    wl.add_argument("--list", default=None, help="lost_stolen, notices or national_alerts")
    wl.add_argument("--replace", action="store_true", help="load: the file is the whole list; remove the rest")
    wl.add_argument("--document", default=None, help="remove: one STATE:NUMBER, or - to read it from stdin")
    wl.set_defaults(func=_cmd_watchlist)

    from infra.kafka import CLI_TOOLS

    dedup = sub.add_parser("dedup", help="biometric dedup: calibrate thresholds from the gallery, show them, "
                                         "monitor accuracy against them")
    dedup.add_argument("action", choices=["calibrate", "thresholds", "monitor"])
    dedup.add_argument("--model", action="append", help="calibrate only this template model (repeatable)")
    dedup.add_argument("--fpir", type=float, default=0.003, help="1:N target false-positive identification rate")
    dedup.add_argument("--fmr", type=float, default=1e-4, help="1:1 target false-match rate")
    dedup.add_argument("--another-face-rate", type=float, default=1e-4,
                       help="target share of genuine returns judged another face")
    dedup.add_argument("--gallery-size", type=int, default=None,
                       help="calibrate 1:N for this many subjects (default: the gallery's size now)")
    dedup.add_argument("--days", type=float, default=7.0, help="monitor: the period to look at")
    dedup.set_defaults(func=_cmd_dedup)

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
