"""Thresholds from data: calibrated on one synthetic gallery, they keep their promise on another; drift is told."""

from __future__ import annotations

import numpy as np
import pytest

from agents.calibration import GallerySubject, Observed, Targets, calibrate, drift, for_gallery_size, gallery_scores

DIM = 48


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def gallery(seed: int, people: int = 4000, duplicates: int = 40,
            twin_noise: float = 0.45) -> tuple[list[GallerySubject], np.ndarray, set[str]]:
    """Subjects of 1-3 samples; ``duplicates`` people also enrolled under a second identity (a second subject).

    Their samples are cleaner (``twin_noise``) than the others', so their two subjects score well above the
    impostors' tail, as the simulator's default faces do.
    """
    rng = np.random.default_rng(seed)
    faces = _unit(rng.standard_normal((people, DIM)))
    subjects, twins = [], set()

    def samples(face: np.ndarray, noise: float = 0.6) -> np.ndarray:
        k = int(rng.integers(1, 4))
        return _unit(np.sqrt(1 - noise**2) * face + noise * _unit(rng.standard_normal((k, DIM))))

    for i in range(people):
        twin = i < duplicates
        subjects.append(GallerySubject(f"doc-{i}", f"S{i}", samples(faces[i], twin_noise if twin else 0.6)))
        if twin:
            subjects.append(GallerySubject(f"alias-{i}", f"S{i}b", samples(faces[i], twin_noise)))
            twins |= {f"S{i}", f"S{i}b"}
    returns = rng.normal(0.64, 0.07, 20_000).clip(-1, 1)
    return subjects, returns, twins


def test_thresholds_calibrated_on_one_gallery_keep_their_fpir_on_another_despite_duplicates() -> None:
    targets = Targets(fpir=0.01, fmr=1e-3, another_face_rate=1e-3)
    subjects, returns, twins = gallery(seed=1)
    scores = gallery_scores(subjects, returns, np.full(len(returns), 0.9), np.random.default_rng(0))
    t = calibrate("m/1", "v1", scores, targets)
    assert t.calibration["set_aside_as_genuine"] >= 0.9 * len(twins), "the duplicates are not impostors"
    assert t.pair_floor <= t.yellow <= t.red and t.mismatch <= t.verify
    # measured on another gallery: the share of people with no duplicate whose best other score reaches yellow
    other, _, other_twins = gallery(seed=2)
    measured = gallery_scores(other, returns, np.full(len(returns), 0.9), np.random.default_rng(1))
    honest = np.array([other[int(i)].subject not in other_twins for i in measured.searched])
    fpir = float(np.mean(measured.best_other[honest] >= t.yellow))
    assert 0.5 * targets.fpir <= fpir <= 1.6 * targets.fpir, fpir
    # the naive quantile, which takes the duplicates for impostors, would not keep the promise
    naive = float(np.quantile(scores.best_other, 1 - targets.fpir))
    assert float(np.mean(measured.best_other[honest] >= naive)) < 0.5 * targets.fpir
    # another face: rare for the genuine holder, and no higher than 99 % of impostors
    assert float(np.mean(returns < t.mismatch)) <= 2.5 * targets.another_face_rate
    assert t.mismatch <= float(np.quantile(scores.impostor, 0.99)) + 1e-9
    assert float(np.mean(measured.impostor >= t.verify)) == pytest.approx(targets.fmr, rel=0.5)


def test_a_larger_gallery_needs_higher_1_to_n_thresholds() -> None:
    subjects, returns, _ = gallery(seed=3, people=2000, duplicates=0)
    t = calibrate("m/1", "v1", gallery_scores(subjects, returns, np.full(len(returns), 0.9),
                                              np.random.default_rng(0)), Targets(fpir=0.01))
    yellow_10x, red_10x = for_gallery_size(t, 10 * t.gallery_size)
    assert yellow_10x > t.yellow and red_10x > t.red
    assert for_gallery_size(t, t.gallery_size) == pytest.approx((t.yellow, t.red), abs=2e-3)


def test_drift_names_what_moved_and_stays_quiet_when_nothing_did() -> None:
    subjects, returns, _ = gallery(seed=4, people=1500, duplicates=0)
    t = calibrate("m/1", "v1", gallery_scores(subjects, returns, np.full(len(returns), 0.9),
                                              np.random.default_rng(0)), Targets(fpir=0.003))
    cal = t.calibration
    steady = Observed(5000, cal["genuine_median"], cal["fnir_estimate"], 5000, 0.003, t.gallery_size)
    assert drift(steady, t) == []
    assert drift(Observed(100, 0.1, 0.9, 100, 0.5, 10), t) == [], "too few to judge"
    shifted = drift(Observed(5000, cal["genuine_median"] - 0.12, 0.97, 5000, 0.003, t.gallery_size), t)
    assert any("genuine scores shifted" in r for r in shifted) and any("FNIR" in r for r in shifted)
    assert any("FPIR" in r for r in drift(Observed(5000, cal["genuine_median"], 0.0, 5000, 0.02, 1), t))
    assert any("calibrate again" in r for r in drift(Observed(0, 0, 0, 0, 0, 3 * t.gallery_size), t))
