"""Biometric deduplication decisions and the NIST FRTE 1:N accuracy metric (pure functions).

For each capture, the best candidate over every gallery shard decides: same subject and same
identity → known traveller; same subject under another document or name → a
multiple-identity link, red above the confident threshold, yellow (manual review)
in the grey zone; no candidate above the grey zone → enrol a new subject.
Thresholds are versioned and every decision carries the version and the score.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class Outcome(StrEnum):
    """What one identification concluded."""

    KNOWN = "known_traveller"
    LINK_RED = "link_red"
    LINK_YELLOW = "link_yellow"
    ENROL = "enrol"


@dataclass(frozen=True)
class Thresholds:
    """Cosine-score thresholds, versioned so every decision can be traced to its settings."""

    version: str
    red: float
    yellow: float

    def __post_init__(self) -> None:
        """The grey zone must lie below the confident threshold."""
        if not -1.0 <= self.yellow <= self.red <= 1.0:
            raise ValueError("thresholds need -1 <= yellow <= red <= 1")


@dataclass(frozen=True)
class Decision:
    """One identification: the outcome, the matched subject (if any), the score and the threshold version."""

    outcome: Outcome
    subject: str | None
    score: float
    thresholds_version: str


def decide(score: float, candidate_subject: str | None, same_identity: bool, thresholds: Thresholds) -> Decision:
    """Decide from the best candidate: known, red or yellow link, or (subject ``None``) enrol."""
    if candidate_subject is None or score < thresholds.yellow:
        return Decision(Outcome.ENROL, None, score, thresholds.version)
    if same_identity:
        return Decision(Outcome.KNOWN, candidate_subject, score, thresholds.version)
    outcome = Outcome.LINK_RED if score >= thresholds.red else Outcome.LINK_YELLOW
    return Decision(outcome, candidate_subject, score, thresholds.version)


def fnir_at_fpir(mated_scores: np.ndarray, mated_correct: np.ndarray, nonmated_scores: np.ndarray,
                 fpir: float = 0.003) -> tuple[float, float]:
    """NIST FRTE 1:N: (FNIR, threshold) at the threshold where FPIR equals ``fpir``.

    ``mated_scores``/``mated_correct``: rank-1 score of each mated search and whether
    rank 1 was the true mate. ``nonmated_scores``: rank-1 score of each search for a
    subject not in the gallery. A mated search is a miss if rank 1 is not the mate or
    scores below the threshold; a non-mated search is a false positive at or above it.
    """
    nonmated = np.sort(np.asarray(nonmated_scores, dtype=np.float64))
    if len(nonmated) == 0:
        raise ValueError("FPIR needs non-mated searches")
    # Smallest threshold with at most fpir of non-mated searches at or above it.
    allowed = int(np.floor(fpir * len(nonmated)))
    threshold = float(np.nextafter(nonmated[len(nonmated) - allowed - 1], np.inf))
    hits = np.asarray(mated_correct, dtype=bool) & (np.asarray(mated_scores) >= threshold)
    return float(1.0 - hits.mean()), threshold


@dataclass(frozen=True)
class Probe:
    """One capture to identify: its id, unit template and the identity it was presented under (a token)."""

    probe_id: str
    template: np.ndarray
    identity: str


@dataclass(frozen=True)
class Candidate:
    """A gallery subject near a probe: where it lives, its score, and whether the probe's identity is already its."""

    subject: str
    shard: int
    score: float
    same_identity: bool


def merge(first: Sequence[Candidate], second: Sequence[Candidate], k: int) -> tuple[Candidate, ...]:
    """The best ``k`` of two candidate lists, one entry per subject, best first (ties by subject id)."""
    best: dict[str, Candidate] = {}
    for c in (*first, *second):
        if c.subject not in best or c.score > best[c.subject].score:
            best[c.subject] = c
    return tuple(sorted(best.values(), key=lambda c: (-c.score, c.subject))[:k])


@dataclass(frozen=True)
class Visit:
    """A probe at one shard: the candidates carried from the shards before, and whether this shard decides."""

    probe: Probe
    carried: tuple[Candidate, ...] = ()
    final: bool = True


@dataclass(frozen=True)
class VisitResult:
    """What one shard concluded for one probe.

    ``candidates``: best so far (to carry on, or the basis of the decision).
    ``decision``: final visits only. ``enrolled``: this visit added a new subject
    to this shard. ``alias``: for a link, the subject that gains the probe's identity.
    """

    candidates: tuple[Candidate, ...]
    decision: Decision | None = None
    enrolled: bool = False
    alias: Candidate | None = None


def final_decision(probe: Probe, candidates: Sequence[Candidate], thresholds: Thresholds,
                   own_subject: str) -> tuple[Decision, Candidate | None]:
    """Decide a probe at its owner shard; ``own_subject`` is the id it gets if enrolled.

    A replayed probe (after a crash) finds its own earlier enrolment: that candidate is
    ignored, so the replay decides exactly as the first run did.
    """
    others = [c for c in candidates if c.subject != own_subject]
    best = others[0] if others else None
    decision = decide(best.score if best else -1.0, best.subject if best else None,
                      best.same_identity if best else False, thresholds)
    if decision.outcome is Outcome.ENROL:
        return Decision(Outcome.ENROL, own_subject, decision.score, thresholds.version), best
    return decision, best


