"""``lintas dedup calibrate | thresholds | monitor``: thresholds from the gallery itself, and the check against them.

``calibrate`` reads every gallery partition (the identities' records, as a worker
does on start), opens their templates with the per-person keys, and for each template
model derives its thresholds (:mod:`agents.calibration`); it writes a new version of
the thresholds file, which running workers take up at their next batch, records the
calibration in ClickHouse (``dedup_calibrations``) and in the record of processing.
``monitor`` reads the stream's own figures back from ClickHouse and says whether
they still match the calibrated point.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from agents.audit import Processing
from agents.biometric import DedupConfig
from agents.calibration import GallerySubject, Observed, Targets, calibrate, drift, for_gallery_size, gallery_scores
from agents.dedup import ModelThresholds, Outcome, ThresholdSet
from agents.keys import Purposes
from agents.sealing import SubjectSealer
from agents.shard import load_records
from schemas.errors import LintasError
from streams.clients import clickhouse_client
from streams.compacted import read_partition
from streams.keystores import FileKeyring, SqliteSubjectKeys
from streams.ops.privacy import audit
from streams.settings import Settings
from streams.topics import BIOMETRIC_GALLERY, DEDUP_SHARDS


class CalibrationError(LintasError):
    """Not enough of a model in the gallery to calibrate it; says which model and what is missing."""

    code = "calibration_failed"


def current(settings: Settings) -> ThresholdSet:
    """The thresholds the workers use now: the calibrated file, else the packaged defaults."""
    path = settings.dedup_thresholds_path
    return ThresholdSet.load(path if path.is_file() else None)


@dataclass(frozen=True)
class ModelGallery:
    """What the gallery holds of one model: subjects with their samples, and the returns' 1:1 scores."""

    subjects: list[GallerySubject]
    genuine: np.ndarray
    quality: np.ndarray


def read_gallery(settings: Settings, thresholds: ThresholdSet) -> dict[str, ModelGallery]:
    """Every shard's identities, by template model (the templates are opened here, never written anywhere)."""
    keys = SqliteSubjectKeys(settings.subject_keys_path)
    tok = Purposes.from_provider(FileKeyring(settings.keyring_path)).operations
    cfg = DedupConfig(thresholds, SubjectSealer(keys), tok, DEDUP_SHARDS, settings.dedup_window,
                      settings.dedup_exact_max, settings.dedup_rerank, settings.dedup_dimension,
                      settings.dedup_nprobe)
    subjects: dict[str, list[GallerySubject]] = defaultdict(list)
    returns: dict[str, list[tuple[float, float]]] = defaultdict(list)
    try:
        for number in range(DEDUP_SHARDS):
            shard = cfg.shard(number)
            load_records(shard, read_partition(settings, BIOMETRIC_GALLERY.name, number), cfg)
            for state in shard.each(cfg):
                t = thresholds.for_model(state.model)
                verdicts, found = state.resolve(t, cfg.namer(state))
                quality = {c.probe_id: c.quality for c in state.window}
                returns[state.model] += [(v.score, quality[p]) for p, v in verdicts.items()
                                         if v.outcome is not Outcome.ENROL]
                subjects[state.model] += [GallerySubject(state.key, s.subject,
                                                         np.stack([c.template for c in s.samples])) for s in found]
    finally:
        keys.close()
    return {m: ModelGallery(subjects[m], np.array([s for s, _ in returns[m]]), np.array([q for _, q in returns[m]]))
            for m in subjects}


