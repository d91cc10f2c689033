"""Dedup decisions and the FNIR-at-FPIR metric, with literal numbers."""

from __future__ import annotations

import numpy as np
import pytest

from agents.dedup import Outcome, Thresholds, decide, fnir_at_fpir

T = Thresholds("t-2026-11-1", red=0.6, yellow=0.45)


@pytest.mark.parametrize(
    ("score", "subject", "same_identity", "outcome"),
    [
        (0.80, "s1", True, Outcome.KNOWN),
        (0.80, "s1", False, Outcome.LINK_RED),
        (0.60, "s1", False, Outcome.LINK_RED),
        (0.50, "s1", False, Outcome.LINK_YELLOW),
        (0.45, "s1", False, Outcome.LINK_YELLOW),
        (0.40, "s1", False, Outcome.ENROL),
        (0.40, "s1", True, Outcome.ENROL),
        (0.99, None, False, Outcome.ENROL),
    ],
)
def test_decisions(score, subject, same_identity, outcome) -> None:
    d = decide(score, subject, same_identity, T)
    assert d.outcome == outcome and d.thresholds_version == "t-2026-11-1" and d.score == score


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        Thresholds("bad", red=0.4, yellow=0.5)


def test_fnir_at_fpir_literal() -> None:
    nonmated = np.array([0.1] * 997 + [0.5, 0.6, 0.7])  # 3 of 1000 high: FPIR 0.003 allows exactly those
    mated = np.array([0.9, 0.8, 0.55, 0.3])
    correct = np.array([True, True, True, False])
    fnir, threshold = fnir_at_fpir(mated, correct, nonmated, 0.003)
    assert 0.1 < threshold <= 0.5 + 1e-9
    assert fnir == pytest.approx(0.25)  # only the wrong rank-1 is a miss
    fnir_strict, t_strict = fnir_at_fpir(mated, correct, nonmated, 0.0)
    assert t_strict > 0.7 and fnir_strict == pytest.approx(0.5)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_shard_enrols_once_knows_returning_and_links_aliases() -> None:
    from agents.dedup import Probe, Shard, Visit
    from agents.gallery import ExactIndex

    rng = np.random.default_rng(3)
    faces = [_unit(rng.standard_normal(64)) for _ in range(3)]
    n = iter(range(100))

    def probe(face: np.ndarray, identity: str) -> Visit:
        return Visit(Probe(f"p{next(n)}", _unit(0.8 * face + 0.6 * _unit(rng.standard_normal(64))), identity))

    shard = Shard(0, ExactIndex(64))
    subject = lambda probe_id: "S-" + probe_id  # noqa: E731
    # One batch: person 0 twice under the same document, person 1 once.
    first = shard.visit([probe(faces[0], "doc-a"), probe(faces[0], "doc-a"), probe(faces[1], "doc-b")], T, subject)
    assert [r.decision.outcome for r in first] == [Outcome.ENROL, Outcome.KNOWN, Outcome.ENROL]
    assert first[1].decision.subject == first[0].decision.subject == "S-p0"  # not enrolled twice
    assert [r.enrolled for r in first] == [True, False, True] and len(shard) == 2
    later = shard.visit([probe(faces[0], "doc-a"), probe(faces[1], "doc-z"), probe(faces[2], "doc-c")], T, subject)
    assert later[0].decision.outcome == Outcome.KNOWN and later[0].decision.subject == "S-p0"
    assert later[1].decision.outcome in (Outcome.LINK_RED, Outcome.LINK_YELLOW)  # person 1 under another document
    assert later[1].decision.subject == "S-p2" and later[1].alias.subject == "S-p2"
    assert later[2].decision.outcome == Outcome.ENROL and len(shard) == 3
