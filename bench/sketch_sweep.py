"""Sketch index sweep at 1M clustered templates: bits and re-rank depth against exact FAISS.

    .venv/bin/python -m bench.sketch_sweep
"""

import time

import numpy as np

from agents.gallery import ExactIndex, SketchIndex
from bench.dedup_index import make

rng = np.random.default_rng(7)
g, p, m = make(1_000_000, 400, "clustered", rng)
ex = ExactIndex(512); ex.add(g)
t=time.perf_counter(); e = ex.search(p, 1).rows[:,0]; te=time.perf_counter()-t
eh = e == m
print("exact", 400/te, eh.mean())
for bits, rr in [(512, 100), (512, 300), (256, 300), (256, 600), (384, 300)]:
    s = SketchIndex(512, bits=bits, rerank=rr); s.add(g); s.search(p[:1],1)
    t=time.perf_counter(); r = s.search(p, 1).rows[:,0]; ts=time.perf_counter()-t
    print(bits, rr, f"{400/ts:.0f} id/s  speedup {te/ts:.2f}  kept {((r==m)&eh).sum()/eh.sum():.4f}")
