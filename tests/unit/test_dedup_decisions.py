"""Dedup decisions and the FNIR-at-FPIR metric, with literal numbers."""

from __future__ import annotations

import numpy as np
import pytest

from agents.dedup import Outcome, Thresholds, decide, fnir_at_fpir

T = Thresholds("t-2026-11-1", red=0.6, yellow=0.45)


@pytest.mark.parametrize(
    ("score", "subject", "identities", "identity", "outcome"),
    [
        (0.80, "s1", frozenset({"doc-a"}), "doc-a", Outcome.KNOWN),
        (0.80, "s1", frozenset({"doc-a"}), "doc-b", Outcome.LINK_RED),
        (0.50, "s1", frozenset({"doc-a"}), "doc-b", Outcome.LINK_YELLOW),
        (0.40, "s1", frozenset({"doc-a"}), "doc-b", Outcome.ENROL),
        (0.99, None, frozenset(), "doc-b", Outcome.ENROL),
    ],
)
def test_decisions(score, subject, identities, identity, outcome) -> None:
    d = decide(score, subject, identities, identity, T)
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