def calibrate_gallery(settings: Settings, targets: Targets, models: list[str] | None = None,
                      gallery_size: int | None = None, now: datetime | None = None) -> tuple[ThresholdSet, list[str]]:
    """Calibrate the models found in the gallery (or only ``models``); write and record a new thresholds version."""
    now = now or datetime.now(UTC)
    before = current(settings)
    gallery = read_gallery(settings, before)
    wanted = models or sorted(gallery)
    if not wanted:
        raise CalibrationError("the gallery is empty: nothing to calibrate (run traffic through the pipeline first)")
    version = "cal-" + now.strftime("%Y%m%dT%H%M%SZ")
    rng = np.random.default_rng(int(now.timestamp()))
    thresholds = before
    notes = []
    for model in wanted:
        held = gallery.get(model)
        if held is None:
            raise CalibrationError(f"model {model}: no identity of it in the gallery")
        try:
            scores = gallery_scores(held.subjects, held.genuine, held.quality, rng)
            t = calibrate(model, version, scores, targets)
        except ValueError as err:
            raise CalibrationError(f"model {model}: {err}") from None
        if gallery_size:
            yellow, red = for_gallery_size(t, gallery_size)
            t = replace(t, yellow=round(yellow, 4), red=round(red, 4), gallery_size=gallery_size,
                        calibration={**t.calibration, "measured_gallery_size": scores.subjects})
            notes.append(f"{model}: yellow and red extrapolated from {scores.subjects:,} to {gallery_size:,} subjects")
        thresholds = thresholds.with_model(t, version)
    write(settings, thresholds)
    record(settings, thresholds, wanted, now)
    audit(settings, [Processing("dedup_calibration", "analyse", "operations", ("BIOMETRIC",),
                                sum(len(gallery[m].subjects) for m in wanted), "kafka:" + BIOMETRIC_GALLERY.name,
                                "file:dedup thresholds", detail=f"thresholds {version} for {', '.join(wanted)}")])
    return thresholds, notes


def write(settings: Settings, thresholds: ThresholdSet) -> None:
    """The thresholds file, replaced atomically (workers never read half of it); older versions kept beside it."""
    path = settings.dedup_thresholds_path
    path.parent.mkdir(parents=True, exist_ok=True)
    text = thresholds.to_json()
    (path.parent / f"thresholds-{thresholds.version}.json").write_text(text)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def record(settings: Settings, thresholds: ThresholdSet, models: list[str], now: datetime) -> None:
    """One dedup_calibrations row per model calibrated: what the dashboards compare the stream with."""
    rows = []
    for model in models:
        t = thresholds.models[model]
        rows.append([thresholds.version, model, t.verify, t.mismatch, t.yellow, t.red, t.pair_floor, t.good_quality,
                     float(t.calibration["targets"]["fpir"]), float(t.calibration["fnir_estimate"]),
                     float(t.calibration["genuine_median"]), t.gallery_size, now,
                     json.dumps({"thresholds": thresholds.models[model].__dict__}, default=str)])
    with clickhouse_client(settings) as client:
        client.insert("dedup_calibrations", rows, column_names=[
            "version", "model", "verify", "mismatch", "yellow", "red", "pair_floor", "good_quality", "fpir_target",
            "fnir_estimate", "genuine_median", "gallery_size", "calibrated_at", "body"])


def observe(settings: Settings, thresholds: ThresholdSet, days: float,
            now: datetime | None = None) -> dict[str, Observed]:
    """The stream's figures per model over the last ``days``, from ClickHouse."""
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    out: dict[str, Observed] = {}
    with clickhouse_client(settings) as client:
        models = [r[0] for r in client.query(
            "SELECT DISTINCT model FROM dedup_decisions WHERE decided_at >= {since:DateTime64(3)}",
            parameters={"since": since}).result_rows]
        for model in sorted(models):
            t = thresholds.for_model(model)
            params = {"since": since, "model": model, "q": t.good_quality, "y": t.yellow}
            returns, median, below = client.query(
                "SELECT count(), median(score), avg(score < {y:Float64}) FROM dedup_decisions FINAL "
                "WHERE model = {model:String} AND decided_at >= {since:DateTime64(3)} AND quality >= {q:Float64} "
                "AND outcome IN ('known_traveller', 'inconclusive')", parameters=params).result_rows[0]
            searched, above = client.query(
                "SELECT count(), avg(best >= {y:Float64}) FROM (SELECT subject_id, max(best_score) AS best "
                "FROM dedup_searches WHERE model = {model:String} AND searched_at >= {since:DateTime64(3)} "
                "GROUP BY subject_id)", parameters=params).result_rows[0]
            size = client.query("SELECT uniqExact(subject_id) FROM dedup_decisions WHERE model = {model:String}",
                                parameters=params).result_rows[0][0]
            out[model] = Observed(int(returns), _num(median), _num(below), int(searched), _num(above), int(size))
    return out


def _num(x: Any) -> float:
    return 0.0 if x is None or x != x else float(x)


def monitor(settings: Settings, days: float) -> list[tuple[str, ModelThresholds, Observed, list[str]]]:
    """Per model: its thresholds, what the stream shows, and why that drifted from the calibration (if it did)."""
    thresholds = current(settings)
    return [(model, thresholds.for_model(model), seen, drift(seen, thresholds.for_model(model)))
            for model, seen in observe(settings, thresholds, days).items()]
