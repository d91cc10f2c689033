"""``lintas dedup|trafficking|dashboards|schemas``: thresholds, models, dashboards and contracts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.common import settings_of
from streams.settings import Settings


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

    from streams.clients import clickhouse_client

    settings = settings_of(args)
    out = args.out or settings.state_dir / "dashboards"
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC) if args.start else None
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC) if args.end else None
    drawn = render(clickhouse_client(settings, readonly=True), out, start, end)
    width = max(len(d.panel) for d in drawn)
    for d in drawn:
        print(f"{d.dashboard:28} {d.panel:{width}} {d.kind:10} {d.rows:6} rows  {'; '.join(d.errors) or 'ok'}")
    page = out / "index.html"
    print(f"preview: {page}")
    if args.screenshot:
        from dashboards.browser import screenshot

        print(f"screenshot: {screenshot(page, out / 'preview.png')}")
    return 1 if any(e != ALL_SUPPRESSED for d in drawn for e in d.errors) else 0


def _cmd_dedup(args: argparse.Namespace) -> int:
    from agents.calibration import Targets
    from streams.ops import dedup

    settings = settings_of(args)
    if args.action == "thresholds":
        thresholds = dedup.current(settings)
        source = settings.dedup_thresholds_path if settings.dedup_thresholds_path.is_file() else "packaged defaults"
        print(f"dedup thresholds {thresholds.version} ({source})")
        _thresholds_table([thresholds.default, *thresholds.models.values()])
        return 0
    if args.action == "calibrate":
        targets = Targets(fpir=args.fpir, fmr=args.fmr, another_face_rate=args.another_face_rate)
        thresholds, notes = dedup.calibrate_gallery(settings, targets, args.model or None, args.gallery_size)
        print(f"wrote dedup thresholds {thresholds.version} to {settings.dedup_thresholds_path}; running workers "
              "take them up at their next batch")
        _thresholds_table(list(thresholds.models.values()))
        for note in notes:
            print(note)
        return 0
    rows = dedup.monitor(settings, args.days)
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
    settings = settings_of(args)
    train_anomaly_model(settings, args.crossings, args.days, args.population, args.seed,
                         args.out or settings.anomaly_model_path)
    return 0


def train_anomaly_model(settings: Settings, crossings: int, days: float, population: int, seed: int,
                         out: Path) -> None:
    """Train the anomaly model on simulated facts (synthetic data only) and save it to ``out``."""
    import secrets
    from datetime import UTC, datetime

    from agents.anomaly import FEATURES, save_model, train, training_rows
    from agents.pseudonymise import Tokeniser
    from agents.trafficking.config import load_rules
    from streams.sim.files import simulated_facts
    from streams.sim.simulator import Simulator

    rules = load_rules(settings.trafficking_rules)
    # Tokens only need to be consistent within the training run: a throwaway key, never the pipeline's.
    tok = Tokeniser(secrets.token_bytes(32), "training")
    sim = Simulator(seed=seed, dim=8, days=days, population=population,
                    end=datetime.now(UTC).replace(minute=0, second=0))
    x = training_rows(simulated_facts(sim, crossings, 10, tok), rules)
    model = train(x, rules.anomaly_score.params.alert_rate, seed=seed)
    path = save_model(model, out)
    print(f"trained anomaly model {model.version} on {len(x):,} document windows ({len(FEATURES)} features, "
          f"{crossings:,} simulated crossings); alerts below score {model.threshold:.4f}; saved {path}")


def register(sub: Any) -> None:
    """Add this group's commands to the ``lintas`` parser."""
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards: build their JSON, or render a local preview")
    dashboards.add_argument("action", choices=["build", "render"])
    dashboards.add_argument("--check", action="store_true", help="build: fail if the JSON differs from the code")
    dashboards.add_argument("--out", type=Path, default=None, help="render: directory (default: state dir)")
    dashboards.add_argument("--from", dest="start", default=None, help="render: ISO start (default: 7 days ago)")
    dashboards.add_argument("--to", dest="end", default=None, help="render: ISO end (default: now)")
    dashboards.add_argument("--screenshot", action="store_true", help="render: also a PNG of the page (Chromium)")
    dashboards.set_defaults(func=_cmd_dashboards)
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
