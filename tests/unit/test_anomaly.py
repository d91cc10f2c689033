"""The anomaly score: trained offline, versioned and checksummed, batched, explained by its features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.anomaly import FEATURES, ModelError, evaluate_batch, features, load_model, save_model, train
from agents.trafficking.config import load_rules
from agents.trafficking.engine import latest
from agents.trafficking.state import KeyState
from tests.unit.test_trafficking import T0, crossing, escorted

RULES = load_rules()


def _ordinary_rows(n: int, seed: int = 0) -> np.ndarray:
    """Typical windows: a crossing or two; now and then a guide or parent with one or two people.

    (A feature that never varies in training is never split on: IsolationForest cannot see it.)
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, len(FEATURES)), dtype=np.float32)
    x[:, FEATURES.index("exits_72h")] = rng.integers(0, 2, n)
    x[:, FEATURES.index("entries_72h")] = rng.integers(0, 2, n)
    x[:, FEATURES.index("posts_7d")] = rng.integers(1, 3, n)
    x[:, FEATURES.index("countries_7d")] = rng.integers(1, 3, n)
    x[:, FEATURES.index("hours_since_previous")] = 168.0
    x[:, FEATURES.index("tourism")] = rng.integers(0, 2, n)
    escorts = rng.choice([0, 1, 2], n, p=[0.97, 0.02, 0.01])
    x[:, FEATURES.index("escorted_travellers_7d")] = escorts
    x[:, FEATURES.index("escort_occasions_7d")] = np.minimum(escorts, 1)
    return x


def test_an_escort_of_many_stands_out_and_the_explanation_says_why() -> None:
    model = train(_ordinary_rows(5000), alert_rate=0.02)
    odd = _ordinary_rows(1, seed=1)
    odd[0, FEATURES.index("escorted_travellers_7d")] = 9
    odd[0, FEATURES.index("escort_occasions_7d")] = 9
    batch = np.vstack([_ordinary_rows(200, seed=2), odd])
    scores = model.scores(batch)
    assert scores[-1] < model.threshold, "beyond the training range scores like its rarest windows"
    assert np.mean(scores[:-1] < model.threshold) < 0.05
    (explained,) = model.explain(batch[-1:], top=2)
    assert {e[0] for e in explained} == {"escorted_travellers_7d", "escort_occasions_7d"}
    assert (9.0, 0.0) in {e[1:] for e in explained}


def test_model_file_is_versioned_and_refused_when_altered(tmp_path: Path) -> None:
    model = train(_ordinary_rows(500), alert_rate=0.01)
    path = save_model(model, tmp_path / "m.joblib")
    assert load_model(path).version == model.version and model.version.startswith("if-500-")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="checksum"):
        load_model(path)
    with pytest.raises(ModelError):
        load_model(tmp_path / "missing.joblib")


def test_batch_raises_one_growing_anomaly_alert_and_replays_resend_it() -> None:
    model = train(_ordinary_rows(5000), alert_rate=0.02)
    rules = RULES
    facts = [crossing("Q1", 0, post="ID-NNK", travel_purpose="BUSINESS")] + [
        escorted("Q1", f"P{i}", 0.5 + i, relationship="PARENT") for i in range(8)]  # a 'parent' of eight
    states: dict[str, KeyState] = {}
    load_state, store = (lambda k: states.get(k) or KeyState()), states.__setitem__
    alerts = evaluate_batch(facts, load_state, store, rules, model)
    assert {a.rule_id for a in alerts} == {"anomaly_score"}, "no rule fires on declared parents; the score does"
    (alert,) = latest(alerts).values()
    assert alert.severity == "LOW" and "escorted_travellers_7d" in alert.explanation
    assert alert.features["score"] > alert.features["threshold"]
    again = evaluate_batch(facts, load_state, store, rules, model)
    assert latest(again) == latest(alerts)
    assert evaluate_batch(facts[:1], lambda k: KeyState(), lambda k, s: None, rules, None) == []


def test_features_only_for_document_windows() -> None:
    state = KeyState()
    fact = escorted("Q2", "P1", 0)
    assert features(fact, state) is not None
    assert features(crossing("Q3", 0).__class__(key="sponsor:S", role="SPONSOR", event_id="e", occurred_at=T0),
                    state) is None
