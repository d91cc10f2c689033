"""Sketch index sweep at 1M clustered templates: sketch bits and re-rank depth against exact FAISS.

    .venv/bin/python -m bench.sketch_sweep
"""

from __future__ import annotations

import time

import numpy as np

from agents.gallery import ExactIndex, SketchIndex
from bench.dedup_index import DIM, make

CONFIGS = [(512, 100), (512, 300), (256, 300), (256, 600), (384, 300)]


def main() -> None:
    probes_n = 400
    gallery, probes, mates = make(1_000_000, probes_n, "clustered", np.random.default_rng(7))
    exact = ExactIndex(DIM)
    exact.add(gallery)
    t = time.perf_counter()
    exact_hits = exact.search(probes, 1).rows[:, 0] == mates
    exact_s = time.perf_counter() - t
    print(f"\n{'bits':>5} {'re-rank':>8} {'id/s batch':>10} {'vs exact speed':>14} {'hits kept':>10}")
    print(f"{'exact':>5} {'-':>8} {probes_n / exact_s:>10,.0f} {1.0:>14.2f} {1.0:>10.4f}")
    for bits, rerank in CONFIGS:
        index = SketchIndex(DIM, bits=bits, rerank=rerank)
        index.add(gallery)
        index.search(probes[:1], 1)
        t = time.perf_counter()
        rows = index.search(probes, 1).rows[:, 0]
        secs = time.perf_counter() - t
        kept = ((rows == mates) & exact_hits).sum() / exact_hits.sum()
        print(f"{bits:>5} {rerank:>8} {probes_n / secs:>10,.0f} {exact_s / secs:>14.2f} {kept:>10.4f}")


if __name__ == "__main__":
    main()
