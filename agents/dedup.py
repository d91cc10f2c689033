"""Biometric deduplication decisions and the NIST FRTE 1:N accuracy metric (pure functions).

For each capture, the gallery's best candidate decides: same subject and same
identity → known traveller; same subject under another document or name → a
multiple-identity link, red above the confident threshold, yellow (manual review)
in the grey zone; no candidate above the grey zone → enrol a new subject.
Thresholds are versioned and every decision carries the version and the score.
"""

from __future__ import annotations

from collections.abc import Callable
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


def decide(score: float, candidate_subject: str | None, candidate_identities: frozenset[str], identity: str,
           thresholds: Thresholds) -> Decision:
    """Decide from the best candidate: known, red or yellow link, or enrol."""
    if candidate_subject is None or score < thresholds.yellow:
        return Decision(Outcome.ENROL, None, score, thresholds.version)
    if identity in candidate_identities:
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
    """One capture to identify: its unit template and the identity it was presented under (a document token)."""

    template: np.ndarray
    identity: str


class Gallery:
    """Enrolled subjects: one template each in a 1:N index, and the identities each subject has used."""

    def __init__(self, index: Any, new_subject_id: Callable[[], str]) -> None:
        """``index`` is an ExactIndex or SketchIndex; ``new_subject_id`` mints pseudonymous subject ids."""
        self.index = index
        self.new_subject_id = new_subject_id
        self.row_subject: list[str] = []
        self.identities: dict[str, set[str]] = {}
        self._pending_subjects: list[str] = []

    def identify(self, probes: list[Probe], thresholds: Thresholds) -> list[tuple[Decision, int]]:
        """Decide every probe of a batch; enrol the new ones. Returns each decision and the rank-1 row (-1 if none).

        Probes enrolled earlier in the same batch are searched too, so one new
        person captured twice in a batch is enrolled once.
        """
        if not probes:
            return []
        queries = np.stack([p.template for p in probes]).astype(np.float32)
        if len(self.index):
            hits = self.index.search(queries, 1)
            scores, rows = hits.scores[:, 0].astype(float), hits.rows[:, 0].astype(int)
        else:
            scores, rows = np.full(len(probes), -1.0), np.full(len(probes), -1)
        pending: list[np.ndarray] = []
        out: list[tuple[Decision, int]] = []
        for i, probe in enumerate(probes):
            score, row = float(scores[i]), int(rows[i])
            if pending:
                local = np.stack(pending) @ probe.template
                j = int(np.argmax(local))
                if local[j] > score:
                    score, row = float(local[j]), len(self.row_subject) + j
            subject = self._subject_of(row, pending)
            decision = decide(score, subject, frozenset(self.identities.get(subject or "", ())), probe.identity,
                              thresholds)
            if decision.outcome is Outcome.ENROL:
                new = self.new_subject_id()
                pending.append(probe.template)
                self._pending_subjects.append(new)
                self.identities[new] = {probe.identity}
                decision = Decision(Outcome.ENROL, new, score, thresholds.version)
            out.append((decision, row))
        if pending:
            self.index.add(np.stack(pending))
            self.row_subject.extend(self._pending_subjects)
            self._pending_subjects = []
        return out

    def _subject_of(self, row: int, pending: list[np.ndarray]) -> str | None:
        if row < 0:
            return None
        if row < len(self.row_subject):
            return self.row_subject[row]
        return self._pending_subjects[row - len(self.row_subject)]
