"""Thresholds from data, for one template model, and the check that the stream still matches them (pure).

``lintas dedup calibrate`` reads the gallery and calls :func:`calibrate`:

* **verify** (1:1) at the target false-match rate, from impostor scores: a sample of
  one identity against the subject of another (the best of that subject's samples);
* **mismatch** from the genuine scores of document-verified returns (captures scored
  against their own document's subject) at good quality: their lower tail at the target
  rate of false "another face" findings (an exponential tail fit where fewer than 20
  scores lie below it), and never above the impostors' 99th percentile, so a finding is
  well below the impostor threshold;
* **yellow** / **red** (1:N) at the target FPIR and a tenth of it, from the best score of
  each enrolled subject's samples against every other identity's: exactly what decides
  whether a new subject gets a false link at this gallery size. Some subjects *are* the
  same person under two identities (the reason Lintas exists): their scores are genuine,
  and where such people are as common as the target FPIR they would set the threshold
  themselves. So the tail is fitted where impostors dominate (:func:`tail_fit`) and
  read further out, and scores too high for that fit are set aside as genuine.

Every figure is stored with the thresholds, so :func:`drift` can tell when the stream's
own returns and searches no longer look like the data the thresholds came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.dedup import ModelThresholds


@dataclass(frozen=True)
class Targets:
    """Operating-point targets of a calibration."""

    fpir: float = 0.003
    fmr: float = 1e-4
    another_face_rate: float = 1e-4
    good_quality: float = 0.6
    sample_quality: float = 0.5
    samples: int = 4


@dataclass(frozen=True)
class GallerySubject:
    """One enrolled subject for calibration: its identity (key) and its samples' templates."""

    identity: str
    subject: str
    samples: np.ndarray  # (k, dim) unit vectors


@dataclass(frozen=True)
class Scores:
    """What a calibration reads off a gallery: impostor 1:1, genuine returns (score, quality), best-other 1:N."""

    impostor: np.ndarray
    genuine: np.ndarray
    genuine_quality: np.ndarray
    best_other: np.ndarray
    subjects: int
    searched: np.ndarray  # which subjects (their positions) best_other belongs to, in its order
    second_other: np.ndarray  # each searched subject's best score against any other subject than its best one


def gallery_scores(subjects: Sequence[GallerySubject], genuine: np.ndarray, genuine_quality: np.ndarray,
                   rng: np.random.Generator, max_subjects: int = 20_000, max_impostor: int = 2_000) -> Scores:
    """Score a gallery: every sampled subject's best other-identity score, and random 1:1 impostor pairs."""
    if len(subjects) < 20:
        raise ValueError(f"calibration needs at least 20 enrolled subjects, not {len(subjects)}")
    owner = np.concatenate([np.full(len(s.samples), i) for i, s in enumerate(subjects)])
    identity_of = np.array([s.identity for s in subjects])
    sample_identity = identity_of[owner]
    matrix = np.concatenate([s.samples for s in subjects]).astype(np.float32)
    chosen = np.sort(rng.choice(len(subjects), min(max_subjects, len(subjects)), replace=False))
    starts = np.concatenate([[0], np.cumsum([len(x.samples) for x in subjects])[:-1]])
    best = np.full(len(chosen), -1.0)
    second = np.full(len(chosen), -1.0)  # the best score against any *other* subject than the best one's
    for start in range(0, len(chosen), 128):
        part = chosen[start:start + 128]
        rows = np.concatenate([np.flatnonzero(owner == i) for i in part])
        per_subject = np.maximum.reduceat(matrix[rows] @ matrix.T, starts, axis=1)  # (rows, subjects)
        offset = 0
        for j, i in enumerate(part):
            k = len(subjects[i].samples)
            others = per_subject[offset:offset + k].max(axis=0)
            others[identity_of == identity_of[i]] = -1.0  # own identity: not an impostor
            top = np.partition(others, -2)[-2:] if len(others) > 1 else np.array([-1.0, others.max()])
            best[start + j], second[start + j] = float(top.max()), float(top.min())
            offset += k
    # 1:1 impostors: a random sample of one identity against another identity's subject (best of its samples)
    probes = rng.choice(len(matrix), min(max_impostor, len(matrix)), replace=False)
    targets = rng.choice(len(subjects), min(max_impostor, len(subjects)), replace=False)
    cols = np.concatenate([np.flatnonzero(owner == i) for i in targets])
    col_owner = owner[cols]
    pair = matrix[probes] @ matrix[cols].T
    per_subject = np.full((len(probes), len(targets)), -1.0, dtype=np.float32)
    position = {int(i): n for n, i in enumerate(targets)}
    np.maximum.at(per_subject, (slice(None), np.array([position[int(o)] for o in col_owner])),  # type: ignore[arg-type]
                  pair)
    same = sample_identity[probes][:, None] == identity_of[targets][None, :]
    impostor = per_subject[~same]
    return Scores(impostor.astype(np.float64), np.asarray(genuine, float), np.asarray(genuine_quality, float),
                  best, len(subjects), chosen, second)


