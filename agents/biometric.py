"""Dedup on the stream: captures → identity shards → decisions, samples, and link evidence (pure functions).

The worker's handlers (:mod:`streams.worker.ingest`, :mod:`streams.worker.dedup_shards`,
:mod:`streams.worker.dedup_links`) call these and return what they give as effects:

1. ingest turns each biometric capture into a CAPTURE command for the shard of the
   identity presented (``model|identity`` → one partition of ``biometric.probes``), so
   every capture under one document reaches one shard, whatever post sent it;
2. that shard verifies it 1:1 (:mod:`agents.dedup`) and keeps the identity's subjects
   and their samples; a changed decision is a row (its revision wins in ClickHouse);
3. a new sample is searched 1:N in its own shard and sent (SEARCH) to every other
   shard; each shard keeps every pair of samples of two identities scoring at or
   above the model's pair floor and tells the link agent (:mod:`agents.links`); a
   sample that is replaced is withdrawn (FORGET) the same way;
4. an ERASE command (``lintas erase``) drops an identity and every pair with it.

**No pair is missed, at any pace.** A shard applies its partition in log order; a
sample's SEARCHes are sent only after its shard has applied it. Two samples ``x``
(shard s) and ``y`` (shard t) would both be missed only if SEARCH x came before y in
t's log and SEARCH y before x in s's log; but SEARCH y is appended after y was applied,
which is after SEARCH x was appended, which is after x was applied: a cycle. So every
pair is scored at least once, and link evidence is a function of the samples alone.

**Replays change nothing.** A batch's sends (commands, pairs, rows) are acknowledged
before its identity records, and those before its offsets are committed; a record's
version is the highest offset it reflects (the newest record wins on reading), and a
replayed or resent CAPTURE is recognised by its probe id among the identity's recent
captures (window and the last ones that slid out) and skipped. Not by its offset: the
consumer reads a message skipped during a rebalance again after later offsets were
applied, and that message must still be decided.

Templates exist in clear only inside a shard's memory: sealed on Kafka, absent from
rows, links, logs and dead letters.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from agents.dedup import (
    IdentityState,
    ModelThresholds,
    Namer,
    Seen,
    ThresholdSet,
    Verdict,
    changed,
    identity_key,
)
from agents.gallery import CANDIDATES, NPROBE, Rows, check_template
from agents.pseudonymise import Tokeniser, person_token
from agents.sealing import SubjectSealer, person_key
from agents.shard import HOT, PairRecord, Records, Shard, opened_templates, read, record_bytes
from schemas.contracts import internal_schema
from schemas.wire import avro_bytes

DEDUP_COMMAND = internal_schema("DedupCommand")
LINK_COMMAND = internal_schema("LinkCommand")
EPOCH = datetime.fromtimestamp(0, UTC)


def template_bytes(template: np.ndarray) -> bytes:
    """A template as little-endian float32 bytes (the plaintext that gets sealed)."""
    return np.ascontiguousarray(template, "<f4").tobytes()


@dataclass(frozen=True)
class Capture:
    """One person's biometric capture in an event, with the identity they presented (a token) and its kind."""

    probe_id: str
    event_id: str
    source: str
    post_id: str
    occurred_at: datetime
    identity: str
    capture: dict[str, Any]
    field: str
    identity_kind: str = "document"

    @property
    def model(self) -> str:
        """The capture's template model."""
        return str(self.capture.get("model") or "unspecified")


def captures(record: dict[str, Any], source: str, tok: Tokeniser) -> list[Capture]:
    """Every biometric capture of a decoded crossing (``source='crossing'``) or landing event.

    The identity presented is the person's operations token (:func:`person_token`).
    """
    def kind(traveller: dict[str, Any]) -> str:
        return "document" if traveller.get("document") else "name"

    if source == "crossing":
        if not record.get("biometric"):
            return []
        traveller = record["traveller"]
        return [Capture(str(record["event_id"]), str(record["event_id"]), source, record["post"]["post_id"],
                        record["occurred_at"], person_token(tok, traveller), record["biometric"], "biometric",
                        kind(traveller))]
    out = []
    for n, person in enumerate(record.get("persons") or []):
        if person.get("biometric"):
            out.append(Capture(f"{record['landing_id']}/{n}", str(record["landing_id"]), source,
                               record["site"]["site_id"], record["occurred_at"], person_token(tok, person["traveller"]),
                               person["biometric"], f"persons[{n}].biometric", kind(person["traveller"])))
    return out


