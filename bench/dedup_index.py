"""1:N identification: numpy brute force, scikit-learn, FAISS flat, Lintas' exact and coded indexes, side by side.

    .venv/bin/python -m bench.dedup_index [--sizes 100000 1000000] [--queries 1000]

For each gallery size and template distribution, the gallery holds one enrolled
template per identity; probes are fresh captures of enrolled identities (mated
searches). Reported per method: build time, memory, identifications per second
one at a time and in batches, the rank-1 mated hit rate, and the share of exact
search's mated hits the method keeps ("recall vs exact").

Distributions: ``isotropic`` (identities uniform on the sphere, noisy captures),
``clustered`` (identities on a 64-dimensional subspace around 200 population
centres, closer to real face embeddings: impostor scores run high), and the
simulator's second face family (:mod:`streams.sim.faces`) at its ``moderate`` and
``hard`` settings (rank 48 and 20, capture noise tied to quality).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import faiss
import numpy as np
from sklearn.neighbors import NearestNeighbors

from agents.gallery import CodedIndex, ExactIndex
from streams.sim.faces import SubspaceFaces, face_model

DIM = 512


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(n: int, q: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gallery (n × DIM), probes (q × DIM) and each probe's true gallery row."""
    if kind in ("moderate", "hard"):
        faces = face_model(kind, DIM)
        assert isinstance(faces, SubspaceFaces)
        people = faces.faces(rng, n)
        # the gallery holds captures too (an enrolment is a capture), so genuine scores are capture to capture
        gallery = faces.captures(rng, people, np.clip(rng.normal(0.75, 0.15, n), 0.2, 1.0))
        mates = rng.choice(n, q, replace=False)
        quality = np.clip(rng.normal(0.75, 0.15, q), 0.2, 1.0)
        return gallery, faces.captures(rng, people[mates], quality), mates
    if kind == "isotropic":
        gallery = unit(rng.standard_normal((n, DIM), dtype=np.float32))
    else:
        basis = np.linalg.qr(rng.standard_normal((DIM, 64)))[0].astype(np.float32)  # DIM × 64
        centres = rng.standard_normal((200, 64)).astype(np.float32)
        latent = centres[rng.integers(0, 200, n)] * 0.6 + rng.standard_normal((n, 64), dtype=np.float32)
        gallery = unit(latent @ basis.T + 0.15 * rng.standard_normal((n, DIM), dtype=np.float32))
    mates = rng.choice(n, q, replace=False)
    noise = unit(rng.standard_normal((q, DIM), dtype=np.float32))
    share = rng.uniform(0.6, 0.93, (q, 1)).astype(np.float32)  # capture noise varies with quality: cos 0.37-0.8
    probes = unit(np.sqrt(1 - share**2) * gallery[mates] + share * noise)
    return gallery, probes, mates


def numpy_search(gallery: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def search(queries: np.ndarray) -> np.ndarray:
        return np.argmax(queries @ gallery.T, axis=1)

    return search


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def run(n: int, q: int, kind: str, seed: int, rerank: int = 1000,
        methods: set[str] | None = None) -> list[tuple]:
    rng = np.random.default_rng(seed)
    gallery, probes, mates = make(n, q, kind, rng)
    singles = probes[: min(100, q)]
    rows = []

    def measure(name: str, build: Callable[[], object], search: Callable[[object, np.ndarray], np.ndarray],
                memory: Callable[[object], int], single_n: int = len(singles), batch_q: int = q) -> np.ndarray:
        build_s, index = timed(build)
        single_s, _ = timed(lambda: [search(index, singles[i:i + 1]) for i in range(single_n)])
        batch_s, top1 = timed(lambda: search(index, probes[:batch_q]))
        top1 = np.asarray(top1)
        rows.append([name, build_s, memory(index), single_n / single_s, batch_q / batch_s, top1, batch_q])
        return top1

    methods = methods or {"numpy", "sklearn", "faiss", "exact", "coded"}
    if "numpy" in methods:
        measure("numpy brute force", lambda: gallery, lambda g, x: numpy_search(g)(x), lambda g: g.nbytes,
                single_n=min(20, len(singles)))
    if "sklearn" in methods:
        measure("sklearn NearestNeighbors", lambda: NearestNeighbors(n_neighbors=1, algorithm="brute",
                                                                      metric="cosine").fit(gallery),
                lambda m, x: m.kneighbors(x, return_distance=False)[:, 0], lambda m: gallery.nbytes,
                single_n=min(10, len(singles)), batch_q=min(q, 200 if n >= 1_000_000 else q))

    def build_faiss() -> faiss.IndexFlatIP:
        idx = faiss.IndexFlatIP(DIM)
        idx.add(gallery)
        return idx

    def build_exact() -> ExactIndex:
        idx = ExactIndex(DIM)
        idx.add(gallery)
        return idx

    if "faiss" in methods:
        measure("FAISS flat (exact)", build_faiss, lambda i, x: i.search(x, 1)[1][:, 0],
                lambda i: i.ntotal * DIM * 4)
    exact_top1 = measure("Lintas exact (BLAS)", build_exact, lambda i, x: i.search(x, 1).rows[:, 0],
                         lambda i: i.memory_bytes())

    def build_coded() -> CodedIndex:
        idx = CodedIndex(DIM, candidates=rerank)
        idx.fit(gallery)  # as a shard does when it turns from exact search to codes
        idx.add(gallery)
        return idx

    measure("Lintas coded + re-score", build_coded, lambda i, x: i.search(x, 1).rows[:, 0],
            lambda i: i.memory_bytes())

    out = []
    for name, build_s, mem, single_qps, batch_qps, top1, batch_q in rows:
        hits = top1 == mates[:batch_q]
        exact_hits = exact_top1[:batch_q] == mates[:batch_q]
        recall = float((hits & exact_hits).sum() / max(1, exact_hits.sum()))
        out.append((n, kind, name, build_s, mem / 2**20, single_qps, batch_qps, float(hits.mean()), recall))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=["isotropic", "clustered", "moderate", "hard"])
    parser.add_argument("--rerank", type=int, default=1000, help="coded-index candidates re-scored exactly")
    parser.add_argument("--methods", nargs="+", default=["numpy", "sklearn", "faiss", "exact", "coded"])
    args = parser.parse_args()
    print(f"\n1:N identification, {DIM}-d float32 templates, {args.queries} mated probes, 2 cores")
    header = (f"{'enrolled':>9} {'distribution':<11} {'method':<26} {'build s':>8} {'mem MB':>8} "
              f"{'id/s single':>11} {'id/s batch':>10} {'rank-1 hit':>10} {'vs exact':>8}")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        for kind in args.kinds:
            for row in run(n, args.queries, kind, seed=n % 9973 + len(kind), rerank=args.rerank,
                           methods=set(args.methods)):
                n_, k, name, build_s, mem, single, batch, hit, recall = row
                print(f"{n_:>9,} {k:<11} {name:<26} {build_s:>8.2f} {mem:>8,.0f} {single:>11,.1f} "
                      f"{batch:>10,.1f} {hit:>10.3f} {recall:>8.3f}")
                if math.isnan(hit):
                    raise SystemExit("no hits measured")


if __name__ == "__main__":
    main()
