"""Biometric deduplication decisions and the NIST FRTE 1:N accuracy metric (pure functions).

For each capture, the gallery's best candidate decides: same subject and same
identity → known traveller; same subject under another document or name → a
multiple-identity link, red above the confident threshold, yellow (manual review)
in the grey zone; no candidate above the grey zone → enrol a new subject.
Thresholds are versioned and every decision carries the version and the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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
