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


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_gallery_enrols_once_knows_returning_and_links_aliases() -> None:
    import itertools

    from agents.dedup import Gallery, Probe
    from agents.gallery import ExactIndex

    rng = np.random.default_rng(3)
    faces = [_unit(rng.standard_normal(64)) for _ in range(3)]

    def capture(face: np.ndarray) -> np.ndarray:
        return _unit(0.8 * face + 0.6 * _unit(rng.standard_normal(64)))

    ids = itertools.count(1)
    gallery = Gallery(ExactIndex(64), lambda: f"S{next(ids)}")
    # One batch: person 0 twice under the same document, person 1 once.
    first = gallery.identify([Probe(capture(faces[0]), "doc-a"), Probe(capture(faces[0]), "doc-a"),
                              Probe(capture(faces[1]), "doc-b")], T)
    assert [d.outcome for d, _ in first] == [Outcome.ENROL, Outcome.KNOWN, Outcome.ENROL]
    assert first[1][0].subject == first[0][0].subject  # the same new person is not enrolled twice
    assert len(gallery.index) == 2
    later = gallery.identify([Probe(capture(faces[0]), "doc-a"), Probe(capture(faces[1]), "doc-z"),
                              Probe(capture(faces[2]), "doc-c")], T)
    assert later[0][0].outcome == Outcome.KNOWN and later[0][0].subject == first[0][0].subject
    assert later[1][0].outcome in (Outcome.LINK_RED, Outcome.LINK_YELLOW)  # person 1 under another document
    assert later[1][0].subject == first[2][0].subject
    assert later[2][0].outcome == Outcome.ENROL and len(gallery.index) == 3
