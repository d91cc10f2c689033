"""1:N search core: template checks, exact index, the coded index's recall against exact."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from agents.gallery import CodedIndex, ExactIndex, Rows, SampleIndex, TemplateRejected, check_template
from streams.sim.faces import ClusteredFaces


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


def test_sample_index_removes_replaces_compacts_and_turns_to_codes_past_its_exact_size(data) -> None:
    gallery, probes, mates = data
    index = SampleIndex(128, exact_max=5_000)
    index.add([("S", i) for i in range(4_000)], gallery[:4_000], ["o"] * 4_000)
    index.remove([("S", i) for i in range(1_500)] + [("S", "never")])
    assert len(index) == 2_500 and len(index.keys) == 2_500, "rebuilt once a third of it was removed"
    index.add([("S", 2_000)], gallery[5:6], ["o"])  # a key already present is replaced
    assert np.allclose(index.vector(("S", 2_000)), gallery[5]) and len(index) == 2_500
    index.add([("S", i) for i in range(10_000, 13_000)], gallery[10_000:13_000], ["p"] * 3_000)
    assert index.kind == "coded" and len(index) == 5_500 and index.trained_on == 5_500
    [(hits, best)] = index.search(gallery[11_000:11_001], 0.99, ["q"])
    assert [key for key, _ in hits] == [("S", 11_000)] and best == pytest.approx(1.0, abs=1e-5)
    index.add([("S", i) for i in range(14_000, 17_000)], gallery[14_000:17_000], ["p"] * 3_000)
    trained = faiss.serialize_index(index.index.emptied().index)
    index.remove([("S", i) for i in range(10_000, 12_100)] + [("S", i) for i in range(14_000, 14_800)])
    assert index.kind == "coded" and len(index.keys) == 5_600, "compacted"
    assert np.array_equal(faiss.serialize_index(index.index.emptied().index), trained), "codebooks kept"
    assert index.search(gallery[11_000:11_001], 0.99, ["q"])[0][0] == []
    assert index.index.index.ntotal == 5_600, "removed codes leave the lists"


def test_sample_index_trains_its_codes_again_once_the_gallery_is_eight_times_what_they_were_trained_on(data) -> None:
    gallery, _, _ = data
    index = SampleIndex(128, exact_max=1_000)
    index.add([("S", i) for i in range(1_100)], gallery[:1_100], ["o"] * 1_100)
    assert index.kind == "coded" and index.trained_on == 1_100
    index.add([("S", i) for i in range(1_100, 8_800)], gallery[1_100:8_800], ["o"] * 7_700)
    assert index.trained_on == 1_100
    index.add([("S", 8_800)], gallery[8_800:8_801], ["o"])
    assert index.trained_on == 8_801 and index.search(gallery[:1], 0.99, ["q"])[0][0] == [(("S", 0), pytest.approx(1.0))]


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A structured gallery (the simulator's clustered faces at 128 dimensions) and fresh captures of some of it."""
    rng, model = np.random.default_rng(5), ClusteredFaces(dim=128)
    people = model.faces(rng, _unit(rng.standard_normal((20, 128)))[rng.integers(0, 20, 30_000)])
    quality = rng.uniform(0.6, 1.0, 30_000).astype(np.float32)
    mates = rng.choice(30_000, 400, replace=False)
    return model.captures(rng, people, quality), model.captures(rng, people[mates], quality[mates]), mates


def test_coded_index_keeps_exact_search_s_pairs_with_their_exact_scores(faces) -> None:
    gallery, probes, _ = faces
    exact, coded = ExactIndex(128), CodedIndex(128)
    exact.add(gallery)
    coded.fit(gallery)
    coded.add(gallery[:12_345])
    coded.add(gallery[12_345:])  # rows continue across adds
    e, c = exact.search(probes, 5), coded.search(probes, 5)
    pairs = {(q, int(r)) for q in range(len(probes)) for r, s in zip(e.rows[q], e.scores[q], strict=True) if s >= 0.5}
    found = {(q, int(r)) for q in range(len(probes)) for r, s in zip(c.rows[q], c.scores[q], strict=True) if s >= 0.5}
    assert len(pairs) > 250 and len(found & pairs) >= 0.99 * len(pairs) and found <= pairs
    assert np.allclose(c.scores[c.rows >= 0], (probes[:, None, :] * gallery[c.rows]).sum(-1)[c.rows >= 0], atol=1e-5)