class Shard:
    """One gallery shard: enrolled subjects' templates in a 1:N index and the identities each has presented.

    Every subject lives in exactly one shard. A probe visits every shard (searching
    each) and is decided at its owner shard, which enrols it when nobody matched.
    """

    def __init__(self, number: int, index: Any, k: int = 3) -> None:
        """``index`` is an ExactIndex or SketchIndex; ``k`` candidates are carried between shards."""
        self.number, self.index, self.k = number, index, k
        self.row_subject: list[str] = []
        self.subject_row: dict[str, int] = {}
        self.identities: dict[str, dict[str, str]] = {}  # subject → identity → probe that presented it first

    def __len__(self) -> int:
        """Enrolled subjects (erased ones not counted)."""
        return len(self.subject_row)

    def __contains__(self, subject: object) -> bool:
        """Whether ``subject`` is enrolled here (or in the batch being visited)."""
        return subject in self.identities

    def enrol(self, subjects: Sequence[str], templates: np.ndarray, identities: Sequence[dict[str, str]]) -> int:
        """Add subjects (e.g. loaded from the gallery topic); ones already here only update identities."""
        fresh = [i for i, s in enumerate(subjects) if s not in self.subject_row]
        for i, subject in enumerate(subjects):
            self.identities.setdefault(subject, {}).update(identities[i])
        if fresh:
            self.index.add(np.ascontiguousarray(templates[fresh], dtype=np.float32))
            for i in fresh:
                self.subject_row[subjects[i]] = len(self.row_subject)
                self.row_subject.append(subjects[i])
        return len(fresh)

    def add_identity(self, subject: str, identity: str, probe_id: str) -> bool:
        """Record that ``subject`` presented ``identity``; False if it was known already or the subject isn't here."""
        if subject not in self.subject_row or identity in self.identities[subject]:
            return False
        self.identities[subject][identity] = probe_id
        return True

    def erase(self, subject: str, identity: str) -> tuple[bool, list[str]]:
        """Forget an erased person: ``subject``'s template (zeroed in the index) and ``identity`` wherever presented.

        Returns whether the subject was here and the other subjects that lost the identity
        (their gallery records are rewritten without it).
        """
        removed = subject in self.subject_row
        if removed:
            row = self.subject_row.pop(subject)
            self.index.erase(row)
            self.row_subject[row] = ""
            del self.identities[subject]
        changed = []
        if identity:
            for other, identities in self.identities.items():
                if identities.pop(identity, None) is not None:
                    changed.append(other)
        return removed, changed

    def template(self, subject: str) -> np.ndarray:
        """The enrolled template of ``subject``."""
        return self.index.vector(self.subject_row[subject])  # type: ignore[no-any-return]

    def _same(self, subject: str, probe: Probe) -> bool:
        added_by = self.identities.get(subject, {}).get(probe.identity)
        return added_by is not None and added_by != probe.probe_id  # a replay doesn't count its own identity

    def visit(self, visits: Sequence[Visit], thresholds: Thresholds,
              subject_for: Callable[[str], str]) -> list[VisitResult]:
        """Search a batch of probes in this shard; decide (and enrol) the final ones, in order.

        A probe enrolled earlier in the batch is searched by the later ones too, so a
        new person captured twice in one batch is enrolled once.
        """
        if not visits:
            return []
        queries = np.stack([v.probe.template for v in visits]).astype(np.float32)
        if len(self.index):
            hits = self.index.search(queries, min(self.k, len(self.index)))
            scores, rows = hits.scores.astype(float), hits.rows.astype(int)
        else:
            scores, rows = np.empty((len(visits), 0)), np.empty((len(visits), 0), dtype=int)
        pending: list[tuple[str, np.ndarray]] = []
        results: list[VisitResult] = []
        for i, v in enumerate(visits):
            local = [Candidate(self.row_subject[r], self.number, float(s), self._same(self.row_subject[r], v.probe))
                     for s, r in zip(scores[i], rows[i], strict=True) if r >= 0 and self.row_subject[r]]
            if pending:
                near = np.stack([t for _, t in pending]) @ v.probe.template
                for j in np.argsort(-near)[:self.k]:
                    subject = pending[j][0]
                    local.append(Candidate(subject, self.number, float(near[j]), self._same(subject, v.probe)))
            candidates = merge(v.carried, local, self.k)
            if not v.final:
                results.append(VisitResult(candidates))
                continue
            own = subject_for(v.probe.probe_id)
            decision, best = final_decision(v.probe, candidates, thresholds, own)
            enrolled = False
            if decision.outcome is Outcome.ENROL and own not in self:
                pending.append((own, v.probe.template))
                self.identities[own] = {v.probe.identity: v.probe.probe_id}
                enrolled = True
            alias = best if decision.outcome in (Outcome.LINK_RED, Outcome.LINK_YELLOW) else None
            results.append(VisitResult(candidates, decision, enrolled, alias))
        if pending:
            subjects = [s for s, _ in pending]
            self.enrol(subjects, np.stack([t for _, t in pending]), [self.identities[s] for s in subjects])
        return results


def shard_of(probe_id: str, shards: int) -> int:
    """The owner shard of a probe (and of the subject it may enrol): stable across processes and restarts."""
    return int.from_bytes(hashlib.blake2b(probe_id.encode(), digest_size=8).digest(), "big") % shards


def route(owner: int, hop: int, shards: int) -> tuple[int, bool]:
    """The shard a probe visits at ``hop`` (0-based), and whether it is the last: the chain ends at its owner."""
    return (owner + 1 + hop) % shards, hop == shards - 1
