"""Cases for officers' review against the simulator's ground truth, across traffic mixes, at the review budget.

``python -m bench.review`` simulates a *calibration* mix (its own seed and month), sets the
case threshold there so cases stay within the budget (``--budget``, cases per 10,000 crossings;
:func:`agents.cases.calibrate`), then measures that threshold on other mixes it never saw, each
with its own seed and base rates (purposes, posts, the share of land-border tourists, the rate of
planted patterns, one below 1 instance per 10,000 crossings). Per mix: cases and false cases
(no planted pattern in any of their evidence) per 10,000 crossings, and recall per planted
pattern (an instance is found when an open case's evidence holds any of its events).

Then simulated officers decide every case from the ground truth (refer a planted one, dismiss a
false one) and the precision per rule the Trafficking alerts dashboard would show is printed,
computed by the ``rule_precision`` view of the migrations in an in-process ClickHouse (chDB).

``--write-policy PATH`` writes the calibrated policy file (``agents/review_policy.toml`` ships the
result of the default run).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.cases import CasePolicy, Indicator, assess, calibrate, case_key, load_policy
from agents.pseudonymise import Tokeniser
from agents.trafficking.config import load_rules
from agents.trafficking.engine import latest
from bench import print_table
from bench.trafficking import evaluate_all, scenario_label
from streams.sim.files import simulated_facts
from streams.sim.simulator import Simulator
from streams.sim.world import Mix, Truth

LAND_POSTS = ("ID-ETK", "MY-TBD", "ID-ARU", "MY-BRH", "ID-NNK", "MY-TWU")
HIGH_PATTERNS = ("minor_unrelated_adult", "multiple_identity", "document_reuse", "scam_route", "boat_landing")


@dataclass(frozen=True)
class Setting:
    """One simulated world: its seed, month, size and base rates."""

    name: str
    seed: int
    crossings: int
    mix: Mix
    end: datetime
    landings: int | None = None  # default: one per 3,000 crossings, a third of them large (planted)


SETTINGS = {
    # realistic: about one planted instance per 10,000 crossings (the default simulator plants ten times that)
    "calibration": Setting("calibration", 101, 200_000, Mix(planted_factor=0.1), datetime(2026, 9, 1, tzinfo=UTC)),
    "default, other seed": Setting("default, other seed", 202, 100_000, Mix(), datetime(2026, 11, 1, tzinfo=UTC)),
    "land-border tourists": Setting(
        "land-border tourists", 303, 100_000,
        Mix(corridor_weights={p: 6.0 for p in LAND_POSTS},
            purposes={"TOURISM": 80.0, "BUSINESS": 8.0, "FAMILY_VISIT": 8.0, "RETURNING_RESIDENT": 3.0,
                      "STUDY": 1.0}),
        datetime(2026, 11, 1, tzinfo=UTC)),
    "rare planted (< 1 per 10k)": Setting(
        "rare planted (< 1 per 10k)", 404, 200_000, Mix(planted_factor=0.05), datetime(2026, 10, 1, tzinfo=UTC),
        landings=6),
    "busy: families, groups, workers": Setting(
        "busy: families, groups, workers", 505, 100_000,
        Mix(family_share=0.12, tour_group_share=0.03, placed_worker_share=0.04, planted_factor=2.0,
            purposes={"TOURISM": 40.0, "BUSINESS": 25.0, "FAMILY_VISIT": 20.0, "RETURNING_RESIDENT": 10.0,
                      "STUDY": 5.0}),
        datetime(2026, 8, 1, tzinfo=UTC)),
}


@dataclass
class World:
    """A simulated setting run through the rules: its indicators by case key, and the truth."""

    setting: Setting
    truth: Truth
    indicators: dict[str, list[Indicator]]
    codes: dict[str, tuple[str, ...]]  # alert id → its indicator codes (UNODC, ILO, IOM, Bali Process)
    seconds: float


def simulate(setting: Setting, days: float, population: int) -> World:
    """Simulate a setting and run the trafficking rules over it (no anomaly model: LOW, it opens nothing alone)."""
    started = time.perf_counter()
    rules = load_rules()
    tok = Tokeniser(b"bench-only-key-not-a-secret-0001", "bench")
    sim = Simulator(seed=setting.seed, dim=8, days=days, population=population, end=setting.end, mix=setting.mix)
    landings = setting.landings if setting.landings is not None else max(3, setting.crossings // 3000)
    facts = list(simulated_facts(sim, setting.crossings, landings, tok))
    alerts, _ = evaluate_all(facts, rules, None)
    now = datetime.now(UTC)
    indicators: dict[str, list[Indicator]] = defaultdict(list)
    codes = {}
    for alert in latest(alerts).values():
        indicators[case_key(alert.key_kind, alert.key_token)].append(Indicator.of_row(alert.row("bench", now)))
        codes[alert.alert_id] = alert.indicators
    return World(setting, sim.truth, dict(indicators), codes, time.perf_counter() - started)


def planted_events(truth: Truth) -> dict[str, set[int]]:
    """Event id → the planted instances it belongs to."""
    by_event: dict[str, set[int]] = defaultdict(set)
    for n, s in enumerate(truth.scenarios):
        for event in s["event_ids"]:
            by_event[event].add(n)
    return by_event


def measure(world: World, policy: CasePolicy) -> tuple[dict[str, Any], dict[str, tuple[int, int]], list[dict]]:
    """Cases per 10k, false cases per 10k, recall per pattern; and simulated officers' decisions."""
    truth, per10k = world.truth, 10_000 / max(1, world.truth.crossings)
    by_event = planted_events(truth)
    found: set[int] = set()
    cases = false = 0
    decisions = []
    for key, inds in world.indicators.items():
        verdict = assess(inds, policy)
        if not verdict.opens:
            continue
        cases += 1
        touched = {n for i in inds if i.active for e in i.evidence_event_ids for n in by_event.get(e, ())}
        found |= touched
        false += not touched
        ids = [i.alert_id for i in inds if i.active]
        decisions.append({"case_id": key, "rules": list(verdict.rules), "indicator_ids": ids,
                          "codes": {a: world.codes[a] for a in ids},
                          "status_after": "REFERRED" if touched else "DISMISSED"})
    recall: dict[str, tuple[int, int]] = {}
    for n, s in enumerate(truth.scenarios):
        if s["event_ids"] and s.get("complete", True):
            label = scenario_label(s)
            hit, total = recall.get(label, (0, 0))
            recall[label] = (hit + (n in found), total + 1)
    planted = sum(t for _, t in recall.values())
    high = [recall[k] for k in recall if k in HIGH_PATTERNS]
    row = {
        "mix": world.setting.name, "crossings": truth.crossings, "planted per 10k": planted * per10k,
        "cases": cases, "cases per 10k": cases * per10k, "false cases per 10k": false * per10k,
        "recall HIGH": sum(h for h, _ in high) / max(1, sum(t for _, t in high)),
        "recall all": sum(h for h, _ in recall.values()) / max(1, planted),
    }
    return row, recall, decisions