def test_the_8_bit_codes_err_far_less_than_the_margin_that_sends_a_candidate_to_its_exact_score(faces) -> None:
    from agents.gallery import MARGIN

    gallery, probes, _ = faces
    coded = CodedIndex(128)
    coded.add(gallery)
    approx = probes @ coded.fine.sa_decode(coded.fine_codes()).T
    assert np.abs(approx - probes @ gallery.T).max() < MARGIN / 4


def test_coded_index_with_one_candidate_loses_pairs(faces) -> None:
    """The recall check can fail: one candidate from the codes misses mates exact search has."""
    gallery, probes, mates = faces
    coded = CodedIndex(128, candidates=1, nprobe=1)
    coded.add(gallery)  # fitted on the first add
    exact = ExactIndex(128)
    exact.add(gallery)
    assert (coded.search(probes, 1).rows[:, 0] == mates).mean() < (exact.search(probes, 1).rows[:, 0] == mates).mean() - 0.1


def test_coded_index_trains_the_same_codes_whatever_the_threads(faces) -> None:
    gallery, probes, _ = faces
    results = []
    threads = faiss.omp_get_max_threads()
    try:
        for n in (1, 2):
            faiss.omp_set_num_threads(n)
            coded = CodedIndex(128)
            coded.fit(gallery)
            coded.add(gallery)
            results.append((faiss.serialize_index(coded.index), coded.search(probes, 3)))
    finally:
        faiss.omp_set_num_threads(threads)
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1].rows, results[1][1].rows)


def test_rows_keep_every_row_in_order_as_they_grow_and_leave_at_most_a_quarter_empty() -> None:
    rows, rng = Rows(8), np.random.default_rng(2)
    added = []
    for n in (1, 1023, 1, 5000, 37, 20_000):
        batch = rng.standard_normal((n, 8)).astype(np.float32)
        rows.add(batch)
        added.append(batch)
        assert rows._data.shape[0] <= max(1024, int(1.25 * len(rows)) + 1024)  # what a gallery of 1M wastes
    assert np.array_equal(rows.view, np.concatenate(added)) and len(rows) == sum(len(b) for b in added)


def test_the_settings_defaults_are_the_index_s() -> None:
    from agents.gallery import CANDIDATES, NPROBE
    from streams.settings import Settings

    fields = Settings.model_fields
    assert (fields["dedup_rerank"].default, fields["dedup_nprobe"].default) == (CANDIDATES, NPROBE)


def test_a_coded_sample_index_reports_what_the_exact_one_does(faces) -> None:
    gallery, probes, mates = faces
    owners = [f"id-{i // 3}" for i in range(len(gallery))]  # three samples per identity
    keys = [("S", i) for i in range(len(gallery))]
    exact, coded = SampleIndex(128, exact_max=len(gallery)), SampleIndex(128, exact_max=1_000)
    for index in (exact, coded):
        index.add(keys, gallery, owners)
    assert (exact.kind, coded.kind) == ("exact", "coded")
    mine = [owners[m] if q % 2 else "q" for q, m in enumerate(mates)]  # half of them asked by their own identity
    want, got = exact.search(probes, 0.45, mine), coded.search(probes, 0.45, mine)
    pairs = {(q, k): s for q, (hits, _) in enumerate(want) for k, s in hits}
    found = {(q, k): s for q, (hits, _) in enumerate(got) for k, s in hits}
    assert len(pairs) > 150 and found.keys() <= pairs.keys() and len(found) >= 0.99 * len(pairs)
    assert all(abs(found[p] - pairs[p]) < 1e-5 for p in found), "the scores are exact"
    assert all(owners[k[1]] != mine[q] for q, k in found), "the query's own identity is left out"
    high = [(a[1], b[1]) for a, b in zip(want, got, strict=True) if a[1] >= 0.45]
    assert np.mean([abs(a - b) < 1e-5 for a, b in high]) > 0.99, "the best score too, where it reaches the floor"
    assert all(b[1] <= a[1] + 1e-5 for a, b in zip(want, got, strict=True)), "below it, at most the exact best"
