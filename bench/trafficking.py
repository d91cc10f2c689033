"""Trafficking rules against the simulator's ground truth, and the rule agent's throughput.

``python -m bench.trafficking --crossings 100000 --days 7`` simulates regional
traffic with planted patterns (well under 1 % of travellers), turns it into the
facts the pipeline makes (pseudonymised exactly as ingest does), runs the rule
engine in event order and prints, per rule: alerts, alerts per 10,000 crossings
(the officers' review load), precision and recall against the planted pattern
instances. Precision is the share of a rule's alerts whose evidence lies in any
planted pattern (an alert pointing at real trafficking is right even if another
rule was meant to find it); "on target" the share in the rule's own target
patterns; recall is over the rule's target instances that the end of the
stream did not cut short. Biometric subjects come from the ground
truth (a perfect dedup), so the rules are measured on their own; dedup's own
error rates are in ``bench.dedup_accuracy``.

Then it times the agent's per-fact work without Kafka: Avro-decode the fact,
read the key's state from JSON, evaluate, write the state back to JSON.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from agents.anomaly import AnomalyModel, evaluate_batch, train, training_rows
from agents.pseudonymise import Tokeniser
from agents.trafficking.config import HOUR_MS, RuleSet, load_rules
from agents.trafficking.engine import Alert, latest
from agents.trafficking.facts import Fact
from agents.trafficking.state import KeyState
from bench import print_table
from streams.sim.files import simulated_facts
from streams.sim.simulator import Simulator
from streams.sim.world import Truth

# The planted scenarios (and variants) each rule is meant to find; recall is measured against these.
TARGETS: dict[str, tuple[str, ...]] = {
    "escort_fanout": ("escort_fanout", "shuttling"),  # a shuttling runner is a fan-out too
    "sponsor_fanout": ("non_procedural_worker/work",),
    "minor_unrelated_adult": ("minor_unrelated_adult",),
    "unaccompanied_minor": (),
    "shuttling": ("shuttling",),
    "document_multiple_subjects": ("document_reuse",),
    "impossible_travel": ("document_reuse",),
    "subject_multiple_documents": ("multiple_identity",),
    "route.riau_singapore_cambodia": ("scam_route",),
    "route.middle_east_transit": ("middle_east_transit",),
    "non_procedural_work_exit": ("non_procedural_worker/work",),
    "tourist_exit_recruitment_corridor": ("non_procedural_worker/tourist",),
    "maritime_landing": ("boat_landing",),
    "repeat_vessel": (),
    "anomaly_score": ("",),  # unsupervised: any planted pattern
}


def scenario_label(scenario: dict[str, Any]) -> str:
    """``kind`` or ``kind/variant``."""
    return f"{scenario['scenario']}/{scenario['variant']}" if "variant" in scenario else scenario["scenario"]


def score(alerts: dict[str, Alert], truth: Truth, rules: RuleSet) -> list[dict[str, Any]]:
    """Per rule: alerts, load per 10k crossings, precision and recall against its target scenarios."""
    by_event: dict[str, set[int]] = defaultdict(set)
    for n, s in enumerate(truth.scenarios):
        for event in s["event_ids"]:
            by_event[event].add(n)
    instances = {n: scenario_label(s) for n, s in enumerate(truth.scenarios) if s["event_ids"]}
    complete = {n for n, s in enumerate(truth.scenarios) if s["event_ids"] and s.get("complete", True)}
    rows = []
    rule_ids = [*rules.rules, *(r.rule_id for r in rules.routes)]
    for rule_id in rule_ids:
        mine = [a for a in alerts.values() if a.rule_id == rule_id]
        targets = TARGETS.get(rule_id, ())
        hit: set[int] = set()
        correct = planted = 0
        for a in mine:
            touched = {n for e in a.evidence_event_ids for n in by_event.get(e, ())}
            on_target = {n for n in touched if any(instances.get(n, "").startswith(t) for t in targets)}
            hit |= on_target
            correct += bool(on_target)
            planted += bool(touched)
        wanted = [n for n, label in instances.items() if n in complete and any(label.startswith(t) for t in targets)]
        rows.append({
            "rule": rule_id, "alerts": len(mine), "per 10k crossings": 10_000 * len(mine) / max(1, truth.crossings),
            "targets": ",".join(targets) or "-", "planted": len(wanted),
            "precision": planted / len(mine) if mine else float("nan"),
            "on target": correct / len(mine) if mine else float("nan"),
            "recall": len([n for n in wanted if n in hit]) / len(wanted) if wanted else float("nan"),
        })
    return rows


def pattern_recall(alerts: dict[str, Alert], truth: Truth) -> list[dict[str, Any]]:
    """Per planted scenario kind: instances found by at least one alert of any rule."""
    alerted = {e for a in alerts.values() for e in a.evidence_event_ids}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in truth.scenarios:
        if not s["event_ids"] or not s.get("complete", True):
            continue
        label = scenario_label(s)
        counts[label][0] += 1
        counts[label][1] += bool(alerted & set(s["event_ids"]))
    return [{"planted scenario": k, "instances": v[0], "found by any rule": v[1], "recall": v[1] / v[0]}
            for k, v in sorted(counts.items())]


def evaluate_all(facts: list[Fact], rules: RuleSet, model: AnomalyModel | None, batch: int = 1000,
                 as_bytes: bool = False) -> tuple[list[Alert], int]:
    """The agent's work over all facts in batches: states in a dict (as JSON bytes, like the changelog, if asked).

    Returns the alerts and the bytes the states take (0 unless ``as_bytes``).
    """
    table: dict[str, Any] = {}
    if as_bytes:
        def load(key: str) -> KeyState:
            return KeyState.from_bytes(table.get(key))

        def store(key: str, state: KeyState) -> None:
            table[key] = state.to_bytes()
    else:
        def load(key: str) -> KeyState:
            return table.get(key) or KeyState()

        def store(key: str, state: KeyState) -> None:
            table[key] = state
    alerts: list[Alert] = []
    for i in range(0, len(facts), batch):
        alerts += evaluate_batch(facts[i:i + batch], load, store, rules, model)
    return alerts, sum(len(v) for v in table.values()) if as_bytes else 0


def arrivals(facts: list[Fact], rules: RuleSet, seed: int) -> dict[str, list[Fact]]:
    """The same facts in the orders a stream brings them: in event order; every dedup fact an hour behind its
    document's crossings (dedup runs after ingest); each fact delayed at random up to the allowed lateness."""
    rng = random.Random(seed)
    return {"event order": facts,
            "dedup facts 1 h behind": sorted(facts, key=lambda f: f.ms + (HOUR_MS if f.role in (
                "BIOMETRIC", "DOCUMENT") else 0)),
            "shuffled within lateness": sorted(facts, key=lambda f: f.ms + rng.uniform(0, rules.lateness_ms))}