@dataclass(frozen=True)
class TailFit:
    """The best-other scores' upper tail as ``ln λ(t) = a t² + b t + c``, λ the expected impostors at or above t.

    For ``n`` impostors with a light tail the count above ``t`` is Poisson with mean
    λ(t), so ``P(best ≥ t) = 1 − e^{−λ(t)}``: a Gumbel law when ln λ is linear, and a
    Gaussian-like tail bends it down (hence the square term). Fitted where impostors
    dominate (1 − e^{−λ} from 3 % to 50 %), then read one decade further out.
    """

    coef: tuple[float, float, float]
    first: float  # the lowest score the fit saw
    start: float  # the highest score the fit saw
    set_aside: int

    def threshold(self, rate: float, scale: float = 1.0) -> float:
        """The score where P(best ≥ t) first falls to ``rate`` (for a gallery ``scale`` times as large)."""
        target = math.log(-math.log(1 - rate) / scale)
        grid = np.linspace(self.first, self.start + 0.6, 40_001)
        below = np.flatnonzero(np.polyval(self.coef, grid) <= target)
        return float(grid[below[0]]) if len(below) else float(grid[-1])


def tail_fit(best: np.ndarray, rate: float, low: float = 0.03, high: float = 0.5, rounds: int = 3) -> TailFit:
    """Fit :class:`TailFit`, setting aside (in up to ``rounds``) scores the fit finds too high for an impostor.

    A subject whose best other score lies where fewer than ``rate / 20`` impostors are
    expected is taken for the same person under another identity: kept out of the fit,
    but still in the denominator (it is a subject that was searched).
    """
    n = len(best)
    keep = np.sort(np.asarray(best, float))
    coef: np.ndarray = np.zeros(3)
    first = start = float(keep[-1])
    for round_ in range(rounds):
        # the first round reads the body only (where duplicates are a small share of what lies above a score)
        lo, hi = (max(low, 0.1), max(high, 0.6)) if round_ == 0 else (low, high)
        positions = (np.linspace(1 - hi, 1 - lo, 40) * n).astype(int).clip(0, len(keep) - 1)
        ts = keep[positions]
        survival = np.array([(keep >= t).sum() / n for t in ts]).clip(1e-9, 1 - 1e-9)
        y = np.log(-np.log(1 - survival))
        coef = np.polyfit(ts, y, 2)
        if coef[0] > 0:  # bending up is what duplicates above the body do, not an impostor tail: no bend
            coef = np.array([0.0, *np.polyfit(ts, y, 1)])
        first, start = float(ts[0]), float(ts[-1])
        ceiling = TailFit((float(coef[0]), float(coef[1]), float(coef[2])), first, start, 0).threshold(rate / 20)
        keep = np.sort(best[best <= ceiling])
    return TailFit((float(coef[0]), float(coef[1]), float(coef[2])), first, start, n - len(keep))


def upper_quantile(values: np.ndarray, p: float) -> float:
    """The ``p`` quantile of ``values``; past the data's reach (< 20 above it), an exponential tail fit."""
    values = np.sort(np.asarray(values, float))
    n = len(values)
    if n * (1 - p) >= 20:
        return float(np.quantile(values, p))
    tail = max(20, int(0.05 * n))
    u = values[n - tail - 1]
    excess = values[n - tail:] - u
    return float(u + excess.mean() * math.log((tail / n) / (1 - p)))


def lower_quantile(values: np.ndarray, p: float) -> float:
    """The ``p`` quantile of the lower tail: empirical while 20 values lie below it, else an exponential fit."""
    return -upper_quantile(-np.asarray(values, float), 1 - p)


