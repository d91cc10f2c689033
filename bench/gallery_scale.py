"""Which index can hold a national gallery: recall against exact search, speed and memory, 100k to 10M identities.

    .venv/bin/python -m bench.gallery_scale [--sizes 100000 1000000 10000000] [--models clustered moderate hard]
                                            [--queries 1000] [--methods exact coded rabitq] [--json FILE]

For each face model (:mod:`streams.sim.faces`) and gallery size: one enrolled capture per
identity, probes that are fresh captures of enrolled identities. Ground truth is exact search
(one BLAS product per chunk of the gallery): every gallery row whose score with a probe
reaches the model's packaged yellow threshold. Each index proposes candidates whose scores
are computed **exactly** from the full templates (what the gallery's decisions use): its
recall is the share of exact search's pairs at or above yellow it reports, and the bench
checks that every score it reports is the exact one.

Methods: ``exact`` (the baseline); ``coded``, the worker's index past
``LINTAS_DEDUP_EXACT_MAX`` (:class:`agents.gallery.CodedIndex`: IVF, 4-bit PQ fast-scan codes,
re-ranked by 8-bit codes, the exact score of every candidate near the model's pair floor), its
templates in a memory-mapped file (:mod:`streams.template_store`) past 1M, whose pages are
dropped from memory before each coded search, so it reads its templates from disk; ``rabitq``
(FAISS IVF with RaBitQ fast-scan codes, the alternative to 4-bit PQ; the same cells and probes,
every candidate re-scored exactly). ``resident_bytes_per_identity`` is what an index holds in
memory per identity (its serialised codes, ids, lists and quantiser, and the 8-bit codes), not
the mapped store. The JSON holds one object per model and size: the coded index's figures at
the top, every method's under ``methods``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from agents.dedup import ThresholdSet
from agents.gallery import CANDIDATES, NPROBE, CodedIndex, Rows, rescore
from bench import print_table
from streams.sim.faces import ClusteredFaces, SubspaceFaces, face_model
from streams.template_store import MappedRows

DIM = 512
CHUNK = 250_000  # gallery rows generated and searched at a time
IN_MEMORY_MAX = 1_000_000  # past this the gallery lives in a memory-mapped file


@dataclass
class Gallery:
    """Enrolled templates (in memory, or memory-mapped), probes and each probe's enrolled row."""

    store: Rows
    probes: np.ndarray
    mates: np.ndarray

    @property
    def templates(self) -> np.ndarray:
        return self.store.view


