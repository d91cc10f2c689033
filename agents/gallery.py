"""1:N biometric search: template checks, an exact index and Lintas' sketch index.

Templates are L2-normalised float32 vectors, so cosine similarity is an inner
product. :class:`ExactIndex` is the baseline (FAISS flat inner product, exact).
:class:`SketchIndex` keeps a 64-byte binary sketch per template (signs of a fixed
random projection, i.e. SimHash), finds the nearest sketches by Hamming distance
(FAISS binary flat index) and re-ranks the top candidates exactly against the
float templates. Accuracy is measured against the exact index, never assumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from schemas.errors import InvalidMessage


class TemplateRejected(InvalidMessage):
    """A template that cannot be searched: wrong dimension, NaN, zero norm, or quality below the floor."""

    def __init__(self, code: str, reason: str, field: str = "template") -> None:
        """A stable code (``template_wrong_dimension``, ``_not_finite``, ``_zero_norm``, ``_low_quality``)."""
        super().__init__(f"template_{code}", field, reason)


def check_template(template: bytes, dimension: int, quality: float, expected_dim: int,
                   quality_floor: float) -> np.ndarray:
    """The template as a unit float32 vector, or :class:`TemplateRejected` saying why not."""
    if dimension != expected_dim or len(template) != 4 * expected_dim:
        raise TemplateRejected("wrong_dimension", f"template has {len(template) // 4} values, expected {expected_dim}")
    if quality < quality_floor:
        raise TemplateRejected("low_quality", f"quality {quality:.2f} is below the floor {quality_floor:.2f}")
    vec = np.frombuffer(template, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vec)):
        raise TemplateRejected("not_finite", "template contains NaN or infinite values")
    norm = float(np.linalg.norm(vec))
    if norm < 1e-6:
        raise TemplateRejected("zero_norm", "template has zero norm")
    return vec / norm


@dataclass(frozen=True)
class Hits:
    """Search results: ``scores`` and gallery row ``rows`` per query, best first; -1 where no row."""

    scores: np.ndarray
    rows: np.ndarray


class Rows:
    """A growable float32 matrix: appending is amortised O(1) (the capacity grows by a quarter), the filled rows a view.

    Both indexes keep their templates here; concatenating on every add copied the whole gallery
    once per batch (half a gigabyte a shard at 250,000 templates, most of a 1M run's CPU).
    Growing by a quarter rather than doubling leaves at most 25 % of the matrix empty (a doubled
    one held 131,072 rows for 100,000 templates) for four copies of each row over its life.
    """

    def __init__(self, dim: int) -> None:
        """No rows yet (room for 1,024)."""
        self.dim = dim
        self._data = np.empty((1024, dim), dtype=np.float32)
        self._n = 0

    def __len__(self) -> int:
        """Rows filled."""
        return self._n

    @property
    def view(self) -> np.ndarray:
        """The filled rows, in order (a view: writes go to the rows)."""
        return self._data[:self._n]

    def add(self, vectors: np.ndarray) -> None:
        """Append rows."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        need = self._n + len(vectors)
        if need > len(self._data):
            grown = np.empty((max(need, len(self._data) + max(1024, len(self._data) // 4)), self.dim), dtype=np.float32)
            grown[:self._n] = self._data[:self._n]
            self._data = grown
        self._data[self._n:need] = vectors
        self._n = need


class ExactIndex:
    """Exact inner-product search over every enrolled template: one BLAS matrix product per chunk of the gallery.

    A matrix product of the batch's queries with the templates, then a threshold or a top-k
    on the scores: measured here 4-5x FAISS's flat index (whose top-k heap, not the
    arithmetic, is its cost at k = 64), and exact (``python -m bench.dedup_index``).
    """

    CHUNK_SCORES = 16 * 2**20  # scores computed at once (64 MB of float32), however large the batch

    def __init__(self, dim: int) -> None:
        """An empty index of ``dim``-dimensional unit vectors."""
        self.dim = dim
        self._rows = Rows(dim)

    def __len__(self) -> int:
        """Enrolled templates."""
        return len(self._rows)

    @property
    def vectors(self) -> np.ndarray:
        """The enrolled templates (a view: rows in order)."""
        return self._rows.view

    def add(self, vectors: np.ndarray) -> None:
        """Enrol unit vectors; their rows are assigned in order."""
        self._rows.add(vectors)

    def vector(self, row: int) -> np.ndarray:
        """The enrolled template at ``row``."""
        return np.array(self._rows.view[row])

    def erase(self, row: int) -> None:
        """Overwrite the template at ``row`` with zeros (an erased subject; rows keep their numbers)."""
        self._rows.view[row] = 0.0

    def chunks(self, queries: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, scores of every query against a chunk of rows), chunk by chunk."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        rows, n = self._rows.view, len(self._rows)
        step = max(1024, self.CHUNK_SCORES // max(1, len(queries)))
        for start in range(0, n, step):
            yield start, queries @ rows[start:min(start + step, n)].T

    def search(self, queries: np.ndarray, k: int) -> Hits:
        """Top ``k`` by cosine similarity for each query (-1 rows past the gallery's size)."""
        n = len(queries)
        best_scores = np.full((n, k), -np.inf, dtype=np.float32)
        best_rows = np.full((n, k), -1, dtype=np.int64)
        for start, scores in self.chunks(queries):
            if k == 1:  # rank 1: a max per row, no selection
                top1 = np.argmax(scores, axis=1)
                s1 = scores[np.arange(n), top1]
                better = s1 > best_scores[:, 0]
                best_scores[better, 0], best_rows[better, 0] = s1[better], top1[better] + start
                continue
            kk = min(k, scores.shape[1])
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < scores.shape[1] else (
                np.broadcast_to(np.arange(scores.shape[1]), scores.shape))
            both_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
            both_rows = np.concatenate([best_rows, top + start], axis=1)
            keep = np.argsort(-both_scores, axis=1, kind="stable")[:, :k]
            best_scores = np.take_along_axis(both_scores, keep, 1)
            best_rows = np.take_along_axis(both_rows, keep, 1)
        best_rows[~np.isfinite(best_scores)] = -1
        return Hits(best_scores, best_rows)

    def memory_bytes(self) -> int:
        """Bytes held by the index."""
        return len(self) * self.dim * 4


class SketchIndex:
    """Hamming search over 512-bit SimHash sketches, then an exact re-rank of the top candidates.

    300 candidates keep 99.5 % of exact search's mated hits at 1M clustered templates; 100 kept 98.75 %.
    """

    def __init__(self, dim: int, bits: int = 512, rerank: int = 300, seed: int = 20221017) -> None:
        """A fixed random projection (seeded: sketches are stable across restarts and workers)."""
        self.dim, self.bits, self.rerank, self.seed = dim, bits, rerank, seed
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((dim, bits)).astype(np.float32) / math.sqrt(dim)
        self.sketches = faiss.IndexBinaryFlat(bits)
        self._rows = Rows(dim)  # the float templates, for the re-rank

    def __len__(self) -> int:
        """Enrolled templates."""
        return int(self.sketches.ntotal)

    def fit(self, vectors: np.ndarray, sample: int = 50_000) -> int:
        """Spend the sketch's bits where the templates vary: random directions in their principal subspace.

        Embeddings of a trained network lie near a low-dimensional subspace, and capture noise
        fills the rest; random hyperplanes over all ``dim`` directions then spend most bits on
        noise, and mates of a noisy model fall out of the candidates (measured: 94 % of exact
        search's mates kept at 1M with the hard face model, 100 % after this). The subspace is
        the principal components whose variance is above twice the median one; with no such
        elbow (isotropic templates) the projection stays over every direction. Call it before
        the first :meth:`add`. Returns the dimension of the subspace used.
        """
        if len(self):
            raise ValueError("fit the sketch before adding templates")
        data = np.asarray(vectors[:: max(1, len(vectors) // sample)], dtype=np.float64)
        if len(data) < 2 * self.dim:
            return self.dim
        values, vecs = np.linalg.eigh(np.cov(data.T))
        order = np.argsort(-values)
        k = int((values > 2 * np.median(values)).sum())
        if k < 8 or k >= self.dim:
            return self.dim
        basis = vecs[:, order[:k]].astype(np.float32)
        rng = np.random.default_rng(self.seed + k)
        self.projection = (basis @ rng.standard_normal((k, self.bits)).astype(np.float32)) / math.sqrt(k)
        return k

    def sketch(self, vectors: np.ndarray) -> np.ndarray:
        """Packed sign bits of the projection: ``bits / 8`` bytes per vector."""
        return np.packbits(np.asarray(vectors, dtype=np.float32) @ self.projection > 0, axis=1)

    def add(self, vectors: np.ndarray) -> None:
        """Enrol unit vectors; their rows are assigned in order."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.sketches.add(self.sketch(vectors))
        self._rows.add(vectors)

    @property
    def vectors(self) -> np.ndarray:
        """The enrolled templates (a view: rows in order)."""
        return self._rows.view

    def vector(self, row: int) -> np.ndarray:
        """The enrolled template at ``row``."""
        return np.array(self._rows.view[row])

    def erase(self, row: int) -> None:
        """Overwrite the template and its sketch at ``row`` with zeros (an erased subject; rows keep their numbers)."""
        self._rows.view[row] = 0.0
        nbytes = self.bits // 8
        faiss.rev_swig_ptr(self.sketches.xb.data(), len(self) * nbytes).reshape(len(self), nbytes)[row] = 0  # type: ignore[attr-defined]

    def search(self, queries: np.ndarray, k: int) -> Hits:
        """Top ``k`` after re-ranking the ``rerank`` nearest sketches exactly."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        vectors = self._rows.view
        n_cand = min(max(self.rerank, k), len(self))
        _, cand = self.sketches.search(self.sketch(queries), n_cand)
        safe = np.where(cand < 0, 0, cand)
        scores = np.empty(cand.shape, dtype=np.float32)
        # Re-rank a few queries at a time: their candidates' templates (64 × 300 × 2 KB) stay in cache,
        # where one gather for a whole batch of 2,000 would be a 1.2 GB copy (5x slower).
        for s in range(0, len(queries), 64):
            scores[s:s + 64] = np.einsum("qd,qkd->qk", queries[s:s + 64], vectors[safe[s:s + 64]])
        scores = np.where(cand < 0, -np.inf, scores)
        order = np.argsort(-scores, axis=1)[:, :k]
        return Hits(np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(cand, order, 1))

    def memory_bytes(self) -> int:
        """Bytes held: sketches plus the float templates kept for the re-rank."""
        return len(self) * (self.bits // 8 + self.dim * 4)


class SampleIndex:
    """The samples of one template model in one shard, keyed, with removals: exact while small, then the sketch.

    Exact search (BLAS) while the index holds at most ``exact_max`` live samples,
    so pairs are found exactly where it is cheap; past it, the index is rebuilt as a
    :class:`SketchIndex` (``rerank`` candidates re-scored exactly). Removed samples are
    zeroed and skipped; the index is rebuilt without them once they are a third of it.
    """

    def __init__(self, dim: int, exact_max: int = 250_000, rerank: int = 300) -> None:
        """An empty index of ``dim``-dimensional unit vectors."""
        self.dim, self.exact_max, self.rerank = dim, exact_max, rerank
        self.index: ExactIndex | SketchIndex = ExactIndex(dim)
        self.keys: list[Any] = []  # row → key (None once removed)
        self.row: dict[Any, int] = {}
        self.owner: dict[Any, str] = {}
        self._codes: dict[str, int] = {}  # owner → a number, for the exact search's mask
        self._row_owner = np.empty(0, dtype=np.int64)  # row → its owner's number (-1 once removed)

    def __len__(self) -> int:
        """Live samples."""
        return len(self.row)

    @property
    def kind(self) -> str:
        """``exact`` or ``sketch``: what the next search uses."""
        return "exact" if isinstance(self.index, ExactIndex) else "sketch"

    def add(self, keys: Sequence[Any], vectors: np.ndarray, owners: Sequence[str]) -> None:
        """Add samples (a key already present is replaced)."""
        self.remove([k for k in keys if k in self.row])
        if not len(keys):
            return
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        for key, owner in zip(keys, owners, strict=True):
            self.row[key] = len(self.keys)
            self.keys.append(key)
            self.owner[key] = owner
        self._mark([self._codes.setdefault(o, len(self._codes)) for o in owners])
        if isinstance(self.index, ExactIndex) and len(self.row) > self.exact_max:
            self._rebuild(SketchIndex(self.dim, rerank=self.rerank))  # its projection fitted to what is here

    def remove(self, keys: Sequence[Any]) -> None:
        """Forget samples (unknown keys are ignored)."""
        for key in keys:
            row = self.row.pop(key, None)
            if row is not None:
                self.index.erase(row)
                self.keys[row] = None
                self.owner.pop(key, None)
                self._row_owner[row] = -1
        dead = len(self.keys) - len(self.row)
        if dead > max(1024, len(self.keys) // 3):
            self._rebuild(ExactIndex(self.dim) if len(self.row) <= self.exact_max
                          else SketchIndex(self.dim, rerank=self.rerank))

    def _rebuild(self, fresh: ExactIndex | SketchIndex) -> None:
        live = [(k, r) for k, r in self.row.items()]
        vectors = np.stack([self.index.vector(r) for _, r in live]) if live else np.empty((0, self.dim), np.float32)
        if isinstance(fresh, SketchIndex):
            if isinstance(self.index, SketchIndex):
                fresh.projection = self.index.projection  # a compaction keeps the projection it was fitted with
            else:
                fresh.fit(vectors)
        self.index = fresh
        self.keys, self.row = [], {}
        self._row_owner = np.empty(0, dtype=np.int64)
        if live:
            self.index.add(vectors)
            for i, (key, _) in enumerate(live):
                self.row[key] = i
                self.keys.append(key)
            self._mark([self._codes[self.owner[key]] for key, _ in live])

    def _mark(self, codes: list[int]) -> None:
        """Owner numbers of rows just added (in row order), growing the array by doubling."""
        n = len(self.keys)
        if n > len(self._row_owner):
            grown = np.full(max(n, 2 * len(self._row_owner), 1024), -1, dtype=np.int64)
            grown[:len(self._row_owner)] = self._row_owner
            self._row_owner = grown
        self._row_owner[n - len(codes):n] = codes

    def vector(self, key: Any) -> np.ndarray:
        """The sample's template."""
        return self.index.vector(self.row[key])

    def search(self, queries: np.ndarray, floor: float,
               exclude: Sequence[str]) -> list[tuple[list[tuple[Any, float]], float]]:
        """Per query, every sample at or above ``floor`` not owned by ``exclude[i]``, and the best such score.

        The best score is -1 when the index holds nobody else.
        """
        n = len(queries)
        if not len(self.row) or not n:
            return [([], -1.0) for _ in range(n)]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if isinstance(self.index, ExactIndex):
            return self._above(self.index, queries, floor, exclude)
        k = min(len(self.keys), 64)
        hits = self.index.search(queries, k)
        out = []
        for i in range(n):
            found, best = [], -1.0
            for row, score in zip(hits.rows[i], hits.scores[i], strict=True):
                key = self.keys[row] if row >= 0 else None
                if key is None or self.owner[key] == exclude[i]:
                    continue
                best = max(best, float(score))
                if score >= floor:
                    found.append((key, float(score)))
            out.append((found, best))
        return out

    def _above(self, index: ExactIndex, queries: np.ndarray, floor: float,
               exclude: Sequence[str]) -> list[tuple[list[tuple[Any, float]], float]]:
        """Exact: every score of every query, thresholded; the query's own identity and removed rows left out."""
        row_owner = self._row_owner
        query_owner = np.array([self._codes.get(e, -2) for e in exclude], dtype=np.int64)
        best = np.full(len(queries), -1.0)
        found: list[list[tuple[Any, float]]] = [[] for _ in range(len(queries))]
        for start, scores in index.chunks(queries):
            owners = row_owner[start:start + scores.shape[1]]
            scores[(owners[None, :] == query_owner[:, None]) | (owners[None, :] < 0)] = -np.inf
            top = scores.max(axis=1)
            best = np.maximum(best, top)
            for q in np.flatnonzero(top >= floor):  # most queries have nobody at the floor: skip their rows
                for r in np.flatnonzero(scores[q] >= floor):
                    found[q].append((self.keys[start + r], float(scores[q, r])))
        for hits in found:
            hits.sort(key=lambda h: -h[1])
        return [(hits, float(b)) for hits, b in zip(found, best, strict=True)]