def throughput(facts: list[Fact], rules: RuleSet, model: AnomalyModel | None,
               arrival: str = "event order") -> dict[str, Any]:
    """What the agent does per fact, minus Kafka: decode, state from JSON, evaluate, state to JSON, batch scoring."""
    encoded = [f.to_bytes() for f in facts]
    started = time.perf_counter()
    decoded = [Fact.from_bytes(raw) for raw in encoded]
    alerts, size = evaluate_all(decoded, rules, model, as_bytes=True)
    seconds = time.perf_counter() - started
    return {"facts": len(facts), "arrival": arrival, "anomaly model": model.version if model else "none",
            "seconds": seconds,
            "facts/s": len(facts) / seconds, "state MB": size / 1e6,
            "alert updates": len(alerts)}


def main(argv: list[str] | None = None) -> None:
    """Simulate, evaluate, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crossings", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--landings", type=int, default=30)
    parser.add_argument("--population", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    rules = load_rules()
    tok = Tokeniser(b"bench-only-key-not-a-secret-0001", "bench")
    sim = Simulator(seed=args.seed, dim=8, days=args.days, population=args.population,
                    end=datetime(2026, 11, 1, tzinfo=UTC))
    started = time.perf_counter()
    facts = list(simulated_facts(sim, args.crossings, args.landings, tok))
    truth = sim.truth
    print(f"simulated {truth.crossings:,} crossings, {truth.landings} landings, {truth.persons:,} people over "
          f"{args.days:g} days ({len(facts):,} facts, {time.perf_counter() - started:.1f}s); rules {rules.version}")
    travellers = {f.traveller for f in facts if f.role == "SELF"}
    planted = sum(len(s["subjects"]) for s in truth.scenarios if s["scenario"] != "boat_landing")
    print(f"planted: {sum(1 for s in truth.scenarios)} pattern instances involving {planted} of {len(travellers):,} "
          f"travellers ({100 * planted / max(1, len(travellers)):.2f} %)")
    started = time.perf_counter()
    trainer = Simulator(seed=args.seed + 1000, dim=8, days=args.days, population=args.population,
                        end=datetime(2026, 10, 1, tzinfo=UTC))  # another month, another seed: no test data in training
    x = training_rows(simulated_facts(trainer, args.crossings, args.landings, tok), rules)
    model = train(x, rules.anomaly_score.params.alert_rate, seed=args.seed)
    print(f"anomaly model {model.version}: {len(x):,} training windows, {time.perf_counter() - started:.1f}s")
    alerts, _ = evaluate_all(facts, rules, model)
    current = latest(alerts)
    rows = score(current, truth, rules)
    print_table(rows, floats={"per 10k crossings": "{:.2f}", "precision": "{:.3f}", "on target": "{:.3f}",
                              "recall": "{:.3f}"})
    total = len(current)
    print(f"\nall rules: {total} alerts = {10_000 * total / max(1, truth.crossings):.1f} per 10,000 crossings "
          f"({len(alerts)} updates as evidence grew)\n")
    print_table(pattern_recall(current, truth), floats={"recall": "{:.3f}"})
    print()
    orders = arrivals(facts, rules, args.seed)
    print_table([*(throughput(order, rules, None, name) for name, order in orders.items()),
                 throughput(facts, rules, model)],
                floats={"seconds": "{:.1f}", "facts/s": "{:,.0f}", "state MB": "{:.1f}"})
    per_crossing = len(facts) / max(1, truth.crossings)
    print(f"({per_crossing:.2f} facts per crossing on average)")


if __name__ == "__main__":
    main()