def make(model: str, n: int, q: int, seed: int, where: Path) -> Gallery:
    """``n`` enrolled captures of ``n`` people and ``q`` fresh captures of some of them, chunk by chunk."""
    faces = face_model(model, DIM)
    rng = np.random.default_rng(seed)
    mates = np.sort(rng.choice(n, q, replace=False))
    store: Rows = Rows(DIM) if n <= IN_MEMORY_MAX else MappedRows(where, DIM)
    centres = _units(rng.standard_normal((20, DIM)).astype(np.float32))  # the clustered model's populations
    probes = np.empty((q, DIM), np.float32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        if isinstance(faces, ClusteredFaces):
            people = faces.faces(rng, centres[rng.integers(0, 20, m)])
        else:
            assert isinstance(faces, SubspaceFaces)
            people = faces.faces(rng, m)
        store.add(faces.captures(rng, people, _quality(rng, m)))
        mine = (mates >= start) & (mates < start + m)
        probes[mine] = faces.captures(rng, people[mates[mine] - start], _quality(rng, int(mine.sum())))
    store.flush()
    return Gallery(store, probes, mates)


def _quality(rng: np.random.Generator, m: int) -> np.ndarray:
    return np.clip(rng.normal(0.75, 0.15, m), 0.2, 1.0).astype(np.float32)


def _units(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def exact_pairs(gallery: Gallery, yellow: float) -> tuple[list[dict[int, float]], float]:
    """Every (probe, row) at or above ``yellow`` with its score, by exact search; and its identifications per second."""
    found: list[dict[int, float]] = [{} for _ in range(len(gallery.probes))]
    t0 = time.perf_counter()
    with gallery.store.sequential():
        for start in range(0, len(gallery.templates), CHUNK):
            scores = gallery.probes @ np.asarray(gallery.templates[start:start + CHUNK]).T
            for qi, row in zip(*np.nonzero(scores >= yellow), strict=True):
                found[qi][start + int(row)] = float(scores[qi, row])
    return found, len(gallery.probes) / (time.perf_counter() - t0)


def reported(rows: np.ndarray, scores: np.ndarray, yellow: float) -> list[dict[int, float]]:
    """Per probe, the rows an index reports at or above ``yellow`` with the scores it gives them."""
    return [{int(r): float(s) for r, s in zip(rr, ss, strict=True) if r >= 0 and s >= yellow}
            for rr, ss in zip(rows, scores, strict=True)]


def run_coded(gallery: Gallery, yellow: float, floor: float, nprobes: list[int], k: int) -> dict[str, dict[str, Any]]:
    """The worker's coded index, built once, searched with each number of cells: ``coded`` (the first), ``coded@N``."""
    t0 = time.perf_counter()
    index = CodedIndex.over(gallery.store, candidates=k, nprobe=nprobes[0])
    build = time.perf_counter() - t0
    ivf = faiss.extract_index_ivf(index.index)
    runs = {}
    for i, nprobe in enumerate(nprobes):
        ivf.nprobe = min(nprobe, ivf.nlist)
        if isinstance(gallery.store, MappedRows):
            gallery.store.evict()  # every run reads its templates from disk, as a store larger than memory would
        t0 = time.perf_counter()
        hits = index.search(gallery.probes, 64, floor)  # as a shard searches: everything near its pair floor
        seconds = time.perf_counter() - t0
        runs["coded" if i == 0 else f"coded@{nprobe}"] = {
            "reported": reported(hits.rows, hits.scores, yellow), "ids_per_s": len(gallery.probes) / seconds,
            "exact_reads_per_probe": float((hits.rows >= 0).sum(axis=1).mean()), "build_s": build,
            "resident_bytes_per_identity": index.code_bytes() / len(index),
            "params": f"{ivf.nlist} lists, nprobe {ivf.nprobe}, {k} re-ranked by 8-bit codes"}
    return runs


def run_rabitq(gallery: Gallery, yellow: float, nprobe: int, k: int) -> dict[str, Any]:
    n = len(gallery.templates)
    lists = CodedIndex.lists_for(n)
    index = faiss.index_factory(DIM, f"IVF{lists},RaBitQfs", faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    index.train(np.ascontiguousarray(gallery.templates[:: max(1, n // (64 * lists))]))
    for start in range(0, n, CHUNK):
        index.add(np.ascontiguousarray(gallery.templates[start:start + CHUNK]))
    build = time.perf_counter() - t0
    faiss.extract_index_ivf(index).nprobe = nprobe
    t0 = time.perf_counter()
    _, candidates = index.search(gallery.probes, k)
    hits = rescore(gallery.probes, gallery.templates, candidates, k)  # exactly as the coded index does
    seconds = time.perf_counter() - t0
    return {"reported": reported(hits.rows, hits.scores, yellow), "ids_per_s": len(gallery.probes) / seconds,
            "exact_reads_per_probe": float(k), "build_s": build,
            "resident_bytes_per_identity": len(faiss.serialize_index(index)) / n,
            "params": f"{lists} lists, nprobe {nprobe}, {k} re-scored"}


def measure(model: str, n: int, q: int, methods: list[str], nprobes: list[int], k: int,
            where: Path) -> dict[str, Any]:
    """One model and size: the coded index's figures at the top, every method's under ``methods``."""
    thresholds = ThresholdSet.load(None).for_model(face_model(model, DIM).model_id)
    yellow = thresholds.yellow
    gallery = make(model, n, q, seed=n % 9973 + len(model), where=where)
    truth, exact_ids = exact_pairs(gallery, yellow)
    pairs = sum(len(t) for t in truth)
    figures: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    for method in methods:
        if method == "exact":
            runs[method] = {"reported": truth, "ids_per_s": exact_ids, "exact_reads_per_probe": float(n),
                            "build_s": 0.0,
                            "resident_bytes_per_identity": 0.0, "params": "BLAS over every row"}
        elif method == "coded":
            runs.update(run_coded(gallery, yellow, thresholds.pair_floor, nprobes, k))
        elif method == "rabitq":
            runs[method] = run_rabitq(gallery, yellow, nprobes[0], k)
    for method, out in runs.items():
        got = out.pop("reported")
        kept = sum(len(t.keys() & r.keys()) for t, r in zip(truth, got, strict=True))
        worst = max((abs(r[row] - t[row]) for t, r in zip(truth, got, strict=True) for row in t.keys() & r.keys()),
                    default=0.0)
        figures[method] = {"recall_vs_exact": kept / max(1, pairs), "max_score_difference": worst,
                           "speed_up": out["ids_per_s"] / exact_ids, **out}
    if isinstance(gallery.store, MappedRows):
        gallery.store.close()
    top = figures.get("coded") or next(iter(figures.values()))
    return {"model": model, "size": n, "queries": q, "yellow": yellow, "pairs_at_yellow": pairs,
            "mates_at_yellow": float(np.mean([m in t for m, t in zip(gallery.mates, truth, strict=True)])),
            "exact_ids_per_s": exact_ids, **{k: v for k, v in top.items() if k != "params"}, "methods": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--models", nargs="+", default=["clustered", "moderate", "hard"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--methods", nargs="+", default=["exact", "coded", "rabitq"])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[NPROBE],
                        help="inverted lists scanned per probe (the first is the coded index's headline; "
                             "each further one is reported as coded@N)")
    parser.add_argument("--candidates", type=int, default=CANDIDATES,
                        help="candidates per probe re-ranked by their 8-bit codes")
    parser.add_argument("--dir", type=Path, default=None, help="where galleries past 1M are memory-mapped")
    parser.add_argument("--json", type=Path, default=None, help="write one object per model and size here")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.sizes:
            for model in args.models:
                results.append(measure(model, n, args.queries, args.methods, args.nprobe, args.candidates, Path(tmp)))
                print(f"{model} {n:,}: done", flush=True)
                if args.json:  # written as it goes: a 10M run takes hours
                    args.json.write_text(json.dumps(results, indent=1))
    print(f"\n1:N on {DIM}-d templates, {args.queries} mated probes; pairs at the model's yellow threshold; "
          f"{faiss.omp_get_max_threads()} threads")
    print_table([{"model": r["model"], "size": r["size"], "method": m, **{k: v for k, v in f.items()}}
                 for r in results for m, f in r["methods"].items()],
                {"recall_vs_exact": "{:.4f}", "max_score_difference": "{:.1e}", "ids_per_s": "{:,.0f}",
                 "speed_up": "{:,.1f}×", "resident_bytes_per_identity": "{:,.0f}", "build_s": "{:,.1f}",
                 "exact_reads_per_probe": "{:,.1f}", "size": "{:,}"})


if __name__ == "__main__":
    main()
