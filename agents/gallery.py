"""1:N biometric search: template checks, an exact index and a coded one for large galleries.

Templates are L2-normalised float32 vectors, so cosine similarity is an inner
product. :class:`ExactIndex` scores every template (one BLAS product per chunk).
:class:`CodedIndex` finds candidates among compact codes (FAISS IVF with 4-bit PQ
fast-scan) and re-scores them exactly against the full templates, which may live in
a memory-mapped file (a subclass of :class:`Rows`). :class:`SampleIndex` is what a gallery
shard holds: exact while small, coded past it. Recall of the coded index against
exact search is measured (``python -m bench.gallery_scale``), never assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
            self._data = self._grown(max(need, len(self._data) + max(1024, len(self._data) // 4)))
        self._data[self._n:need] = vectors
        self._n = need

    def _grown(self, rows: int) -> np.ndarray:
        """Room for ``rows`` rows, the filled ones in place (here: a new matrix and one copy)."""
        grown = np.empty((rows, self.dim), dtype=np.float32)
        grown[:self._n] = self._data[:self._n]
        return grown

    def erase(self, row: int) -> None:
        """Overwrite the row with zeros."""
        self._data[row] = 0.0

    @contextmanager
    def sequential(self) -> Iterator[None]:
        """Rows about to be read in order (a mapped store reads ahead meanwhile); nothing to do in memory."""
        yield

    def flush(self) -> None:
        """Nothing to write: the rows live in memory (a mapped store writes its file here)."""

    def close(self) -> None:
        """Nothing to release but the memory, which goes with the object."""


def rescore(queries: np.ndarray, vectors: np.ndarray, candidates: np.ndarray, k: int) -> Hits:
    """The ``k`` best of each query's candidate rows (-1: none), scored exactly against the full templates."""
    safe = np.where(candidates < 0, 0, candidates)
    scores = np.empty(candidates.shape, dtype=np.float32)
    # A few queries at a time: their candidates' templates (about 20,000 rows, 40 MB at 512-d) are
    # gathered once, where one gather for a whole batch of 2,000 would be gigabytes (5x slower).
    step = max(1, 20_000 // max(1, candidates.shape[1]))
    for s in range(0, len(queries), step):
        scores[s:s + step] = np.einsum("qd,qkd->qk", queries[s:s + step], vectors[safe[s:s + step]])
    scores = np.where(candidates < 0, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return Hits(np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(candidates, order, 1))


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
        self._rows.erase(row)

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


CANDIDATES = 1000  # fast-scan codes re-ranked by their 8-bit codes per query (LINTAS_DEDUP_RERANK)
NPROBE = 1024  # inverted lists scanned per query (LINTAS_DEDUP_NPROBE)
MARGIN = 0.02  # an 8-bit score this far below the floor is still re-scored exactly (measured error: under 0.005)
BEST = 1  # the best candidates by their 8-bit codes, always re-scored exactly (each query's best score)


class CodedIndex:
    """Candidates from compact codes in an inverted file, re-ranked by 8-bit codes, scores from the full templates.

    FAISS's recipe for galleries of 10M and more per server, in three tiers: an inverted
    file (k-means cells, :meth:`lists_for`) of 4-bit product-quantisation codes scanned with
    SIMD (fast-scan: ``dim / 8`` bytes a template), ``nprobe`` cells per query, gives the
    ``candidates`` nearest; their 8-bit scalar codes (``dim`` bytes a template, in memory)
    re-rank them; and the full templates (often a memory-mapped file) give the **exact**
    score of every candidate whose 8-bit score reaches the floor less :data:`MARGIN`, and of
    the best one. Only whether a mate reaches the exact score depends on the codes;
    every score reported is the exact one (``python -m bench.gallery_scale`` measures both),
    and few templates are read per query, so the store need not fit in memory.
    Trained once by :meth:`fit` on a sample taken in row order with FAISS's fixed seeds: the
    same rows give the same codebooks, whatever the threads. Erased rows leave the codes
    (``remove_ids``) before the next search; their 8-bit codes and templates are zeroed.
    """

    def __init__(self, dim: int, candidates: int = CANDIDATES, nprobe: int = NPROBE,
                 rows: Rows | None = None) -> None:
        """An untrained index (:meth:`fit` it, or the first :meth:`add` does); templates in ``rows`` or memory."""
        self.dim, self.candidates, self.nprobe = dim, candidates, nprobe
        self.index: Any = None  # the cells and their 4-bit codes, ids = row numbers
        self.fine: Any = None  # the 8-bit codes, in row order
        self._rows: Rows = rows if rows is not None else Rows(dim)
        self._erased: list[int] = []  # rows whose codes leave at the next search

    def __len__(self) -> int:
        """Rows held (erased ones included: rows keep their numbers)."""
        return len(self._rows)

    @staticmethod
    def lists_for(n: int) -> int:
        """Inverted lists for ``n`` templates: about 4 √n, a power of two, at most 4,096, 64 training points each.

        The cap keeps the coarse quantiser flat (exact and deterministic: an HNSW graph built
        on several threads is not) and its training minutes on two cores, not hours; past
        1M the lists grow longer, which 4-bit fast-scan codes make cheap to scan.
        """
        return int(2 ** max(4, min(12, round(math.log2(4 * math.sqrt(max(n, 1)))), int(math.log2(max(n, 1) / 64)))))

    def fit(self, vectors: np.ndarray) -> None:
        """Train the cells (as many as :meth:`lists_for` says) and both codebooks on every k-th row of ``vectors``."""
        if self.index is not None:
            raise ValueError("fit the index before adding templates")
        lists = self.lists_for(len(vectors))
        self.index = faiss.index_factory(self.dim, f"IVF{lists},PQ{self.dim // 4}x4fs", faiss.METRIC_INNER_PRODUCT)
        self.fine = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sample = np.ascontiguousarray(vectors[:: max(1, len(vectors) // (64 * lists))], dtype=np.float32)
        self.index.train(sample)
        self.fine.train(sample)
        faiss.extract_index_ivf(self.index).nprobe = min(self.nprobe, lists)

    @classmethod
    def over(cls, rows: Rows, candidates: int = CANDIDATES, nprobe: int = NPROBE,
             chunk: int = 250_000) -> CodedIndex:
        """An index over the templates already in ``rows`` (a store mapped from disk): trained, then every row coded."""
        index = cls(rows.dim, candidates, nprobe, rows)
        with rows.sequential():
            index.fit(rows.view)
            for start in range(0, len(rows), chunk):
                index._code(np.ascontiguousarray(rows.view[start:start + chunk]), start)
        return index

    def emptied(self, rows: Rows | None = None) -> CodedIndex:
        """An empty index with the same cells and codebooks (a compaction keeps what was trained)."""
        fresh = CodedIndex(self.dim, self.candidates, self.nprobe, rows)
        fresh.index, fresh.fine = faiss.clone_index(self.index), faiss.clone_index(self.fine)
        fresh.index.reset()
        fresh.fine.reset()
        return fresh

    def add(self, vectors: np.ndarray) -> None:
        """Enrol unit vectors; their rows are assigned in order."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.index is None:
            self.fit(vectors)
        self._code(vectors, len(self._rows))
        self._rows.add(vectors)

    def _code(self, vectors: np.ndarray, first: int) -> None:
        """Code rows ``first``, ``first + 1``...: 4-bit codes in their cells (row numbers as ids), 8-bit in order."""
        if first != self.fine.ntotal:
            raise ValueError(f"rows are coded in order: row {first} follows {self.fine.ntotal} coded rows")
        self.index.add_with_ids(vectors, np.arange(first, first + len(vectors), dtype=np.int64))
        self.fine.add(vectors)

    @property
    def vectors(self) -> np.ndarray:
        """The enrolled templates (a view: rows in order)."""
        return self._rows.view

    def vector(self, row: int) -> np.ndarray:
        """The enrolled template at ``row``."""
        return np.array(self._rows.view[row])

    def erase(self, row: int) -> None:
        """Zero the template and 8-bit code at ``row``; by the next search its 4-bit code leaves the lists too."""
        self._rows.erase(row)
        self.fine_codes()[row] = 0
        self._erased.append(row)

    def fine_codes(self) -> np.ndarray:
        """The 8-bit codes, one row per template (a view of FAISS's own array: writes go to it)."""
        codes = faiss.rev_swig_ptr(self.fine.codes.data(), self.fine.codes.size())
        return codes.reshape(self.fine.ntotal, self.fine.code_size)

    def purge(self) -> None:
        """Take erased rows' codes out of the lists (one pass for all of them) and write the store."""
        if self._erased:
            self.index.remove_ids(faiss.IDSelectorBatch(np.array(self._erased, dtype=np.int64)))
            self._erased = []
            self._rows.flush()

    def search(self, queries: np.ndarray, k: int, floor: float = -1.0) -> Hits:
        """Up to ``k`` rows per query, scored exactly (-1 rows where fewer).

        Those are every candidate whose 8-bit score reaches ``floor`` less :data:`MARGIN`, and the best one.
        """
        self.purge()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not self.index.ntotal:
            return Hits(np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
        refine = faiss.IndexRefine(self.fine, self.fine)  # the wrapper only: base and 8-bit codes are ours
        refine.base_index = self.index  # whose ids are row numbers of ``fine``, fewer once rows are erased
        refine.k_factor = 1.0
        wanted = min(max(self.candidates, k), self.index.ntotal)
        approx, cand = refine.search(queries, wanted)  # the candidates, re-ranked by their 8-bit scores
        chosen = (cand >= 0) & ((approx >= floor - MARGIN) | (np.arange(wanted) < BEST))
        width = max(1, int(chosen.sum(axis=1).max()))
        cand = np.where(chosen, cand, -1)[:, :width]  # chosen ones come first: the 8-bit scores are sorted
        return rescore(queries, self._rows.view, cand, min(k, width))

    def close(self) -> None:
        """Release the template store (an index replaced by a rebuild)."""
        self._rows.close()

    def code_bytes(self) -> int:
        """Bytes of the codes held in memory: cells, lists and 4-bit codes (serialised size), and the 8-bit codes."""
        return len(faiss.serialize_index(self.index)) + self.fine.ntotal * self.fine.code_size

    def memory_bytes(self) -> int:
        """Bytes held: the codes and the float templates."""
        return self.code_bytes() + len(self) * self.dim * 4


def _doubled(array: np.ndarray, need: int, fill: int) -> np.ndarray:
    """``array`` if it holds ``need`` items, else a copy at least twice its size (1,024 at least), the rest ``fill``."""
    if need <= len(array):
        return array
    grown = np.full(max(need, 2 * len(array), 1024), fill, dtype=array.dtype)
    grown[:len(array)] = array
    return grown


class SampleIndex:
    """The samples of one template model in one shard, keyed, with removals: exact while small, then coded.

    Exact search (BLAS) while the index holds at most ``exact_max`` live samples,
    so pairs are found exactly where it is cheap; past it, the index is rebuilt as a
    :class:`CodedIndex` trained on what it holds (``rerank`` candidates re-ranked by
    8-bit codes, those near the floor scored exactly), and trained again, its cells sized
    anew, each time the gallery grows eightfold. Removed samples are zeroed and skipped;
    the index is rebuilt without them (keeping its codebooks) once they are a third of it. A coded index keeps its
    full templates where ``store`` says (a memory-mapped file in the worker), else in memory.
    """

    def __init__(self, dim: int, exact_max: int = 250_000, rerank: int = CANDIDATES, nprobe: int = NPROBE,
                 store: Callable[[int], Rows] | None = None) -> None:
        """An empty index of ``dim``-dimensional unit vectors; a coded one keeps its templates in ``store(dim)``."""
        self.dim, self.exact_max, self.rerank, self.nprobe, self.store = dim, exact_max, rerank, nprobe, store
        self.index: ExactIndex | CodedIndex = ExactIndex(dim)
        self.trained_on = 0  # live samples the codes were trained on
        self.keys: list[Any] = []  # row → key (None once removed)
        self.row: dict[Any, int] = {}
        self._codes: dict[str, int] = {}  # owner → a number, for the exact search's mask
        self._row_owner = np.empty(0, dtype=np.int64)  # row → its owner's number (-1 once removed)
        self._owned = np.zeros(0, dtype=np.int32)  # owner's number → live rows

    def __len__(self) -> int:
        """Live samples."""
        return len(self.row)

    @property
    def kind(self) -> str:
        """``exact`` or ``coded``: what the next search uses."""
        return "exact" if isinstance(self.index, ExactIndex) else "coded"

    def add(self, keys: Sequence[Any], vectors: np.ndarray, owners: Sequence[str]) -> None:
        """Add samples (a key already present is replaced)."""
        self.remove([k for k in keys if k in self.row])
        if not len(keys):
            return
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        for key in keys:
            self.row[key] = len(self.keys)
            self.keys.append(key)
        self._mark([self._codes.setdefault(o, len(self._codes)) for o in owners])
        grown = isinstance(self.index, ExactIndex) or len(self.row) > 8 * self.trained_on
        if len(self.row) > self.exact_max and grown:
            self._rebuild(retrain=True)  # codes trained on what is here, cells sized for it

    def remove(self, keys: Sequence[Any]) -> None:
        """Forget samples (unknown keys are ignored)."""
        for key in keys:
            row = self.row.pop(key, None)
            if row is not None:
                self.index.erase(row)
                self.keys[row] = None
                self._owned[self._row_owner[row]] -= 1
                self._row_owner[row] = -1
        dead = len(self.keys) - len(self.row)
        if dead > max(1024, len(self.keys) // 3):
            self._rebuild(retrain=False)

    def _rebuild(self, retrain: bool) -> None:
        """The live rows again, in order: exact while few enough, else codes (trained afresh, or the ones in use)."""
        live = list(self.row.items())
        rows = np.fromiter((r for _, r in live), dtype=np.int64, count=len(live))
        owners = self._row_owner[rows].tolist()
        with self.index._rows.sequential():  # the live rows, in order
            vectors = np.ascontiguousarray(self.index.vectors[rows])
        fresh: ExactIndex | CodedIndex
        if len(live) <= self.exact_max:
            fresh = ExactIndex(self.dim)
        elif retrain or not isinstance(self.index, CodedIndex):
            fresh = CodedIndex(self.dim, self.rerank, self.nprobe, self._store())
            fresh.fit(vectors)
            self.trained_on = len(vectors)
        else:
            fresh = self.index.emptied(self._store())  # a compaction keeps the codebooks
        if isinstance(self.index, CodedIndex):
            self.index.close()
        self.index = fresh
        self.keys, self.row = [], {}
        self._row_owner = np.empty(0, dtype=np.int64)
        self._owned[:] = 0
        if live:
            self.index.add(vectors)
            for i, (key, _) in enumerate(live):
                self.row[key] = i
                self.keys.append(key)
            self._mark(owners)

    def _store(self) -> Rows | None:
        """Where a coded index's templates go: a new store of ``store``, or memory."""
        return self.store(self.dim) if self.store is not None else None

    def _mark(self, codes: list[int]) -> None:
        """Owner numbers of rows just added (in row order), growing the arrays by doubling."""
        n = len(self.keys)
        self._row_owner = _doubled(self._row_owner, n, -1)
        self._row_owner[n - len(codes):n] = codes
        self._owned = _doubled(self._owned, len(self._codes), 0)
        np.add.at(self._owned, np.asarray(codes, dtype=np.int64), 1)

    def holds(self, owner: str, keys: Sequence[Any]) -> bool:
        """Whether the owner's live samples are exactly ``keys``."""
        code = self._codes.get(owner)
        held = int(self._owned[code]) if code is not None else 0
        return held == len(keys) and all(k in self.row for k in keys)

    def owned(self, owner: str) -> list[Any]:
        """The owner's live samples' keys (a scan of every row: for the rare case :meth:`holds` says no)."""
        code = self._codes.get(owner)
        if code is None:
            return []
        return [self.keys[r] for r in np.flatnonzero(self._row_owner[:len(self.keys)] == code)]

    def vector(self, key: Any) -> np.ndarray:
        """The sample's template."""
        return self.index.vector(self.row[key])
    def search(self, queries: np.ndarray, floor: float,
               exclude: Sequence[str]) -> list[tuple[list[tuple[Any, float]], float]]:
        """Per query, every sample at or above ``floor`` not owned by ``exclude[i]``, and the best such score.

        The best score is -1 when the index holds nobody else. Coded, both are what the
        candidates scored exactly hold: a sample the codes did not propose is missing, and a
        best score below the floor may be a lower one than exact search's.
        """
        n = len(queries)
        if not len(self.row) or not n:
            return [([], -1.0) for _ in range(n)]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        query_owner = np.array([self._codes.get(e, -2) for e in exclude], dtype=np.int64)
        if isinstance(self.index, ExactIndex):
            return self._above(self.index, queries, floor, query_owner)
        hits = self.index.search(queries, min(len(self.keys), self.rerank), floor)  # each one near the floor
        owners = np.where(hits.rows >= 0, self._row_owner[np.maximum(hits.rows, 0)], -1)
        others = (owners >= 0) & (owners != query_owner[:, None])  # the query's own identity and removed rows out
        best = np.where(others, hits.scores, -1.0).max(axis=1)
        out = []
        for i in range(n):
            chosen = others[i] & (hits.scores[i] >= floor)
            out.append(([(self.keys[r], float(x)) for r, x in zip(hits.rows[i][chosen], hits.scores[i][chosen],
                                                                    strict=True)], float(best[i])))
        return out

    def _above(self, index: ExactIndex, queries: np.ndarray, floor: float,
               query_owner: np.ndarray) -> list[tuple[list[tuple[Any, float]], float]]:
        """Exact: every score of every query, thresholded; the query's own identity and removed rows left out."""
        row_owner = self._row_owner
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
