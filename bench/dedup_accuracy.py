"""Dedup accuracy on the simulator's ground truth: FNIR at FPIR = 0.003 and the red/yellow links.

    .venv/bin/python -m bench.dedup_accuracy [--events 30000] [--index sketch|exact]

Every capture is identified in time order against the gallery built so far
(batches of 500), as the agent does. A search is *mated* when its true subject is
already enrolled, *non-mated* otherwise (NIST FRTE 1:N terms). Links are right when
the linked subject is truly the same person under another identity.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import numpy as np

from agents.dedup import Outcome, Probe, Shard, Thresholds, Visit, fnir_at_fpir
from agents.gallery import ExactIndex, SketchIndex, check_template
from agents.pseudonymise import Tokeniser, document_token
from streams.simulator import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--index", choices=["sketch", "exact"], default="sketch")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--red", type=float, default=0.45)
    parser.add_argument("--yellow", type=float, default=0.36)
    args = parser.parse_args()
    THRESHOLDS = Thresholds(f"bench-red{args.red}-yellow{args.yellow}", red=args.red, yellow=args.yellow)  # noqa: N806
    dim = 512
    sim = Simulator(seed=args.seed, dim=dim, days=3, end=datetime(2026, 11, 20, tzinfo=UTC), population=8000)
    events = [r for kind, r in sim.events(args.events, landings=0) if kind == "crossing" and r["biometric"]]
    truth = sim.truth.event_subject
    tok = Tokeniser(b"bench-only-key", "bench")
    shard = Shard(0, ExactIndex(dim) if args.index == "exact" else SketchIndex(dim))
    subject_truth: dict[str, int] = {}
    enrolled_truth: set[int] = set()
    mated_scores, mated_correct, nonmated_scores = [], [], []
    links = {Outcome.LINK_RED: [0, 0], Outcome.LINK_YELLOW: [0, 0]}
    for start in range(0, len(events), 500):
        batch = events[start:start + 500]
        probes = []
        for r in batch:
            c, d = r["biometric"], r["traveller"]["document"]
            probes.append(Visit(Probe(str(r["event_id"]),
                                      check_template(c["template"], c["dimension"], c["quality"], dim, 0.0),
                                      document_token(tok, d["issuing_state"], d["number"]))))
        seen_in_batch: set[int] = set()
        for r, result in zip(batch, shard.visit(probes, THRESHOLDS, lambda probe_id: "S" + probe_id), strict=True):
            decision = result.decision
            assert decision is not None
            subject = truth[r["event_id"]]
            mated = subject in enrolled_truth or subject in seen_in_batch
            rank1 = decision.subject if decision.outcome is not Outcome.ENROL else (
                result.candidates[0].subject if result.candidates else None)
            rank1_truth = subject_truth.get(rank1) if rank1 else None
            if decision.outcome is Outcome.ENROL:
                assert decision.subject is not None
                subject_truth[decision.subject] = subject
                seen_in_batch.add(subject)
            if mated:
                mated_scores.append(decision.score)
                mated_correct.append(rank1_truth == subject)
            else:
                nonmated_scores.append(decision.score)
            if decision.outcome in links:
                links[decision.outcome][0 if rank1_truth == subject else 1] += 1
        enrolled_truth |= seen_in_batch
    fnir, threshold = fnir_at_fpir(np.array(mated_scores), np.array(mated_correct), np.array(nonmated_scores), 0.003)
    planted = sum(1 for s in sim.truth.scenarios if s["scenario"] == "multiple_identity")
    print(f"\nDedup accuracy, {len(events):,} captures from {args.events:,} simulated crossings ({args.index} index)")
    print(f"{'mated searches':<34} {len(mated_scores):>8,}")
    print(f"{'non-mated searches':<34} {len(nonmated_scores):>8,}")
    print(f"{'FNIR at FPIR = 0.003':<34} {fnir:>8.4f}   (threshold {threshold:.3f})")
    print(f"{'subjects enrolled':<34} {len(subject_truth):>8,}   (true subjects seen: {len(enrolled_truth):,})")
    print(f"{'planted multiple-identity persons':<34} {planted:>8}")
    print(f"{'red links right / wrong':<34} {links[Outcome.LINK_RED][0]:>4} / {links[Outcome.LINK_RED][1]}"
          f"   (red >= {THRESHOLDS.red})")
    print(f"{'yellow links right / wrong':<34} {links[Outcome.LINK_YELLOW][0]:>4} / {links[Outcome.LINK_YELLOW][1]}"
          f"   ({THRESHOLDS.yellow} <= yellow < {THRESHOLDS.red})")


if __name__ == "__main__":
    main()
