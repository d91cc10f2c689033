"""An unsupervised anomaly score over each document's window, with the features that made it stand out.

IsolationForest (scikit-learn) over windowed per-document features: the
traveller's own crossings and the travellers it escorted. Trained offline by
``lintas trafficking train`` on past facts, saved with a version and a checksum,
loaded by the rule agent. A score beyond the training quantile set in the rules
file becomes an ``anomaly_score`` alert (LOW: an unusual pattern, no indicator
by itself) whose explanation names the features that, set to their typical
value, would most lower the anomaly.

Scoring is batched: one call per batch of facts (one at a time it is ~700×
slower on this machine). A limit to know: an isolation forest splits between the
values it was trained on, so a value beyond the training range scores like the
most extreme training windows, and a feature that never varied in training is
never looked at. Train on a long enough history.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import IsolationForest

from agents.trafficking.config import HOUR_MS, RuleSet
from agents.trafficking.engine import Alert, erase, evaluate, flag_anomaly
from agents.trafficking.facts import Fact
from agents.trafficking.rules import escort_occasions
from agents.trafficking.state import KeyState, within
from schemas.errors import LintasError

FEATURES = (
    "exits_72h", "entries_72h", "posts_7d", "countries_7d", "escorted_travellers_7d", "escorted_minors_7d",
    "escort_occasions_7d", "hours_since_previous", "is_minor", "companions_not_family", "work_without_placement",
    "tourism", "subjects_on_document",
)
FAMILY = frozenset({"PARENT", "LEGAL_GUARDIAN", "SPOUSE", "SIBLING"})
OCCASION_GAP_MS = 2 * HOUR_MS  # fixed, not from the rules file: a trained model's features must not drift


class ModelError(LintasError):
    """The anomaly model file is missing, altered or for other features."""

    code = "anomaly_model_invalid"


def features(fact: Fact, state: KeyState) -> np.ndarray | None:
    """The window features of a document key after ``fact`` was applied; None for other keys and roles."""
    if not fact.key.startswith("doc:") or fact.role not in ("SELF", "ESCORT"):
        return None
    now = fact.ms
    own72, own7d = within(state.crossings, now, 72 * HOUR_MS), within(state.crossings, now, 168 * HOUR_MS)
    esc7d = within(state.escorted, now, 168 * HOUR_MS)
    before = [e[0] for e in state.crossings if e[0] < now]
    self_fact = fact.role == "SELF"
    return np.array([
        sum(e[4] == "EXIT" for e in own72), sum(e[4] == "ENTRY" for e in own72), len({e[2] for e in own7d}),
        len({e[3] for e in own7d}), len({e[2] for e in esc7d}), len({e[2] for e in esc7d if e[3]}),
        escort_occasions(esc7d, OCCASION_GAP_MS),
        min(168.0, (now - max(before)) / HOUR_MS) if before else 168.0,
        float(self_fact and fact.is_minor),
        float(sum(c.relationship not in FAMILY for c in fact.companions)) if self_fact else 0.0,
        float(self_fact and fact.travel_purpose == "WORK" and not fact.has_placement),
        float(self_fact and fact.travel_purpose == "TOURISM"),
        len({e[2] for e in state.subjects}),
    ], dtype=np.float32)


@dataclass(frozen=True)
class AnomalyModel:
    """A trained forest, its alert threshold and each feature's typical (median) value."""

    version: str
    forest: IsolationForest
    threshold: float  # score_samples below this alerts (lower = more anomalous)
    typical: np.ndarray
    trained_on: int

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores (scikit-learn's score_samples: lower is more anomalous)."""
        return np.asarray(self.forest.score_samples(x))

    def explain(self, x: np.ndarray, top: int) -> list[list[tuple[str, float, float]]]:
        """Per row: the ``top`` features whose typical value would raise the score most: (name, value, typical)."""
        if len(x) == 0:
            return []
        base = self.scores(x)
        d = x.shape[1]
        swapped = np.repeat(x, d, axis=0)
        idx = np.arange(len(swapped))
        swapped[idx, idx % d] = np.tile(self.typical, len(x))
        gain = (self.scores(swapped).reshape(len(x), d) - base[:, None])
        out = []
        for row, g in zip(x, gain, strict=True):
            order = [j for j in np.argsort(-g) if g[j] > 0 and row[j] != self.typical[j]][:top]
            out.append([(FEATURES[j], float(row[j]), float(self.typical[j])) for j in order])
        return out


def training_rows(facts: Iterable[Fact], rules: RuleSet) -> np.ndarray:
    """Feature rows of every document window as the facts arrive (what scoring will see)."""
    states: dict[str, KeyState] = {}
    rows = []
    for fact in facts:
        state, _ = evaluate(fact, states.get(fact.key) or KeyState(), rules)
        states[fact.key] = state
        if (row := features(fact, state)) is not None:
            rows.append(row)
    return np.stack(rows)


def train(x: np.ndarray, alert_rate: float, seed: int = 0) -> AnomalyModel:
    """Fit on feature rows; the threshold flags ``alert_rate`` of them."""
    forest = IsolationForest(n_estimators=200, max_samples=min(4096, len(x)), random_state=seed).fit(x)
    scores = forest.score_samples(x)
    digest = hashlib.sha256(x.tobytes()).hexdigest()[:10]
    return AnomalyModel(f"if-{len(x)}-{digest}", forest, float(np.quantile(scores, alert_rate)),
                        np.median(x, axis=0).astype(np.float32), len(x))


def save_model(model: AnomalyModel, path: Path) -> Path:
    """The model (joblib) and a JSON sidecar with its version, features and checksum."""
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    meta = {"version": model.version, "features": list(FEATURES), "threshold": model.threshold,
            "trained_on": model.trained_on, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return path


def load_model(path: Path) -> AnomalyModel:
    """A model saved by :func:`save_model`; refused if its bytes or features do not match the sidecar."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        blob = path.read_bytes()
    except (OSError, ValueError) as err:
        raise ModelError(f"anomaly model {path}: {err}") from err
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise ModelError(f"anomaly model {path}: checksum does not match its sidecar")
    if meta.get("features") != list(FEATURES):
        raise ModelError(f"anomaly model {path}: trained on other features; retrain")
    model: AnomalyModel = joblib.load(path)  # our own file, checksum verified above
    return model


def describe(explained: Sequence[tuple[str, float, float]]) -> str:
    """Words for the top features: ``exits_72h 5 (typical 0)``."""
    return ", ".join(f"{name} {value:g} (typical {typical:g})" for name, value, typical in explained)


def evaluate_batch(facts: Sequence[Fact], load: Callable[[str], KeyState],
                   store: Callable[[str, KeyState | None], None], rules: RuleSet,
                   model: AnomalyModel | None) -> list[Alert]:
    """What the rule agent does with one batch: every fact through the rules, then one anomaly scoring call.

    ``load``/``store`` read and write a key's state (the agent's state table,
    a dict in tests and benchmarks); ``store(key, None)`` deletes it (an ERASE fact).
    """
    alerts: list[Alert] = []
    pending: list[tuple[Fact, np.ndarray]] = []
    for fact in facts:
        if fact.role == "ERASE":
            store(fact.key, erase(fact.key, load(fact.key), fact.traveller))
            continue
        state, out = evaluate(fact, load(fact.key), rules)
        alerts += out
        if model is not None and (row := features(fact, state)) is not None:
            pending.append((fact, row))
        store(fact.key, state)
    if model is None or not pending:
        return alerts
    x = np.stack([row for _, row in pending])
    scores = model.scores(x)
    flagged = np.flatnonzero(scores < model.threshold)
    top = rules.anomaly_score.params.top_features
    for i, explained in zip(flagged, model.explain(x[flagged], top), strict=True):
        fact = pending[i][0]
        state = load(fact.key)
        alert = flag_anomaly(fact, state, rules, float(scores[i]), model.threshold,
                             model.version, describe(explained), {n: v for n, v, _ in explained})
        store(fact.key, state)
        if alert is not None:
            alerts.append(alert)
    return alerts