def shard_of(key: str, shards: int) -> int:
    """The shard that decides an identity (and holds its subjects): stable across processes and restarts."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % shards


def capture_commands(probes: Sequence[tuple[Capture, np.ndarray]], sealer: SubjectSealer,
                     shards: int) -> list[tuple[int, bytes]]:
    """(partition, CAPTURE) for each capture, to its identity's shard; template under the person's key."""
    sealed = sealer.seal([(template_bytes(t), cap.probe_id, person_key(cap.identity)) for cap, t in probes])
    return [(shard_of(identity_key(cap.model, cap.identity), shards), avro_bytes(DEDUP_COMMAND, {
        "kind": "CAPTURE", "identity": cap.identity, "identity_kind": cap.identity_kind, "model": cap.model,
        "probe_id": cap.probe_id, "subject": "", "event_id": cap.event_id, "source": cap.source,
        "post_id": cap.post_id, "occurred_at": cap.occurred_at, "quality": float(cap.capture["quality"]),
        "sealed_template": value, "origin": -1, "subjects": [],
    })) for (cap, _), value in zip(probes, sealed, strict=True)]


def erase_command(subjects: Sequence[str], identity: str, requested_at: datetime, erasure_id: str = "") -> bytes:
    """An ERASE command for every shard: forget ``identity`` (any model), its ``subjects`` and their pairs.

    ``erasure_id`` (in the command's ``event_id``) names the request in what each shard reports back.
    """
    return avro_bytes(DEDUP_COMMAND, {
        "kind": "ERASE", "identity": identity, "identity_kind": "", "model": "", "probe_id": "", "subject": "",
        "event_id": erasure_id, "source": "erasure", "post_id": "", "occurred_at": requested_at, "quality": 0.0,
        "sealed_template": b"", "origin": -1, "subjects": list(subjects),
    })


def probe_template(cap: Capture, dimension: int, quality_floor: float) -> np.ndarray:
    """The capture's unit template, or :class:`TemplateRejected` (for the dead-letter topic)."""
    c = cap.capture
    return check_template(c["template"], c["dimension"], c["quality"], dimension, quality_floor)


def subject_id(tok: Tokeniser, model: str, identity: str, anchor: str | None) -> str:
    """A subject's pseudonymous id: the identity's primary subject, or the one ``anchor`` (its first capture) began."""
    return "S" + tok.token("subject", model, identity, anchor or "")[:24]


def link_id(tok: Tokeniser, first: str, second: str) -> str:
    """One link per pair of subjects, whichever found the other."""
    return "L" + tok.token("link", *sorted((first, second)))[:24]


@dataclass(frozen=True)
class DedupConfig:
    """What a shard step needs besides the shard: thresholds, sealing, tokens, shard count, window, index sizes."""

    thresholds: ThresholdSet
    sealer: SubjectSealer
    tok: Tokeniser
    shards: int
    window: int = 256
    exact_max: int = 250_000
    rerank: int = CANDIDATES
    dimension: int = 512
    nprobe: int = NPROBE
    store: Callable[[int], Rows] | None = None  # where a coded index keeps its templates (memory if None)
    records: Callable[[], Records] | None = None  # where a shard keeps its identities' records (memory if None)
    hot: int = HOT  # identities a shard keeps decoded

    def shard(self, number: int) -> Shard:
        """An empty shard, its records where ``records`` says."""
        return Shard(number, self.records() if self.records is not None else None, self.hot)

    def namer(self, state: IdentityState) -> Namer:
        """Subject ids for one identity."""
        return lambda anchor: subject_id(self.tok, state.model, state.identity, anchor)

    def link(self, a: str, b: str) -> str:
        """The link id of two subjects."""
        return link_id(self.tok, a, b)


def _sample_key(sample: tuple[str, str]) -> str:
    return f"{sample[0]}/{sample[1]}"


def pair_key(a: tuple[str, str], b: tuple[str, str], finder: int) -> str:
    """A pair's key at the link agent: both samples (in order) and the shard that found it."""
    x, y = sorted((_sample_key(a), _sample_key(b)))
    return f"{x}~{y}@{finder}"


@dataclass
class StepOutput:
    """What one batch at one shard sends on, in this order: commands, links and rows, then records.

    ``commands``: (partition, DedupCommand) for other shards (SEARCH, FORGET);
    ``links``: (link id, LinkCommand) for biometric.pairs; ``decisions``: dedup_decisions rows
    (new or changed verdicts); ``searches``: dedup_searches rows (the best 1:N score of each
    search, for the accuracy monitor); ``records``: (identity key, IdentityRecord or None)
    for biometric.gallery at this shard's partition, sent last.
    """

    commands: list[tuple[int, bytes]] = field(default_factory=list)
    links: list[tuple[str, bytes]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    records: list[tuple[str, bytes | None]] = field(default_factory=list)
    erased: int = 0  # commands dropped because their person was erased while they were in flight
    unreadable: int = 0  # commands dropped because their template could not be opened (tampered, foreign)
    duplicates: int = 0  # captures applied before (resends, replays)
    late: int = 0  # captures older than their identity's whole window
    uncalibrated: set[str] = field(default_factory=set)  # models decided with the default thresholds
    erasures: list[Erasure] = field(default_factory=list)  # what each ERASE command took out here


@dataclass(frozen=True)
class Erasure:
    """One ERASE command's work on one shard, for the erasure's proof: counts, never the person."""

    erasure_id: str
    records: int  # identity records (one per template model) dropped
    rows_removed: int  # samples taken out of the 1:N indexes
    rows_left: int  # samples of the identity still in them afterwards (a scan): must be 0


@dataclass(frozen=True)
class _Query:
    """One 1:N search: a sample (own or remote), who it belongs to, its template."""

    sample: tuple[str, str]
    identity: str  # identity token
    owner: str  # identity key
    model: str
    template: np.ndarray
    side: dict[str, Any]  # the LinkSide of the searched sample


def _side(subject: str, identity: str, c: Seen) -> dict[str, Any]:
    return {"subject": subject, "identity": identity, "probe_id": c.probe_id, "event_id": c.event_id,
            "source": c.source, "post_id": c.post_id, "occurred_ms": c.occurred_ms, "quality": float(c.quality)}


def shard_step(shard: Shard, messages: Sequence[tuple[int, bytes]], cfg: DedupConfig, now: datetime) -> StepOutput:
    """Apply a batch of (offset, DedupCommand) to ``shard``, in log order where it matters (see the module doc)."""
    out = StepOutput()
    commands = [(offset, read(DEDUP_COMMAND, raw)) for offset, raw in messages]
    sealed = [(i, c) for i, (_, c) in enumerate(commands) if c["kind"] in ("CAPTURE", "SEARCH")]
    opened, out.erased, out.unreadable = opened_templates(
        cfg.sealer, [(c["sealed_template"], c["probe_id"]) for _, c in sealed])
    templates = {i: t for (i, _), t in zip(sealed, opened, strict=True)}
    top = max((offset for offset, _ in messages), default=-1)
    touched: set[str] = set()  # identity records to write
    before: dict[str, dict[str, Verdict]] = {}
    frozen: dict[str, list[tuple[Seen, Verdict]]] = {}
    remote_queries: list[_Query] = []
    forgets: list[tuple[tuple[str, str], bool]] = []
    for i, (_, cmd) in enumerate(commands):
        kind = cmd["kind"]
        if kind == "ERASE":
            _erase(shard, cmd, cfg, out, touched)
            continue
        if kind == "FORGET":
            forgets.append(((cmd["subject"], cmd["probe_id"]), False))
            continue
        template = templates.get(i)
        if template is None:
            continue  # erased or unreadable (counted)
        if kind == "SEARCH":
            remote_queries.append(_Query((cmd["subject"], cmd["probe_id"]), cmd["identity"],
                                         identity_key(cmd["model"], cmd["identity"]), cmd["model"], template, {
                                             "subject": cmd["subject"], "identity": cmd["identity"],
                                             "probe_id": cmd["probe_id"], "event_id": cmd["event_id"],
                                             "source": cmd["source"], "post_id": cmd["post_id"],
                                             "occurred_ms": _ms(cmd["occurred_at"]), "quality": cmd["quality"]}))
            continue
        key = identity_key(cmd["model"], cmd["identity"])
        state = shard.state(key, cfg)
        if state is None:
            state = IdentityState(key, cmd["identity"], cmd["identity_kind"], cmd["model"])
            shard.enrol(state)
        # a replay or a resend is recognised by its probe id (``add``), not by its offset: a message the
        # consumer skipped during a rebalance is read again after later offsets were applied
        t = cfg.thresholds.for_model(state.model)
        if state.model not in cfg.thresholds.models:
            out.uncalibrated.add(state.model)
        name = cfg.namer(state)
        if key not in before:
            before[key] = dict(state.resolve(t, name)[0])
        seen = Seen(cmd["probe_id"], cmd["event_id"], cmd["source"], cmd["post_id"], _ms(cmd["occurred_at"]),
                    float(cmd["quality"]), template, cmd["sealed_template"])
        late_before = state.late
        if not state.add(seen, t, name, cfg.window):
            out.duplicates += 1
            continue
        out.late += state.late - late_before
        frozen.setdefault(key, []).extend(state.take_frozen())
        touched.add(key)

    # decisions that changed, and the samples they leave
    own_queries: list[_Query] = []
    removed: list[tuple[str, tuple[str, str]]] = []
    for key in sorted(before):
        state = shard.hot.get(key)
        if state is None:
            continue  # erased later in the batch
        t = cfg.thresholds.for_model(state.model)
        name = cfg.namer(state)
        verdicts, _ = state.resolve(t, name)
        captured = {c.probe_id: c for c in state.window}
        decided = [(c, v) for c, v in frozen.get(key, []) if not v.same(before[key].get(c.probe_id))]
        decided += [(captured[v.probe_id], v) for v in changed(before[key], verdicts)]
        out.decisions += [decision_row(state, c, v, t, cfg, now) for c, v in decided]
        samples = state.samples(t, name)
        old = shard.samples.get(key, {})
        removed += [(key, s) for s in sorted(old) if s not in samples]
        own_queries += [_Query(s, state.identity, key, state.model, samples[s].template,
                               _side(s[0], state.identity, samples[s])) for s in sorted(samples) if s not in old]
        shard.set_samples(key, samples, cfg)

    # withdrawn samples: their pairs here, and (FORGET) those found in the other shards
    for key, sample in removed:
        state = shard.hot[key]
        for rec in shard.drop_pairs(key, sample):
            out.links.append((rec.link_id, _unpair(rec, shard.number)))
        forgets.append((sample, False))
        out.commands += [(s, _forget(state, sample, shard.number, now)) for s in range(cfg.shards) if s != shard.number]

    # 1:N: new samples here and samples searched from elsewhere, against this shard's indexes
    queries = own_queries + remote_queries
    for model in sorted({q.model for q in queries}):
        batch = [q for q in queries if q.model == model]
        t = cfg.thresholds.for_model(model)
        index = shard.gallery(model, cfg)
        # the index's float32 scores can differ in the last bits with the batch's make-up; a pair's score is
        # recomputed in float64 from the two templates, so it is the same whichever shard finds it, and when
        results = index.search(np.stack([q.template for q in batch]), t.pair_floor - 1e-4, [q.owner for q in batch])
        for q, (hits, best) in zip(batch, results, strict=True):
            out.searches.append(search_row(q, best, shard.number, index.kind, now))
            for (owner, local), _ in hits:
                local_state = shard.state(owner, cfg)  # read back if it is not in memory: pairs are few
                held = shard.samples.get(owner, {})
                if local_state is None or local not in held:
                    continue
                score = exact_score(q.template, held[local].template)
                if score < t.pair_floor:
                    continue
                rec = PairRecord(local, q.sample, q.owner, cfg.link(local[0], q.sample[0]))
                if shard.record_pair(owner, rec):
                    touched.add(owner)
                    local_side = _side(local[0], local_state.identity, held[local])
                    out.links.append((rec.link_id, _pair(rec, model, score, local_side, q.side, shard.number)))
    for q in own_queries:
        state = shard.hot[q.owner]
        c = shard.samples[q.owner][q.sample]
        out.commands += [(s, _search(state, q.sample, c, shard.number)) for s in range(cfg.shards) if s != shard.number]

    # FORGET (from other shards, or ours): the pairs found here with a sample that is no longer one
    for sample, erased in forgets:
        for owner, rec in shard.pairs_with(sample):
            shard.drop_pair(owner, rec)
            touched.add(owner)
            out.links.append((rec.link_id, _unpair(rec, shard.number, erased)))

    for key in sorted(touched):
        state = shard.hot.get(key)
        value = None
        if state is not None:
            state.version = max(state.version, top)
            value = record_bytes(state, shard.pairs.get(key, {}).values())
        shard.written(key, value)
        out.records.append((key, value))
    shard.cool()
    return out


def exact_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two unit templates in float64, rounded to 6 places: the same value however it is reached."""
    return round(float(np.dot(a.astype(np.float64), b.astype(np.float64))), 6)


def _erase(shard: Shard, cmd: dict[str, Any], cfg: DedupConfig, out: StepOutput, touched: set[str]) -> None:
    """Forget an erased identity (every model) here, and every pair with it; the link agent drops those links."""
    identity = cmd["identity"]
    erased = shard.erase(identity, cfg)
    out.erasures.append(Erasure(cmd["event_id"], len(erased), sum(erased.values()), shard.rows_of(identity)))
    for key in erased:
        for rec in shard.drop_pairs(key):
            out.links.append((rec.link_id, _unpair(rec, shard.number, erased=True)))
        touched.add(key)
    for remote_identity in [k for k in shard.remote_identities() if k.endswith(f"|{identity}")]:
        for remote in shard.remotes_of(remote_identity):
            for owner, rec in shard.pairs_with(remote):
                shard.drop_pair(owner, rec)
                touched.add(owner)
                out.links.append((rec.link_id, _unpair(rec, shard.number, erased=True)))
        shard.forget_remote_identity(remote_identity)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _search(state: IdentityState, sample: tuple[str, str], c: Seen, origin: int) -> bytes:
    return avro_bytes(DEDUP_COMMAND, {
        "kind": "SEARCH", "identity": state.identity, "identity_kind": state.kind, "model": state.model,
        "probe_id": c.probe_id, "subject": sample[0], "event_id": c.event_id, "source": c.source,
        "post_id": c.post_id, "occurred_at": datetime.fromtimestamp(c.occurred_ms / 1000, UTC),
        "quality": c.quality, "sealed_template": c.sealed, "origin": origin, "subjects": [],
    })


def _forget(state: IdentityState, sample: tuple[str, str], origin: int, now: datetime) -> bytes:
    return avro_bytes(DEDUP_COMMAND, {
        "kind": "FORGET", "identity": state.identity, "identity_kind": state.kind, "model": state.model,
        "probe_id": sample[1], "subject": sample[0], "event_id": "", "source": "", "post_id": "",
        "occurred_at": now, "quality": 0.0, "sealed_template": b"", "origin": origin, "subjects": [],
    })


def _pair(rec: PairRecord, model: str, score: float, local: dict[str, Any], remote: dict[str, Any],
          finder: int) -> bytes:
    sides = sorted([local, remote], key=lambda s: s["subject"])
    return avro_bytes(LINK_COMMAND, {
        "kind": "PAIR", "link_id": rec.link_id, "model": model, "pair": pair_key(rec.local, rec.remote, finder),
        "score": score, "sides": sides, "erased": False, "status": "", "officer_token": "", "decided_at": EPOCH,
    })


def _unpair(rec: PairRecord, finder: int, erased: bool = False) -> bytes:
    return avro_bytes(LINK_COMMAND, {
        "kind": "UNPAIR", "link_id": rec.link_id, "model": "", "pair": pair_key(rec.local, rec.remote, finder),
        "score": 0.0, "sides": [], "erased": erased, "status": "", "officer_token": "", "decided_at": EPOCH,
    })


def decision_row(state: IdentityState, c: Seen, verdict: Verdict, t: ModelThresholds, cfg: DedupConfig,
                 now: datetime) -> dict[str, Any]:
    """The dedup_decisions row of one verdict (its revision wins): ids, scores, thresholds; never a template."""
    return {
        "probe_id": c.probe_id, "event_id": uuid.UUID(c.event_id), "source": c.source, "post_id": c.post_id,
        "occurred_at": datetime.fromtimestamp(c.occurred_ms / 1000, UTC), "outcome": verdict.outcome.value,
        "subject_id": verdict.subject, "identity_token": state.identity, "identity_kind": state.kind,
        "model": state.model, "score": verdict.score, "quality": c.quality, "thresholds_version": t.label,
        "index_kind": "1:1", "candidate_subjects": [s for s, _ in verdict.candidates],
        "candidate_scores": [x for _, x in verdict.candidates], "revision": state.seen, "decided_at": now,
        "key_id": cfg.tok.key_id,
    }


def search_row(q: _Query, best: float, shard: int, kind: str, now: datetime) -> dict[str, Any]:
    """The dedup_searches row: the best score of a sample against another identity in one shard (monitoring)."""
    return {"subject_id": q.sample[0], "probe_id": q.sample[1], "model": q.model, "post_id": q.side["post_id"],
            "occurred_at": datetime.fromtimestamp(q.side["occurred_ms"] / 1000, UTC),
            "quality": float(q.side["quality"]), "shard": shard, "index_kind": kind,
            "best_score": best, "searched_at": now}


def nan_to_none(x: float) -> float | None:
    """A score for JSON: NaN (no comparison made) as null."""
    return None if math.isnan(x) else x