def dashboard_precision(decisions: list[dict]) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The ``rule_precision`` and ``indicator_precision`` views over simulated officers' decisions, in chDB.

    The migrations' own SQL: the alerts and case tables, then the decisions and the indicators they saw.
    """
    from chdb import session as chs

    from streams.sql import split_statements

    migrations = Path(__file__).resolve().parent.parent / "streams" / "ops" / "migrations"
    with chs.Session() as db:
        db.query("CREATE DATABASE IF NOT EXISTS bench; USE bench")
        for name in ("0004_alerts.sql", "0008_cases.sql"):
            for statement in split_statements((migrations / name).read_text()):
                db.query(statement)
        rows, alerts = [], {}
        for n, d in enumerate(decisions):
            rules = "[" + ",".join(f"'{r}'" for r in d["rules"]) + "]"
            ids = "[" + ",".join(f"'{a}'" for a in d["indicator_ids"]) + "]"
            rows.append(f"('D{n}', 'C{n}', 'X', 'OPEN', '{d['status_after']}', '', '', 'officer', "
                        f"'reviewer', '', {rules}, {ids}, 'MEDIUM', 0, now64(3), now64(3), 'bench')")
            alerts.update(d["codes"])
        for i in range(0, len(rows), 2000):
            db.query("INSERT INTO case_decisions VALUES " + ",".join(rows[i:i + 2000]))
        values = [f"('{a}', [{','.join(repr(c) for c in codes)}], now64(3), 1)" for a, codes in alerts.items()]
        for i in range(0, len(values), 2000):
            db.query("INSERT INTO alerts (alert_id, indicators, last_seen, version) VALUES "
                     + ",".join(values[i:i + 2000]))

        def table(sql: str) -> list[tuple[str, ...]]:
            return [tuple(line.split("\t")) for line in str(db.query(sql, "TabSeparated")).strip().splitlines()]

        return (table("SELECT rule_id, decided, upheld, dismissed, round(precision, 3) FROM rule_precision "
                      "ORDER BY rule_id"),
                table("SELECT indicator, decided, upheld, dismissed, round(precision, 3) FROM indicator_precision "
                      "ORDER BY indicator"))


def write_policy(policy: CasePolicy, path: Path) -> None:
    """The policy as a TOML file (what ships as ``agents/review_policy.toml``)."""
    weights = "\n".join(f"{k} = {v}" for k, v in policy.severity_weights.items())
    rule_weights = "\n".join(f'"{k}" = {v}' for k, v in sorted(policy.rule_weights.items()))
    path.write_text(f"""# How indicators combine into cases for officers' review (agents/cases.py).
