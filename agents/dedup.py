"""Identity resolution for one presented identity: verify 1:1 first, in event-time order (pure functions).

How mature systems decide (EU EES, MOSIP ABIS): a traveller who presents a document
already on file is *verified* 1:1 against the subjects enrolled under it; 1:N
identification looks for *other* subjects (:mod:`agents.biometric`, :mod:`agents.links`).
Here, for the captures presented under one identity (a document token, or a name
token without a document) and one template model:

* the first capture enrols the identity's primary subject;
* a later capture is scored against every subject of the identity (the best of each
  subject's samples: several good captures, best quality first, bounded) and is
  ``known_traveller`` at or above the model's verification threshold (it may become
  a sample), ``another_face`` when it scores below the mismatch threshold against all
  of them at good quality (a second subject under the same document: the evidence of
  a borrowed or forged document), and ``inconclusive`` otherwise (low quality or the
  grey zone: recapture or review, never a new person).

Decisions are a function of the *set* of captures, not of their arrival: captures are
taken in event-time order ``(occurred_at, probe_id)``, and a capture that arrives
after later ones makes the identity decide its recent window again from the state
before it. Only a capture older than the whole window (``window`` captures) is judged
against the state at the window's start instead.

Thresholds belong to a template model and carry a version; every decision records it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from schemas.errors import LintasError

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "dedup_thresholds.json"


class Outcome(StrEnum):
    """What the 1:1 verification of one capture concluded."""

    ENROL = "enrol"
    KNOWN = "known_traveller"
    INCONCLUSIVE = "inconclusive"
    ANOTHER_FACE = "another_face"


class ThresholdsError(LintasError):
    """A thresholds file that cannot be used; names the model and the key."""

    code = "thresholds_invalid"


@dataclass(frozen=True)
class ModelThresholds:
    """Operating point of one template model.

    ``verify``: 1:1 score at or above which a capture is its document's subject (target FMR).
    ``mismatch``: below it, at ``good_quality`` or better, the capture is another face.
    ``yellow`` / ``red``: 1:N link scores (target FPIR, and a tenth of it) for ``gallery_size``
    subjects; ``pair_floor``: pairs at or above it are kept as evidence (a later, lower
    yellow can still use them). ``samples``: templates kept per subject; captures of
    ``sample_quality`` or better may become one. ``calibration``: what the thresholds were
    derived from and the rates expected at them (the drift monitor compares against it).
    """

    model: str
    version: str
    verify: float
    mismatch: float
    yellow: float
    red: float
    pair_floor: float
    good_quality: float = 0.6
    sample_quality: float = 0.5
    samples: int = 4
    gallery_size: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Scores are cosines; the grey zones must be ordered."""
        checks = [(-1.0 <= self.mismatch <= self.verify <= 1.0, "mismatch <= verify"),
                  (0.0 < self.pair_floor <= self.yellow <= self.red <= 1.0, "0 < pair_floor <= yellow <= red <= 1"),
                  (self.samples >= 1, "samples >= 1"),
                  (0.0 <= self.sample_quality <= 1.0 and 0.0 <= self.good_quality <= 1.0, "qualities within [0, 1]")]
        for ok, rule in checks:
            if not ok:
                raise ThresholdsError(f"thresholds of model {self.model!r}: need {rule}")

    @property
    def label(self) -> str:
        """What a decision records: the set's version and the model."""
        return f"{self.version}:{self.model}"


@dataclass(frozen=True)
class ThresholdSet:
    """Thresholds per template model, one version for the set; ``default`` for models never calibrated."""

    version: str
    models: dict[str, ModelThresholds]
    default: ModelThresholds

    def for_model(self, model: str) -> ModelThresholds:
        """The model's thresholds, or the default (the worker warns once per uncalibrated model)."""
        return self.models.get(model) or replace(self.default, model=model)

    def to_json(self) -> str:
        """The file form (also what ``lintas dedup calibrate`` writes)."""
        return json.dumps({"version": self.version, "default": _entry(self.default),
                           "models": {m: _entry(t) for m, t in sorted(self.models.items())}}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "thresholds") -> ThresholdSet:
        """Parse a thresholds file; :class:`ThresholdsError` names what is wrong."""
        try:
            raw = json.loads(text)
            version = str(raw["version"])
            default = _model("default", version, raw["default"])
            models = {m: _model(m, version, body) for m, body in raw.get("models", {}).items()}
        except (KeyError, TypeError, ValueError) as err:
            raise ThresholdsError(f"{source}: {type(err).__name__}: {err}") from None
        return cls(version, models, default)

    @classmethod
    def load(cls, path: Path | None = None) -> ThresholdSet:
        """From ``path`` (the calibrated file), else the packaged defaults."""
        target = path or DEFAULT_THRESHOLDS
        try:
            return cls.from_json(target.read_text(), target.name)
        except OSError as err:
            raise ThresholdsError(f"{target}: cannot read ({err.strerror})") from None

    def with_model(self, thresholds: ModelThresholds, version: str) -> ThresholdSet:
        """A new version with one model's thresholds replaced (the others carried over)."""
        models = {m: replace(t, version=version) for m, t in self.models.items()}
        models[thresholds.model] = replace(thresholds, version=version)
        return ThresholdSet(version, models, replace(self.default, version=version))


