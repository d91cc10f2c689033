"""Agent ``dedup_shards``: the gallery shards this worker owns verify, search and keep link evidence.

Each partition of ``biometric.probes`` is one shard of the gallery, read back from its
``biometric.gallery`` partition the first time a command for it arrives. A batch of commands
goes through :func:`agents.biometric.shard_step` (verify first, then identify; in event-time
order per identity); what it sends on (commands to other shards, link evidence, decisions and
facts) is sent and written first, and the identities' records mark the batch done, after
everything they caused holds (:mod:`streams.worker.effects` says why).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from agents.audit import Processing
from agents.biometric import DedupConfig, StepOutput, shard_step
from agents.calibration import Observed, drift
from agents.dedup import ThresholdSet
from agents.shard import Shard, load_records
from agents.trafficking.facts import decision_facts
from streams.template_store import mapped_stores, record_files
from streams.topics import BIOMETRIC_GALLERY, BIOMETRIC_PAIRS, BIOMETRIC_PROBES, DEDUP_SHARDS
from streams.worker.effects import Effects
from streams.worker.outputs import Outputs
from streams.worker.runtime import Record, batch_source
from streams.worker.services import Services
from streams.worker.state import Reader

log = logging.getLogger("lintas.worker")


class Monitor:
    """The worker's own view of dedup accuracy (its shards' last decisions and searches), checked against calibration.

    ClickHouse's ``dedup_accuracy_daily`` is the fleet-wide figure; this one warns in the worker's log.
    """

    def __init__(self, keep: int = 2000, every_s: float = 60.0) -> None:
        """Rolling windows of ``keep`` returns and searches per model; a check at most every ``every_s``."""
        self.keep, self.every_s, self.last = keep, every_s, 0.0
        self.returns: dict[str, list[float]] = {}
        self.best: dict[str, dict[str, float]] = {}

    def update(self, decisions: list[dict[str, Any]], searches: list[dict[str, Any]], thresholds: ThresholdSet,
               gallery_size: int) -> list[str]:
        """Add a batch; the drift warnings, if it is time to check (``gallery_size``: identities, estimated)."""
        for d in decisions:
            t = thresholds.for_model(d["model"])
            if d["outcome"] in ("known_traveller", "inconclusive") and d["quality"] >= t.good_quality:
                self.returns.setdefault(d["model"], []).append(float(d["score"]))
        for s in searches:
            held = self.best.setdefault(s["model"], {})
            held[s["subject_id"]] = max(held.get(s["subject_id"], -1.0), float(s["best_score"]))
        for model in self.returns:
            self.returns[model] = self.returns[model][-self.keep:]
        for model, held in self.best.items():
            if len(held) > self.keep:
                self.best[model] = dict(list(held.items())[-self.keep:])
        if time.monotonic() - self.last < self.every_s:
            return []
        self.last = time.monotonic()
        warnings = []
        for model in sorted(set(self.returns) | set(self.best)):
            t = thresholds.for_model(model)
            if model not in thresholds.models:
                continue
            scores = self.returns.get(model, [])
            best = list(self.best.get(model, {}).values())
            observed = Observed(len(scores), float(np.median(scores)) if scores else 0.0,
                                float(np.mean(np.array(scores) < t.yellow)) if scores else 0.0,
                                len(best), float(np.mean(np.array(best) >= t.yellow)) if best else 0.0,
                                gallery_size)
            warnings += [f"{model}: {reason}" for reason in drift(observed, t)]
        return warnings


def _give_back() -> None:
    """Return the memory a shard's load freed to the system.

    glibc keeps freed small blocks (the records, the decoded chunks) in its heaps otherwise:
    ~1.3 KB per identity at 100,000 (docs/benchmarks.md#memory).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator decides


class DedupShards:
    """The shards this worker owns, loaded on first use, and the thresholds they decide by."""

    name = "dedup_shards"

    def __init__(self, svc: Services, read: Reader) -> None:
        """No shard is loaded until a command for it arrives; ``read`` reads a gallery partition back."""
        self.svc, self.settings, self.read = svc, svc.settings, read
        self.io = svc.lanes(self.name)
        self.out = Outputs(svc, self.io)
        self.shards: dict[int, Shard] = {}
        s = self.settings
        self.cfg = DedupConfig(svc.thresholds.current(), svc.sealer, svc.tok, DEDUP_SHARDS, s.dedup_window,
                               s.dedup_exact_max, s.dedup_rerank, s.dedup_dimension,
                               s.dedup_nprobe, mapped_stores(s.gallery_dir), record_files(s.gallery_dir),
                               s.dedup_hot_identities)
        self.cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedup")  # the search, off the loop
        self.uncalibrated: set[str] = set()
        self.monitor = Monitor(every_s=s.dedup_monitor_seconds)

    def _thresholds(self) -> None:
        """Take up thresholds ``lintas dedup calibrate`` wrote; the monitor starts again against them."""
        current = self.svc.thresholds.current()
        if current is not self.cfg.thresholds:
            self.cfg = replace(self.cfg, thresholds=current)
            self.monitor = Monitor(every_s=self.settings.dedup_monitor_seconds)

    def _load(self, number: int) -> Shard:
        started = time.monotonic()
        shard = self.cfg.shard(number)
        n, unreadable = load_records(shard, self.read(BIOMETRIC_GALLERY.name, number), self.cfg)
        if unreadable:
            log.warning("gallery shard %d: %d identity record(s) cannot be opened (tampered, or sealed with a key "
                        "this store never had): those identities enrol again when next seen", number, unreadable)
        log.info("gallery shard %d loaded: %d identities, %d samples in %.1fs", number, n, shard.sample_count(),
                 time.monotonic() - started)
        _give_back()
        return shard

    async def shard(self, number: int) -> Shard:
        """Shard ``number``, read back from biometric.gallery if this worker has not loaded it since it got it."""
        if number not in self.shards:
            self.shards[number] = await self._on_cpu(self._load, number)
        return self.shards[number]

    async def _on_cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.cpu, fn, *args)

    def revoked(self, partitions: set[int]) -> None:
        """Drop shards whose partitions moved away: whoever owns them next (maybe us again) reloads them."""
        for number in partitions:
            self.shards.pop(number, None)  # its files go with it (a step still running on it keeps them till done)

    async def process(self, records: list[Record]) -> Effects:
        """One batch of commands: per shard, verify, search and keep pairs; the identities' records mark it done."""
        self._thresholds()
        by_shard: dict[int, list[tuple[int, bytes]]] = {}
        for r in records:
            by_shard.setdefault(r.partition, []).append((r.offset, r.value or b""))
        effects = Effects()
        decisions: list[dict[str, Any]] = []
        searches: list[dict[str, Any]] = []
        counts = {"erased": 0, "unreadable": 0, "duplicates": 0, "late": 0, "links": 0}
        for number, commands in sorted(by_shard.items()):
            shard = await self.shard(number)
            out: StepOutput = await self._on_cpu(shard_step, shard, commands, self.cfg, datetime.now(UTC))
            for partition, command in out.commands:
                effects.send(BIOMETRIC_PROBES.name, command, partition=partition)
            for link, pair in out.links:
                effects.send(BIOMETRIC_PAIRS.name, pair, link.encode())
            for identity, record in out.records:  # a record on Kafka means everything it caused was sent
                effects.mark_done(BIOMETRIC_GALLERY.name, record, identity.encode(), number)
            decisions += out.decisions
            searches += out.searches
            effects.record(*(Processing(
                component=self.name, activity="delete", purpose="operations", data_classes=("BIOMETRIC",),
                records=e.rows_removed, source=f"request:{e.erasure_id}", destination=f"gallery shard {number}",
                key_id=self.svc.tok.key_id, outcome="ok" if e.rows_left == 0 else "incomplete",
                detail=f"{e.rows_removed} index row(s) of {e.records} identity record(s) removed, {e.rows_left} left"
            ) for e in out.erasures), empty=True)  # a shard that held none of them says so too
            for name in ("erased", "unreadable", "duplicates", "late"):
                counts[name] += getattr(out, name)
            counts["links"] += len(out.links)
            self._say(number, out)
        self.out.facts(effects, [f for d in decisions for f in decision_facts(d)])
        effects.write("dedup_decisions", decisions)
        effects.write("dedup_searches", searches)
        effects.record(Processing(
            component=self.name, activity="analyse", purpose="operations", data_classes=("BIOMETRIC",),
            records=len(decisions), source=batch_source(records), destination="clickhouse:dedup_decisions",
            key_id=self.svc.tok.key_id,
            detail=f"1:1 verification and 1:N link evidence, {len(records)} commands, {counts['links']} link "
                   f"commands, {counts['duplicates']} duplicates, {counts['late']} older than their window, "
                   f"{counts['erased']} erased in flight; thresholds {self.cfg.thresholds.version}"))
        held = sum(len(s) for s in self.shards.values())
        for warning in self.monitor.update(decisions, searches, self.cfg.thresholds,
                                           held * DEDUP_SHARDS // max(1, len(self.shards))):
            log.warning("dedup accuracy drift: %s", warning)
        return effects

    def _say(self, number: int, out: StepOutput) -> None:
        for model in sorted(out.uncalibrated - self.uncalibrated):
            log.warning("template model %s has no calibrated thresholds: its captures stay under their document "
                        "and raise no finding until `lintas dedup calibrate` has run", model)
            self.uncalibrated.add(model)
        if out.erased:
            log.info("shard %d: %d command(s) dropped, their person was erased while in flight", number, out.erased)
        if out.unreadable:
            log.warning("shard %d: %d command(s) dropped, their template cannot be opened", number, out.unreadable)