# Versioned like the rules: a case row records the policy version it was assessed under.
#
# Each distinct rule on a key counts once, with the weight of its highest severity (or its own weight
# below). HIGH always opens a case; LOW alone never does; otherwise a case opens at `threshold`,
# calibrated to the review capacity by `python -m bench.review --write-policy` on the calibration mix
# (its own seed and month), and measured by the same command on mixes it never saw.
version = "{policy.version}"
threshold = {policy.threshold}
budget_per_10k = {policy.budget_per_10k}
calibrated_on = "{policy.calibrated_on}"
always_open = [{", ".join(f'"{s}"' for s in sorted(policy.always_open))}]

[severity_weights]
{weights}

[rule_weights]
{rule_weights}
""")


def main(argv: list[str] | None = None) -> None:
    """Calibrate on one mix, measure on the others, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=10.0, help="cases per 10,000 crossings")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--population", type=int, default=40_000)
    parser.add_argument("--scale", type=float, default=1.0, help="crossings per mix times this")
    parser.add_argument("--write-policy", type=Path, default=None)
    args = parser.parse_args(argv)
    base = load_policy()
    worlds = []
    for setting in SETTINGS.values():
        world = simulate(replace(setting, crossings=int(setting.crossings * args.scale)), args.days, args.population)
        print(f"{setting.name}: {world.truth.crossings:,} crossings, {sum(map(len, world.indicators.values())):,} "
              f"indicators on {len(world.indicators):,} keys ({world.seconds:.0f} s)")
        worlds.append(world)
    calibration = worlds[0]
    scores = [(v.score, v.severity) for v in (assess(i, base) for i in calibration.indicators.values())]
    threshold = calibrate(scores, calibration.truth.crossings, args.budget, base)
    policy = base.model_copy(update={
        "threshold": threshold, "budget_per_10k": args.budget,
        "calibrated_on": f"bench.review calibration mix, seed {calibration.setting.seed}, "
                         f"{calibration.truth.crossings} crossings"})
    print(f"\nthreshold {threshold:g} for {args.budget:g} cases per 10,000 crossings (calibration mix); "
          f"weights {dict(policy.severity_weights)}, HIGH always opens, LOW alone never\n")
    rows, recalls, decisions = [], {}, []
    for world in worlds:
        row, recall, decided = measure(world, policy)
        rows.append(row)
        recalls[world.setting.name] = recall
        if world is not calibration:
            decisions += decided
    print_table(rows, floats={"planted per 10k": "{:.2f}", "cases per 10k": "{:.2f}",
                              "false cases per 10k": "{:.2f}", "recall HIGH": "{:.3f}", "recall all": "{:.3f}"})
    patterns = sorted({p for r in recalls.values() for p in r})
    print("\nrecall per planted pattern (found / complete instances) at that threshold\n")
    print_table([{"pattern": p, **{name: f"{r[p][0]}/{r[p][1]}" if p in r else "-" for name, r in recalls.items()}}
                 for p in patterns])
    print("\nprecision per rule as the dashboard would show it, simulated officers deciding every case of the "
          "measured mixes from the ground truth (rule_precision view, chDB)\n")
    by_rule, by_indicator = dashboard_precision(decisions)
    print_table([{"rule": r[0], "decided": r[1], "upheld": r[2], "dismissed": r[3], "precision": r[4]}
                 for r in by_rule])
    print("\nper indicator code (indicator_precision view)\n")
    print_table([{"indicator": r[0], "decided": r[1], "upheld": r[2], "dismissed": r[3], "precision": r[4]}
                 for r in by_indicator])
    if args.write_policy:
        write_policy(policy, args.write_policy)
        print(f"\nwrote {args.write_policy}")


if __name__ == "__main__":
    main()