def _entry(t: ModelThresholds) -> dict[str, Any]:
    body = asdict(t)
    del body["model"], body["version"]
    return body


def _model(model: str, version: str, body: dict[str, Any]) -> ModelThresholds:
    return ModelThresholds(model=model, version=version, **body)


# -- one identity's captures ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, slots=True)  # a gallery holds millions: no __dict__ each
class Seen:
    """One capture presented under the identity: who, where, when, how good, its unit template (and sealed copy)."""

    probe_id: str
    event_id: str
    source: str
    post_id: str
    occurred_ms: int
    quality: float
    template: np.ndarray
    sealed: bytes = b""

    @property
    def order(self) -> tuple[int, str]:
        """Event-time order; the probe id breaks ties, so the order is total."""
        return self.occurred_ms, self.probe_id


def _rank(s: Seen) -> tuple[float, int, str]:
    return -s.quality, -s.occurred_ms, s.probe_id  # best quality first, then the most recent


@dataclass(slots=True)
class SubjectState:
    """One subject under the identity: its id and its samples (best first, at most ``samples``)."""

    subject: str
    samples: list[Seen]

    def score(self, template: np.ndarray) -> float:
        """The best of the samples' scores against ``template``."""
        return float(np.max(np.stack([s.template for s in self.samples]) @ template))

    def offer(self, capture: Seen, keep: int) -> None:
        """Keep ``capture`` if it is among the best ``keep``."""
        self.samples = sorted([*self.samples, capture], key=_rank)[:keep]

    def copy(self) -> SubjectState:
        """An independent copy (the samples themselves are immutable)."""
        return SubjectState(self.subject, list(self.samples))


@dataclass(frozen=True)
class Verdict:
    """The decision for one capture: outcome, subject, the best 1:1 score (NaN on enrolment), every subject's score."""

    probe_id: str
    outcome: Outcome
    subject: str
    score: float
    candidates: tuple[tuple[str, float], ...] = ()

    def same(self, other: Verdict | None) -> bool:
        """Equal decisions (NaN scores equal)."""
        if other is None:
            return False
        scores_equal = (self.score == other.score) or (math.isnan(self.score) and math.isnan(other.score))
        return (self.outcome, self.subject, self.candidates) == (other.outcome, other.subject,
                                                                 other.candidates) and scores_equal


Namer = Callable[[str | None], str]  # anchor probe id (None: the primary subject) → subject id


def step(subjects: list[SubjectState], capture: Seen, t: ModelThresholds, name: Namer) -> Verdict:
    """Decide one capture against the identity's subjects so far (mutates ``subjects``)."""
    if not subjects:
        subjects.append(SubjectState(name(None), [capture]))
        return Verdict(capture.probe_id, Outcome.ENROL, subjects[0].subject, math.nan)
    scores = [s.score(capture.template) for s in subjects]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    candidates = tuple((s.subject, round(x, 6)) for s, x in zip(subjects, scores, strict=True))
    score = scores[best]
    if score >= t.verify:
        if capture.quality >= t.sample_quality:
            subjects[best].offer(capture, t.samples)
        return Verdict(capture.probe_id, Outcome.KNOWN, subjects[best].subject, score, candidates)
    if score < t.mismatch and capture.quality >= t.good_quality and len(subjects) < MAX_FACES:
        subjects.append(SubjectState(name(capture.probe_id), [capture]))
        return Verdict(capture.probe_id, Outcome.ANOTHER_FACE, subjects[-1].subject, score, candidates)
    return Verdict(capture.probe_id, Outcome.INCONCLUSIVE, subjects[best].subject, score, candidates)


MAX_FACES = 8  # subjects under one identity; beyond, further strangers stay inconclusive (already a case)


