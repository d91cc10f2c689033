"""1:N search core: template checks, exact index, sketch index recall against exact."""

from __future__ import annotations

import numpy as np
import pytest

from agents.gallery import ExactIndex, Rows, SampleIndex, SketchIndex, TemplateRejected, check_template


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    ("template", "dimension", "quality", "code"),
    [
        (np.ones(8, "<f4").tobytes(), 8, 0.9, "wrong_dimension"),
        (np.ones(16, "<f4").tobytes(), 16, 0.1, "low_quality"),
        (np.full(16, np.nan, "<f4").tobytes(), 16, 0.9, "not_finite"),
        (np.zeros(16, "<f4").tobytes(), 16, 0.9, "zero_norm"),
    ],
)
def test_bad_templates_are_rejected_with_a_code(template, dimension, quality, code) -> None:
    with pytest.raises(TemplateRejected) as err:
        check_template(template, dimension, quality, expected_dim=16, quality_floor=0.3)
    assert err.value.code == f"template_{code}"


def test_good_template_is_normalised() -> None:
    vec = check_template((np.arange(16, dtype="<f4") + 1).tobytes(), 16, 0.8, expected_dim=16, quality_floor=0.3)
    assert vec.dtype == np.float32 and abs(float(np.linalg.norm(vec)) - 1) < 1e-6


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    gallery = _unit(rng.standard_normal((20_000, 128)))
    mates = rng.choice(20_000, 300, replace=False)
    probes = _unit(0.6 * gallery[mates] + 0.8 * _unit(rng.standard_normal((300, 128))))
    return gallery, probes, mates


def test_exact_index_finds_mates(data) -> None:
    gallery, probes, mates = data
    exact = ExactIndex(128)
    exact.add(gallery[:10_000])
    exact.add(gallery[10_000:])  # rows continue across adds
    hits = exact.search(probes, 5)
    assert hits.rows.shape == (300, 5) and np.all(np.diff(hits.scores, axis=1) <= 1e-6)
    assert (hits.rows[:, 0] == mates).mean() > 0.97


def test_sketch_index_keeps_exact_hits_and_scores(data) -> None:
    gallery, probes, mates = data
    exact, sketch = ExactIndex(128), SketchIndex(128, bits=512, rerank=100)
    exact.add(gallery)
    sketch.add(gallery)
    e, s = exact.search(probes, 1), sketch.search(probes, 1)
    exact_hits = e.rows[:, 0] == mates
    kept = (s.rows[:, 0] == mates) & exact_hits
    assert kept.sum() >= 0.99 * exact_hits.sum()
    same = s.rows[:, 0] == e.rows[:, 0]
    assert np.allclose(s.scores[same, 0], e.scores[same, 0], atol=1e-5)  # re-rank scores are exact


def test_sketch_without_rerank_room_loses_hits(data) -> None:
    """The recall check can fail: re-ranking a single candidate keeps far fewer hits."""
    gallery, probes, mates = data
    tiny = SketchIndex(128, bits=64, rerank=1)
    tiny.add(gallery)
    assert (tiny.search(probes, 1).rows[:, 0] == mates).mean() < 0.9


def test_sample_index_finds_every_sample_above_the_floor_but_not_the_query_s_own(data) -> None:
    gallery, probes, mates = data
    index = SampleIndex(128, exact_max=50_000)
    owners = [f"id-{i // 2}" for i in range(20_000)]  # two samples per identity
    index.add([("S", i) for i in range(20_000)], gallery, owners)
    assert index.kind == "exact" and len(index) == 20_000
    results = index.search(probes, 0.3, [owners[m] for m in mates])
    for (hits, best), m, probe in zip(results, mates, probes, strict=True):
        scores = gallery @ probe
        want = {i for i in np.flatnonzero(scores >= 0.3) if owners[i] != owners[m]}
        assert {key[1] for key, _ in hits} == want  # all of them, the query's own identity left out
        others = [s for i, s in enumerate(scores) if owners[i] != owners[m]]
        assert best == pytest.approx(max(others), abs=1e-5)


def test_sample_index_removes_replaces_compacts_and_turns_to_the_sketch_past_its_exact_size(data) -> None:
    gallery, probes, mates = data
    index = SampleIndex(128, exact_max=5_000)
    index.add([("S", i) for i in range(4_000)], gallery[:4_000], ["o"] * 4_000)
    index.remove([("S", i) for i in range(1_500)] + [("S", "never")])
    assert len(index) == 2_500 and len(index.keys) == 2_500, "rebuilt once a third of it was removed"
    index.add([("S", 2_000)], gallery[5:6], ["o"])  # a key already present is replaced
    assert np.allclose(index.vector(("S", 2_000)), gallery[5]) and len(index) == 2_500
    index.add([("S", i) for i in range(10_000, 13_000)], gallery[10_000:13_000], ["p"] * 3_000)
    assert index.kind == "sketch" and len(index) == 5_500
    [(hits, best)] = index.search(gallery[11_000:11_001], 0.99, ["q"])
    assert [key for key, _ in hits] == [("S", 11_000)] and best == pytest.approx(1.0, abs=1e-5)


def test_the_sketch_spends_its_bits_in_the_templates_principal_subspace() -> None:
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.standard_normal((128, 12)))[0]
    faces = _unit(rng.standard_normal((3000, 12)) @ basis.T + 0.1 * rng.standard_normal((3000, 128)))
    captures = _unit(faces + 1.2 * _unit(rng.standard_normal((3000, 128))) / np.sqrt(2))
    fitted, plain = SketchIndex(128, rerank=3), SketchIndex(128, rerank=3)
    assert fitted.fit(captures) == 12 and plain.fit(_unit(rng.standard_normal((3000, 128)))) == 128
    probes = _unit(faces[:300] + 1.2 * _unit(rng.standard_normal((300, 128))) / np.sqrt(2))
    hits = []
    for index in (fitted, plain):
        index.add(captures)
        hits.append((index.search(probes, 1).rows[:, 0] == np.arange(300)).mean())
    assert hits[0] > hits[1] + 0.05, hits  # fewer candidates needed where the noise is left out
    with pytest.raises(ValueError):
        fitted.fit(captures)


def test_rows_keep_every_row_in_order_as_they_grow_and_leave_at_most_a_quarter_empty() -> None:
    rows, rng = Rows(8), np.random.default_rng(2)
    added = []
    for n in (1, 1023, 1, 5000, 37, 20_000):
        batch = rng.standard_normal((n, 8)).astype(np.float32)
        rows.add(batch)
        added.append(batch)
        assert rows._data.shape[0] <= max(1024, int(1.25 * len(rows)) + 1024)  # what a gallery of 1M wastes
    assert np.array_equal(rows.view, np.concatenate(added)) and len(rows) == sum(len(b) for b in added)