def calibrate(model: str, version: str, scores: Scores, targets: Targets) -> ModelThresholds:
    """Thresholds for ``model`` at ``targets`` from one gallery's scores (see the module docstring)."""
    best = scores.best_other
    tail = tail_fit(best, targets.fpir)
    yellow = min(0.999, tail.threshold(targets.fpir))
    red = min(0.9995, max(yellow, tail.threshold(targets.fpir / 10)))
    pair_floor = min(yellow, tail.threshold(min(0.5, 10 * targets.fpir)))
    verify = upper_quantile(scores.impostor, 1 - targets.fmr)
    good = scores.genuine_quality >= targets.good_quality
    genuine = scores.genuine[good] if good.sum() >= 50 else scores.genuine
    if len(genuine) < 50:
        raise ValueError(f"calibration needs at least 50 document-verified returns, not {len(genuine)}")
    # "another face" must be strong evidence: rare for the genuine holder (the target rate) and well below the
    # impostor threshold (no higher than where 99 % of impostors already fall)
    mismatch = min(lower_quantile(genuine, targets.another_face_rate), float(np.quantile(scores.impostor, 0.99)))
    return ModelThresholds(
        model=model, version=version, verify=round(verify, 4), mismatch=round(mismatch, 4),
        yellow=round(yellow, 4), red=round(red, 4), pair_floor=round(max(1e-3, pair_floor), 4),
        good_quality=targets.good_quality, sample_quality=targets.sample_quality, samples=targets.samples,
        gallery_size=scores.subjects,
        calibration={
            "targets": {"fpir": targets.fpir, "fmr": targets.fmr, "another_face_rate": targets.another_face_rate},
            "subjects_searched": int(len(best)), "set_aside_as_genuine": tail.set_aside,
            "tail_coef": [round(c, 6) for c in tail.coef], "tail_first": round(tail.first, 5),
            "tail_start": round(tail.start, 5),
            "impostor_pairs": int(len(scores.impostor)), "returns": int(len(genuine)),
            "genuine_median": round(float(np.median(genuine)), 4),
            "fnir_estimate": round(float(np.mean(genuine < yellow)), 5),
            "fnmr_at_verify": round(float(np.mean(genuine < verify)), 5),
            "fpir_on_gallery": round(float(np.mean(best >= yellow)), 5),
        })


def for_gallery_size(t: ModelThresholds, size: int) -> tuple[float, float]:
    """Yellow and red for a gallery of ``size``: λ, the impostors expected above a score, grows with the gallery."""
    cal = t.calibration
    if not t.gallery_size or size <= 0 or "tail_coef" not in cal:
        return t.yellow, t.red
    fit = TailFit(tuple(cal["tail_coef"]), float(cal["tail_first"]), float(cal["tail_start"]), 0)  # type: ignore[arg-type]
    fpir = float(cal["targets"]["fpir"])
    scale = size / t.gallery_size
    return fit.threshold(fpir, scale), fit.threshold(fpir / 10, scale)


@dataclass(frozen=True)
class Observed:
    """The stream's own accuracy figures over a period: returns' 1:1 scores and searches' best other scores."""

    returns: int
    genuine_median: float
    below_yellow: float  # share of good-quality returns scoring below yellow: estimated FNIR
    searches: int
    above_yellow: float  # share of new samples whose best other-identity score reached yellow: estimated FPIR
    gallery_size: int = 0


def drift(observed: Observed, t: ModelThresholds, min_returns: int = 200, min_searches: int = 500) -> list[str]:
    """Why the stream no longer matches the calibrated point (empty: it does)."""
    cal = t.calibration
    if not cal:
        return ["no calibration recorded for this model: the thresholds are defaults"]
    reasons = []
    if observed.returns >= min_returns:
        shift = observed.genuine_median - float(cal["genuine_median"])
        if abs(shift) > 0.05:
            reasons.append(f"genuine scores shifted: median {observed.genuine_median:.3f}, "
                           f"calibrated {cal['genuine_median']:.3f}")
        expected = float(cal["fnir_estimate"])
        if observed.below_yellow > max(2 * expected, expected + 0.02):
            reasons.append(f"estimated FNIR {observed.below_yellow:.4f}, calibrated {expected:.4f}")
    if observed.searches >= min_searches:
        target = float(cal["targets"]["fpir"])
        expected_n = target * observed.searches
        seen_n = observed.above_yellow * observed.searches
        if observed.above_yellow > 2 * target and seen_n > expected_n + 3 * math.sqrt(max(expected_n, 1.0)):
            reasons.append(f"estimated FPIR {observed.above_yellow:.4f}, target {target:.4f}")
    if t.gallery_size and observed.gallery_size > 2 * t.gallery_size:
        reasons.append(f"gallery has {observed.gallery_size:,} subjects, calibrated for {t.gallery_size:,}: "
                       "FPIR grows with the gallery, calibrate again")
    return reasons