def resolve(base: Sequence[SubjectState], window: Sequence[Seen], t: ModelThresholds,
            name: Namer) -> tuple[dict[str, Verdict], list[SubjectState]]:
    """Decide every capture of ``window`` (event-time order) from the ``base`` state; verdicts and final subjects."""
    subjects = [s.copy() for s in base]
    verdicts = {}
    for capture in sorted(window, key=lambda c: c.order):
        verdicts[capture.probe_id] = step(subjects, capture, t, name)
    return verdicts, subjects


@dataclass(slots=True)
class IdentityState:
    """Everything one shard keeps about one identity and model: the state before the window, and the window.

    ``base``: the subjects as they were after every capture that slid out of the window;
    ``window``: the most recent captures (event time), decided again whenever one arrives
    out of order; ``version``: the highest log offset applied (the newest record wins when a
    shard is read back; replays are recognised by probe id, :meth:`knows`); ``cut``: the order key of the
    newest capture that slid out.
    """

    key: str
    identity: str
    kind: str  # "document" (another face under it is evidence of a borrowed document) or "name" (a namesake)
    model: str
    base: list[SubjectState] = field(default_factory=list)
    window: list[Seen] = field(default_factory=list)
    version: int = -1
    seen: int = 0  # distinct captures ever applied: the revision of the identity's decisions
    cut: tuple[int, str] | None = None
    slid: list[str] = field(default_factory=list)  # probe ids that slid out lately (duplicates recognised)
    late: int = 0  # captures that arrived older than the whole window
    verdicts: dict[str, Verdict] | None = None  # decisions of the window (computed, not stored)
    subjects: list[SubjectState] | None = None  # subjects after the window (computed, not stored)
    frozen: list[tuple[Seen, Verdict]] = field(default_factory=list)  # decided outside the window, not yet taken

    def knows(self, probe_id: str) -> bool:
        """The capture was applied already (a resend or a replay)."""
        return probe_id in self.slid or any(c.probe_id == probe_id for c in self.window)

    def add(self, capture: Seen, t: ModelThresholds, name: Namer, window: int) -> bool:
        """Apply one capture; False if it was known. Call :meth:`resolve` after the batch."""
        if self.knows(capture.probe_id):
            return False
        self.seen += 1
        # In event order (the usual case) the window's decisions so far stand: the capture is decided against
        # the subjects after them, which is what resolving the whole window again would give, at O(1).
        incremental = (self.verdicts is not None and self.subjects is not None
                       and (not self.window or capture.order > self.window[-1].order)
                       and (self.cut is None or capture.order > self.cut))
        if self.cut is not None and capture.order < self.cut:
            # older than the whole window: judged against the state at the window's start
            self.late += 1
            self.frozen.append((capture, step(self.base, capture, t, name)))
            self._remember(capture.probe_id)
        else:
            self.window.append(capture)
            self.window.sort(key=lambda c: c.order)
            if incremental:
                self.verdicts[capture.probe_id] = step(self.subjects, capture, t, name)  # type: ignore[arg-type, index]
        while len(self.window) > window:
            # the oldest slides into the base: the subjects after the window stay what they were
            oldest = self.window.pop(0)
            self.frozen.append((oldest, step(self.base, oldest, t, name)))
            self.cut = oldest.order
            self._remember(oldest.probe_id)
            if incremental:
                self.verdicts.pop(oldest.probe_id, None)  # type: ignore[union-attr]
        if not incremental:
            self.verdicts = self.subjects = None
        return True

    def take_frozen(self) -> list[tuple[Seen, Verdict]]:
        """Captures decided for good since the last call (slid out of the window, or older than it)."""
        taken, self.frozen = self.frozen, []
        return taken

    def _remember(self, probe_id: str) -> None:
        self.slid = [*self.slid, probe_id][-64:]

    def resolve(self, t: ModelThresholds, name: Namer) -> tuple[dict[str, Verdict], list[SubjectState]]:
        """The window's decisions and the final subjects (cached until the next capture)."""
        if self.verdicts is None or self.subjects is None:
            self.verdicts, self.subjects = resolve(self.base, self.window, t, name)
        return self.verdicts, self.subjects

    def samples(self, t: ModelThresholds, name: Namer) -> dict[tuple[str, str], Seen]:
        """Current samples by (subject, probe id): what the shard's 1:N index holds for this identity."""
        _, subjects = self.resolve(t, name)
        return {(s.subject, c.probe_id): c for s in subjects for c in s.samples}


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


def identity_key(model: str, identity: str) -> str:
    """Where one identity's captures of one model are decided: its shard and its state's key."""
    return f"{model}|{identity}"


def changed(before: dict[str, Verdict], after: dict[str, Verdict]) -> Iterable[Verdict]:
    """Verdicts that are new or differ from before."""
    return (v for p, v in after.items() if not v.same(before.get(p)))
