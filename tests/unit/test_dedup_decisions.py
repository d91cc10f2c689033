"""Identity resolution for one identity, thresholds files and the FNIR-at-FPIR metric, with literal numbers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from agents.dedup import (
    IdentityState,
    ModelThresholds,
    Outcome,
    Seen,
    ThresholdsError,
    ThresholdSet,
    fnir_at_fpir,
    resolve,
)

T = ModelThresholds("face-x/1", "t-1", verify=0.6, mismatch=0.2, yellow=0.7, red=0.8, pair_floor=0.65,
                    good_quality=0.6, sample_quality=0.5, samples=2)


def name(anchor: str | None) -> str:
    return "S-primary" if anchor is None else f"S-{anchor}"


def vec(angle_deg: float) -> np.ndarray:
    """A unit vector in the plane at ``angle_deg`` from the x axis: cosines are exact and easy to read."""
    a = math.radians(angle_deg)
    return np.array([math.cos(a), math.sin(a), 0.0], dtype=np.float32)


def seen(probe: str, minute: int, angle: float, quality: float = 0.9) -> Seen:
    return Seen(probe, f"e-{probe}", "crossing", "ID-BTH", minute * 60_000, quality, vec(angle))


def test_first_capture_enrols_then_verified_known_far_is_another_face_grey_and_poor_are_inconclusive() -> None:
    strict = ModelThresholds("face-x/1", "t-1", verify=0.9, mismatch=0.2, yellow=0.7, red=0.8, pair_floor=0.65)
    window = [seen("a", 0, 0), seen("b", 1, 20),  # cos 20° = 0.940 ≥ verify
              seen("c", 2, 100),  # best 0.174 (vs b) < mismatch, at good quality: another face
              seen("d", 3, 10),  # 0.985: known
              seen("e", 4, 55),  # best 0.819 (vs b): the grey zone, inconclusive
              seen("f", 5, 180, quality=0.3)]  # far from everyone but poor quality: inconclusive, never a new person
    verdicts, subjects = resolve([], window, strict, name)
    got = {p: (v.outcome, v.subject) for p, v in verdicts.items()}
    assert got == {"a": (Outcome.ENROL, "S-primary"), "b": (Outcome.KNOWN, "S-primary"),
                   "c": (Outcome.ANOTHER_FACE, "S-c"), "d": (Outcome.KNOWN, "S-primary"),
                   "e": (Outcome.INCONCLUSIVE, "S-primary"), "f": (Outcome.INCONCLUSIVE, "S-c")}
    assert math.isnan(verdicts["a"].score) and verdicts["b"].score == pytest.approx(math.cos(math.radians(20)))
    assert [s.subject for s in subjects] == ["S-primary", "S-c"]
    assert verdicts["c"].candidates == (("S-primary", pytest.approx(math.cos(math.radians(80)), abs=1e-5)),)


def test_samples_are_the_best_quality_captures_bounded_and_score_is_the_best_of_them() -> None:
    window = [seen("a", 0, 0, 0.55), seen("b", 1, 20, 0.95), seen("c", 2, -20, 0.9), seen("d", 3, 10, 0.7),
              seen("e", 4, 45, 0.4)]  # below sample quality: known, never a sample
    verdicts, [subject] = resolve([], window, T, name)
    assert [c.probe_id for c in subject.samples] == ["b", "c"]  # 2 kept, best quality first
    assert all(verdicts[p].outcome is Outcome.KNOWN for p in "bcde")
    # d (10°) is scored against b and c (the samples then): the best is b, 10° away
    assert verdicts["d"].score == pytest.approx(math.cos(math.radians(10)), abs=1e-6)


def test_decisions_depend_on_the_set_of_captures_not_their_arrival() -> None:
    captures = [seen(p, m, a, q) for p, m, a, q in
                [("a", 0, 0, .9), ("b", 5, 40, .8), ("c", 9, 95, .9), ("d", 12, 60, .7), ("e", 20, 100, .65),
                 ("f", 21, 5, .5)]]
    results = set()
    for order in itertools.permutations(captures):
        state = IdentityState("m|doc", "doc", "document", "face-x/1")
        for i, c in enumerate(order):
            state.add(c, T, name, window=32)
            state.version = i
        verdicts, _ = state.resolve(T, name)
        results.add(tuple(sorted((p, v.outcome, v.subject, -9.0 if math.isnan(v.score) else round(v.score, 6))
                                 for p, v in verdicts.items())))
    assert len(results) == 1


def test_a_capture_seen_again_is_ignored_and_the_window_slides_into_the_base() -> None:
    state = IdentityState("m|doc", "doc", "document", "face-x/1")
    assert state.add(seen("a", 0, 0), T, name, window=2)
    assert not state.add(seen("a", 0, 0), T, name, window=2)  # a resend
    state.add(seen("b", 1, 10), T, name, window=2)
    state.add(seen("c", 2, 20), T, name, window=2)  # a slides out, decided for good
    assert [c.probe_id for c in state.window] == ["b", "c"] and state.cut == (0, "a")
    assert [(c.probe_id, v.outcome) for c, v in state.take_frozen()] == [("a", Outcome.ENROL)]
    assert not state.add(seen("a", 0, 0), T, name, window=2), "remembered after it slid out"
    state.add(seen("z", -5, 90), T, name, window=2)  # older than the whole window: judged against the base
    assert state.late == 1 and state.seen == 4
    [(late, verdict)] = state.take_frozen()
    assert late.probe_id == "z" and verdict.outcome is Outcome.ANOTHER_FACE


def test_thresholds_are_checked_and_a_set_round_trips_with_a_default_for_other_models() -> None:
    with pytest.raises(ThresholdsError, match="mismatch <= verify"):
        ModelThresholds("m", "v", verify=0.3, mismatch=0.4, yellow=0.5, red=0.6, pair_floor=0.4)
    with pytest.raises(ThresholdsError, match="pair_floor <= yellow"):
        ModelThresholds("m", "v", verify=0.3, mismatch=0.1, yellow=0.5, red=0.6, pair_floor=0.55)
    packaged = ThresholdSet.load()
    assert packaged.default.mismatch == -1.0, "an uncalibrated model never finds another face"
    built = packaged.with_model(T, "v-2")
    again = ThresholdSet.from_json(built.to_json())
    assert again.version == "v-2" and again.for_model("face-x/1").verify == 0.6
    assert again.for_model("face-x/1").label == "v-2:face-x/1"
    assert again.for_model("other/9").model == "other/9" and again.for_model("other/9").yellow == packaged.default.yellow
    with pytest.raises(ThresholdsError, match="bad.json"):
        ThresholdSet.from_json('{"version": "x"}', "bad.json")


def test_fnir_at_fpir_literal() -> None:
    nonmated = np.array([0.1] * 997 + [0.5, 0.6, 0.7])  # 3 of 1000 high: FPIR 0.003 allows exactly those
    mated = np.array([0.9, 0.8, 0.55, 0.3])
    correct = np.array([True, True, True, False])
    fnir, threshold = fnir_at_fpir(mated, correct, nonmated, 0.003)
    assert 0.1 < threshold <= 0.5 + 1e-9
    assert fnir == pytest.approx(0.25)  # only the wrong rank-1 is a miss
    fnir_strict, t_strict = fnir_at_fpir(mated, correct, nonmated, 0.0)
    assert t_strict > 0.7 and fnir_strict == pytest.approx(0.5)
