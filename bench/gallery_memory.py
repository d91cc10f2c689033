"""What one enrolled identity costs a worker in memory, and where it goes: one gallery shard, no broker.

.venv/bin/python -m bench.gallery_memory [--identities 100000 ...] [--breakdown 20000] [--exact-max N]

Each identity enrols with one 512-d capture through the shard's own path
(``capture_commands`` sealed as ingest seals them, then ``shard_step``), in batches of
2,000 as the dedup agent reads them. Reported per identity: the growth of the process's
resident memory (what a worker's RSS shows) and of its anonymous part (RSS less the pages of
mapped files, which the kernel can drop and read again), and, on a smaller run under
``tracemalloc`` (which inflates RSS, so it is measured apart), the Python allocations by what
holds them. ``--exact-max N``: the shard turns to the coded index past N samples, its
templates in a mapped file, as a worker's does past ``LINTAS_DEDUP_EXACT_MAX``.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import tempfile
import tracemalloc
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from agents.biometric import Capture, DedupConfig, capture_commands, shard_step
from agents.dedup import ModelThresholds, ThresholdSet
from agents.gallery import Rows
from agents.pseudonymise import Tokeniser
from agents.sealing import SubjectSealer
from agents.shard import HOT, Shard, read
from bench import print_table
from infra.process import rss_bytes
from streams.keystores import SqliteSubjectKeys
from streams.template_store import mapped_stores, record_files

DIM, MODEL, BATCH = 512, "bench-memory/1", 2000
NOW = datetime(2026, 11, 20, tzinfo=UTC)
# the functions whose allocations an identity keeps, by what they are (the rest: Python objects)
HOLDERS = {"1:N index matrix (templates)": Rows, "opened templates": SubjectSealer.open,
           "sealed copies and ids (decoded commands)": read}


def enrol(n: int, seed: int = 1, exact_max: int = 250_000, where: Path | None = None, hot: int = HOT) -> Shard:
    """A shard of ``n`` identities, one capture each (coded past ``exact_max``; records, templates under ``where``)."""
    t = ModelThresholds(MODEL, "bench", verify=0.5, mismatch=0.2, yellow=0.6, red=0.7, pair_floor=0.55)
    cfg = DedupConfig(ThresholdSet("bench", {MODEL: t}, ThresholdSet.load().default),
                      SubjectSealer(SqliteSubjectKeys(":memory:")), Tokeniser(b"bench-memory-key" * 2, "bench"),
                      shards=1, dimension=DIM, exact_max=exact_max,
                      store=mapped_stores(where) if where is not None else None,
                      records=record_files(where) if where is not None else None, hot=hot)
    rng, shard = np.random.default_rng(seed), cfg.shard(0)
    for start in range(0, n, BATCH):
        probes = []
        for i in range(start, min(n, start + BATCH)):
            probe = f"00000000-0000-4000-8000-{i:012d}"
            v = rng.standard_normal(DIM).astype(np.float32)
            probes.append((Capture(probe, probe, "crossing", "ID-BTH", NOW + timedelta(seconds=i), f"doc-{i}",
                                   {"quality": 0.9, "model": MODEL}, "biometric"), v / np.linalg.norm(v)))
        commands = capture_commands(probes, cfg.sealer, 1)
        shard_step(shard, [(start + k, c) for k, (_, c) in enumerate(commands)], cfg, NOW)
    return shard


def rss_per_identity(n: int, exact_max: int, where: Path, hot: int) -> tuple[float, float]:
    """Bytes of resident memory, and of anonymous resident memory, per identity enrolled."""
    gc.collect()
    before = rss_bytes(os.getpid()) or 0, _anonymous()
    shard = enrol(n, exact_max=exact_max, where=where, hot=hot)
    gc.collect()
    grown = (rss_bytes(os.getpid()) or 0) - before[0], _anonymous() - before[1]
    assert len(shard) == n
    return grown[0] / n, grown[1] / n


def _anonymous() -> int:
    """This process's resident anonymous memory (RssAnon), bytes."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))


def breakdown(n: int, where: Path, hot: int) -> dict[str, float]:
    """Bytes per identity of the allocations still held, by what holds them."""
    tracemalloc.start(1)
    shard = enrol(n, where=where, hot=hot)
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    spans, rest = {what: _span(fn) for what, fn in HOLDERS.items()}, "Python objects (states, keys, dicts)"
    held: dict[str, float] = defaultdict(float)
    for stat in snapshot.statistics("traceback"):
        frame = stat.traceback[0]
        what = next((w for w, (file, first, last) in spans.items()
                     if frame.filename == file and first <= frame.lineno <= last), rest)
        held[what] += stat.size / n
    assert len(shard) == n
    return dict(held)


def _span(fn: Any) -> tuple[str, int, int]:
    """The file and line range of a function or class."""
    lines, first = inspect.getsourcelines(fn)
    return inspect.getsourcefile(fn) or "", first, first + len(lines) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, nargs="+", default=[100_000])
    parser.add_argument("--breakdown", type=int, default=20_000, help="identities in the tracemalloc run")
    parser.add_argument("--exact-max", type=int, default=250_000, help="samples searched exactly; past it, codes")
    parser.add_argument("--hot", type=int, default=HOT, help="identities the shard keeps decoded (the worker's "
                                                             "LINTAS_DEDUP_HOT_IDENTITIES)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"identities in one shard": n, "index": "exact" if n <= args.exact_max else "coded, mapped",
                 **dict(zip(("RSS per identity (B)", "anonymous RSS per identity (B)"),
                            rss_per_identity(n, args.exact_max, Path(tmp), args.hot), strict=True))}
                for n in args.identities]
        parts = breakdown(args.breakdown, Path(tmp), args.hot)
    print(f"\nGallery memory, one shard, {DIM}-d float32 templates, one capture per identity, "
          f"{args.hot:,} kept decoded")
    print_table(rows, {"RSS per identity (B)": "{:,.0f}", "anonymous RSS per identity (B)": "{:,.0f}"})
    total = sum(parts.values())
    print(f"\nWhere it goes ({args.breakdown:,} identities, tracemalloc: Python's allocations only)")
    print_table([{"held by": k, "B per identity": v, "share": v / total} for k, v in
                 sorted(parts.items(), key=lambda kv: -kv[1])] + [{"held by": "total", "B per identity": total,
                                                                     "share": 1.0}],
                {"B per identity": "{:,.0f}", "share": "{:.0%}"})


if __name__ == "__main__":
    main()
